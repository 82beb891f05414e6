"""Follow the promotion record: apply rows written by other instances (or tools) as they come.

Each check reads the record's latest row and, when it is newer than what this process serves,
makes it live through the :class:`~vt_middleware.runtime.live.Promoter` (one swap of the
runtime's pair; hooks loaded under a new module name, never reloaded in place; a version that
cannot be loaded here is replaced by the last one that validated). A hook version that keeps
raising is rolled back by the same promoter, with the one rollback every caller uses.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import List, Optional

from .active import Runtime
from .live import Promoter, get_promoter

logger = logging.getLogger("vt_middleware.watcher")


class HookWatcher:
    """Polls the promotion record every ``poll_interval`` seconds in a daemon thread."""

    def __init__(
        self,
        hooks_dir: Optional[str | os.PathLike[str]] = None,
        runtime: Optional[Runtime] = None,
        poll_interval: float = 0.5,
        rollback_after: Optional[int] = None,
        promoter: Optional[Promoter] = None,
    ) -> None:
        if promoter is None:
            own = runtime is not None or hooks_dir is not None or rollback_after is not None
            folder = Path(hooks_dir) if hooks_dir is not None else None
            promoter = (
                Promoter(runtime=runtime, hooks_dir=folder, rollback_after=rollback_after) if own else get_promoter()
            )
        self.promoter = promoter
        self.runtime = promoter.runtime
        self.poll_interval = poll_interval
        self.swaps = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._epoch = self.runtime.epoch

    @property
    def auto_rollbacks(self) -> List[str]:
        """Hook versions rolled back because they kept failing."""
        return self.promoter.auto_rollbacks

    def check_once(self) -> bool:
        """Apply the record's latest row if it is newer; True when the live pair changed."""
        with self._lock:
            applied = self.promoter.sync_from_store(epoch=self._epoch) is not None
            self.swaps += int(applied)
            return applied

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - the watcher thread must survive
                logger.warning("promotion record check failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.poll_interval)

    def start(self, check_now: bool = True) -> HookWatcher:
        """Check now (unless ``check_now`` is False: the thread's first check is then right away),
        then every ``poll_interval`` seconds in a daemon thread."""
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

    def __enter__(self) -> HookWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
