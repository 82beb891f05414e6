"""Start-up: serve the recorded pair from the first call, then check it against the record.

``bootstrap`` runs once, on the process-wide runtime's first ``current()`` (a live call through
``vt.wrap`` / the LangChain middleware), so a restarted app serves the promoted pair without
calling anything. The first call reads only local files, never the store (opening VectorWave
takes seconds): the mirror of the record's latest row (``VTPromotions.latest.json``, next to a
lite store or in ``state_dir`` with Weaviate) and the rows journaled on their way to the store
(``runtime/pending.py``: a process that died before its row landed), the newest of them served.
A background thread then writes those journaled rows into the store, reads the record itself
and applies its latest row when it is newer. The hooks folder's ``ACTIVE`` file is never read
here: it names a hook version without its model routes, and serving it alone could mix a pair. With ``VTConfig.sync_interval_s`` set, a :class:`HookWatcher` keeps doing that, so
app instances sharing a store converge.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from ..config import get_config
from .active import Runtime
from .derived import read_mirror
from .live import Promoter, get_promoter
from .pending import import_before_threads
from .watcher import HookWatcher

logger = logging.getLogger("vt_middleware.sync")

_lock = threading.Lock()
_periodic: Optional[HookWatcher] = None


def bootstrap(runtime: Runtime) -> None:
    """Serve the cached pair on ``runtime`` now; check the record in the background."""
    config = get_config()
    promoter = get_promoter()
    if promoter.runtime is not runtime:
        promoter = Promoter(runtime=runtime, config=config)
    waiting = promoter.records.waiting()
    rows = [r for r in (read_mirror(config), *waiting) if r is not None]
    if rows:
        promoter.apply_row(max(rows, key=lambda r: int(r.get("at_ns") or 0)))
    import_before_threads()
    if waiting:
        promoter.records.replay()  # left by a process that exited before they landed
    watcher = HookWatcher(promoter=promoter, poll_interval=config.sync_interval_s or 1.0)
    if config.sync_interval_s is None:
        threading.Thread(target=_check_logged, args=(watcher,), name="vt-promotion-check", daemon=True).start()
        return
    global _periodic
    with _lock:
        if _periodic is not None:
            _periodic.stop()
        _periodic = watcher
    watcher.start(check_now=False)  # first check right away in its thread, then every interval


def _check_logged(watcher: HookWatcher) -> None:
    try:
        watcher.check_once()
    except Exception as exc:  # noqa: BLE001 - a thread of ours: say it, keep serving the cache
        logger.warning("checking the promotion record failed: %s: %s", type(exc).__name__, exc)


def stop_periodic_sync(timeout: float = 5.0) -> None:
    """Stop the periodic sync thread (``vt.reset()`` does this)."""
    global _periodic
    with _lock:
        watcher, _periodic = _periodic, None
    if watcher is not None:
        watcher.stop(timeout)
