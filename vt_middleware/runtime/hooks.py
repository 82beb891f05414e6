"""Loading a generated hook module and calling it safely.

Each version is imported from its file under a fresh module name
(``vt_hooks_<version>_<n>``); nothing is ever reloaded in place, so a call that
holds the old module keeps running the old code.
"""
from __future__ import annotations

import importlib.util
import itertools
import re
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Optional

from ..errors import HookError
from ..health import record_internal_error

_load_counter = itertools.count(1)
# The layout of ``synthesize.versions.HookVersionStore`` (``<hooks_dir>/vNNNN/hook.py``), repeated
# here because importing that module loads libcst, too heavy for a live call's first use.
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_HOOK_FILE = "hook.py"


def version_hook_path(hooks_dir: str | Path, version: str) -> Path:
    """The generated module of hook ``version`` under ``hooks_dir`` (no libcst import)."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise HookError(f"not a hook version name: {version!r} (expected like 'v0001')")
    return Path(hooks_dir) / version / _HOOK_FILE


def import_hook_file(path: Path, version: str) -> ModuleType:
    """Import ``path`` as a new module; raise HookError if it lacks the two hooks."""
    safe = "".join(ch if ch.isalnum() else "_" for ch in version)
    name = f"vt_hooks_{safe}_{next(_load_counter)}"
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise HookError(f"cannot import hook module from {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise HookError(f"hook module {path} failed to import: {type(exc).__name__}: {exc}") from exc
    for fn in ("intercept_prompt", "intercept_output"):
        if not callable(getattr(module, fn, None)):
            raise HookError(f"hook module {path} has no callable {fn}()")
    # Registered only so tracebacks and pickling can find it; never re-imported.
    sys.modules[name] = module
    return module


class LoadedHooks:
    """One loaded hook version. Calls fail open: on error the input passes through unchanged.

    After ``rollback_after`` consecutive failures ``on_repeated_failure`` is called
    once (the runtime uses it to roll back to the previous version).
    """

    def __init__(
        self,
        module: ModuleType,
        version: str,
        path: Optional[Path] = None,
        rollback_after: int = 5,
        on_repeated_failure: Optional[Callable[["LoadedHooks"], None]] = None,
        timeout_s: Optional[float] = None,
    ) -> None:
        from ..config import get_config

        self.module = module
        # Opt-in (``hook_timeout_s``): calls run in a helper thread and past the timeout the
        # text passes through. A Python thread cannot be killed, so a timed-out version is
        # disabled at once (a loop must not pile up threads) and the rollback is triggered.
        self.timeout_s = timeout_s if timeout_s is not None else get_config().hook_timeout_s
        self.disabled = False
        self.version = version
        self.path = path
        self.rollback_after = rollback_after
        self.on_repeated_failure = on_repeated_failure
        self.calls = 0
        self.failures = 0
        self._consecutive = 0
        self._tripped = False
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, version: str, **kwargs: Any) -> "LoadedHooks":
        return cls(import_hook_file(Path(path), version), version, Path(path), **kwargs)

    def apply_prompt(self, text: str, context: Dict[str, Any]) -> str:
        return self._call("intercept_prompt", text, context)

    def apply_output(self, text: str, context: Dict[str, Any]) -> str:
        return self._call("intercept_output", text, context)

    def _call(self, fn_name: str, text: str, context: Dict[str, Any]) -> str:
        self.calls += 1
        if self.disabled:
            return text
        try:
            fn = getattr(self.module, fn_name)
            result = fn(text, context) if self.timeout_s is None else self._call_guarded(fn, fn_name, text, context)
            if not isinstance(result, str):
                raise HookError(f"{fn_name} returned {type(result).__name__}, expected str")
        except Exception as exc:  # noqa: BLE001 - user-facing calls must not fail
            self._failed()
            record_internal_error(f"hooks.{fn_name}", exc)
            return text
        self._consecutive = 0
        return result

    def _call_guarded(self, fn: Callable[..., Any], fn_name: str, text: str, context: Dict[str, Any]) -> Any:
        """``fn(text, context)`` in a daemon thread, waited for ``timeout_s`` at most."""
        box: Dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = fn(text, context)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"vt-hook-{self.version}", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            self.disabled = True
            self._consecutive = max(self._consecutive, self.rollback_after - 1)  # trip now
            raise HookError(f"{fn_name} of hook version {self.version} ran past {self.timeout_s}s; "
                            "version disabled")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1
            self._consecutive += 1
            trip = self._consecutive >= self.rollback_after and not self._tripped
            if trip:
                self._tripped = True
        if trip and self.on_repeated_failure is not None:
            self.on_repeated_failure(self)
