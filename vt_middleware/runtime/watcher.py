"""Hot reload: watch ``hooks_dir/ACTIVE`` and swap the runtime's hooks when it changes.

Each version is loaded with ``LoadedHooks.from_file`` under its own module name (no
``importlib.reload``) and installed with one ``Runtime.activate(keep_routes=True)``;
a call holds the pair it read, so no call is dropped or sees two versions. A hook
that keeps raising is bypassed by ``LoadedHooks`` (fail open) and, after
``rollback_after`` consecutive failures, the watcher rolls the version back by itself.

Generated hooks contain no unbounded loops (see ``synthesize/hook_runtime.py``), so
a watchdog for a hook that never returns is not needed for generated code.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, List, Optional, Set

from ..health import record_internal_error
from .active import Runtime, get_runtime
from .hooks import LoadedHooks, version_hook_path

logger = logging.getLogger("vt_middleware.watcher")


class HookWatcher:
    """Keeps the runtime's hooks equal to the hook version named in ``hooks_dir/ACTIVE``."""

    def __init__(
        self,
        hooks_dir: Optional[str | os.PathLike] = None,
        runtime: Optional[Runtime] = None,
        poll_interval: float = 0.5,
        rollback_after: Optional[int] = None,
    ) -> None:
        from ..config import get_config

        config = get_config()
        self.hooks_dir = hooks_dir if hooks_dir is not None else config.hooks_dir
        self._store: Any = None
        self.runtime = runtime or get_runtime()
        self.poll_interval = poll_interval
        self.rollback_after = rollback_after or config.hook_failure_rollback_after
        self.loaded_version: Optional[str] = None
        self.swaps = 0
        self.auto_rollbacks: List[str] = []
        self._unloadable: Set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def store(self) -> Any:
        """The ``HookVersionStore`` (imported on first use: it pulls in libcst)."""
        if self._store is None:
            from ..synthesize.versions import HookVersionStore

            self._store = HookVersionStore(self.hooks_dir)
        return self._store

    def check_once(self) -> bool:
        """Load and install the active version if it changed; True when hooks were swapped."""
        with self._lock:
            version = self.store.active_version()
            if version == self.loaded_version or version in self._unloadable:
                return False
            if version is None:
                self.runtime.activate(hooks=None, keep_routes=True, label="hooks:none")
            else:
                try:
                    loaded = LoadedHooks.from_file(
                        version_hook_path(self.hooks_dir, version), version,
                        rollback_after=self.rollback_after, on_repeated_failure=self._on_repeated_failure,
                    )
                except Exception as exc:  # noqa: BLE001 - keep serving the current hooks
                    self._unloadable.add(version)
                    record_internal_error("hooks.watcher.load", exc)
                    return False
                self.runtime.activate(hooks=loaded, keep_routes=True, label=f"hooks:{version}")
            self.loaded_version = version
            self.swaps += 1
            logger.info("hook version %s is live", version)
            return True

    def _on_repeated_failure(self, hooks: LoadedHooks) -> None:
        # Runs inside a user's call: hand the rollback to a thread so that call returns now.
        threading.Thread(target=self._auto_rollback, args=(hooks,), name="vt-hook-rollback", daemon=True).start()

    def _auto_rollback(self, hooks: LoadedHooks) -> None:
        try:
            if self.store.active_version() == hooks.version:
                reason = f"auto: {hooks.version} failed {hooks.rollback_after} calls in a row"
                target = self.store.rollback(reason=reason)
                if target == hooks.version:  # nothing earlier to go back to: run without hooks
                    self.store.deactivate(reason=reason)
                self.auto_rollbacks.append(hooks.version)
            self.check_once()
        except Exception as exc:  # noqa: BLE001
            record_internal_error("hooks.watcher.rollback", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - the watcher thread must survive
                logger.warning("hook watcher check failed: %s: %s", type(exc).__name__, exc)

    def start(self, check_now: bool = True) -> "HookWatcher":
        """Load the active version now (unless ``check_now`` is False), then poll in a daemon thread."""
        if check_now:
            self.check_once()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="vt-hook-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "HookWatcher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
