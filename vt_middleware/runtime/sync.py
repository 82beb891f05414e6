"""Apply what is stored: the last promotion (routes + hooks), else the ACTIVE hook version.

``bootstrap`` runs once, on the process-wide runtime's first ``current()`` (a live call through
``vt.wrap`` / the LangChain middleware), so a restarted app serves the promoted pair without
calling ``sync_from_store``. With ``VTConfig.sync_interval_s`` set, a :class:`PromotionSync`
thread keeps applying newer promotions (read from the store), so app instances sharing a
store converge.

Cheap on the hot path: in lite mode the promoter mirrors its latest row in
``<store_path>/VTPromotions.latest.json``; with that file, or with no promotions table and no
ACTIVE file at all, nothing heavy (VectorWave, libcst) is imported. Only a store without the
mirror (Weaviate, or rows written by an older version) is read through the store.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config import VTConfig, get_config
from .active import Runtime
from .watcher import HookWatcher

logger = logging.getLogger("vt_middleware.sync")

LATEST_FILE = "VTPromotions.latest.json"
_PROMOTIONS_TABLE = "VTPromotions.lance"  # store.executions.PROMOTIONS on disk (importing it loads VectorWave)
_ACTIVE_FILE = "ACTIVE"  # synthesize.versions.ACTIVE_FILE (importing it loads libcst)


def latest_path(config: VTConfig) -> Optional[Path]:
    """Where the latest promotion row is mirrored (lite stores only)."""
    return Path(config.store_path) / LATEST_FILE if config.store_mode == "lite" else None


def write_latest(config: VTConfig, row: Dict[str, Any]) -> None:
    """Mirror ``row`` next to the store (atomic replace) unless a newer row is there already."""
    path = latest_path(config)
    if path is None:
        return
    known, current = read_latest(config)
    if known and current is not None and int(current.get("at_ns") or 0) > int(row.get("at_ns") or 0):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(row, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_latest(config: VTConfig) -> Tuple[bool, Optional[Dict[str, Any]]]:
    """``(known, row)``: the latest promotion row without opening the store when possible.
    ``known`` is False when only the store can tell."""
    path = latest_path(config)
    if path is None:
        return False, None
    try:
        return True, json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return False, None
    if (Path(config.store_path) / _PROMOTIONS_TABLE).exists():
        return False, None
    return True, None


class PromotionSync(HookWatcher):
    """A :class:`HookWatcher` that follows the store's promotions when there are any.

    Each check applies the latest promotion row (routes and hooks together, through the
    process-wide promoter, which skips rows it already applied or wrote); with no promotion
    recorded anywhere it falls back to the hook watcher's job: the ACTIVE hook version.
    The first check may read the mirror file; later ones (a background thread) read the
    store itself, so a mirror left stale by two instances writing at once cannot stick.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checked = False

    def check_once(self) -> bool:
        config = get_config()
        known, row = read_latest(config)
        if row is not None and self._checked:
            known, row = False, None  # after start-up the store is the truth, the mirror a shortcut
        self._checked = True
        if not known or row is not None:
            from ..evolve.swap import get_promoter

            promoter = get_promoter()
            if not known:
                rows = promoter.promotion_history()
                row = rows[-1] if rows else None
            if row is not None:
                return promoter.apply_row(row) is not None
        return super().check_once()


_lock = threading.Lock()
_periodic: Optional[PromotionSync] = None


def bootstrap(runtime: Runtime) -> None:
    """Make the stored pair live on ``runtime`` once; start the periodic sync if configured."""
    config = get_config()
    interval = config.sync_interval_s
    known, row = read_latest(config)
    if known and row is None and interval is None and not (Path(config.hooks_dir) / _ACTIVE_FILE).exists():
        return  # nothing stored: no import, no thread
    sync = PromotionSync(runtime=runtime, poll_interval=interval or 1.0)
    if interval is None:
        sync.check_once()
        return
    global _periodic
    with _lock:
        if _periodic is not None:
            _periodic.stop()
        _periodic = sync
    sync.start()  # checks once now, then every ``interval`` seconds in a daemon thread


def stop_periodic_sync(timeout: float = 5.0) -> None:
    """Stop the periodic sync thread (``vt.reset()`` does this)."""
    global _periodic
    with _lock:
        sync, _periodic = _periodic, None
    if sync is not None:
        sync.stop(timeout)
