"""Apply what is stored: the last promotion (routes + hooks), else the ACTIVE hook version.

``bootstrap`` runs once, on the process-wide runtime's first ``current()`` (a live call through
``vt.wrap`` / the LangChain middleware), so a restarted app serves the promoted pair without
calling ``sync_from_store``. With ``VTConfig.sync_interval_s`` set, a :class:`PromotionSync`
thread keeps applying newer promotions (read from the store), so app instances sharing a
store converge.

The first call only reads a small JSON mirror of the latest promotion row, never the store
(importing VectorWave loads torch: seconds). In lite mode the mirror sits in the shared store
directory (``<store_path>/VTPromotions.latest.json``) and is the truth; with Weaviate it is this
instance's last known pair (``<state_dir>/...``) and a background thread then reads the store.
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


def latest_path(config: VTConfig) -> Path:
    """Where the latest promotion row is mirrored: shared in lite mode, per instance otherwise."""
    folder = config.store_path if config.store_mode == "lite" else config.state_dir
    return Path(folder) / LATEST_FILE


def write_latest(config: VTConfig, row: Dict[str, Any]) -> None:
    """Mirror ``row`` (atomic replace) unless a newer row is there already."""
    path = latest_path(config)
    current = read_mirror(config)
    if current is not None and int(current.get("at_ns") or 0) > int(row.get("at_ns") or 0):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(row, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_mirror(config: VTConfig) -> Optional[Dict[str, Any]]:
    """The mirrored row, or None (missing or unreadable)."""
    path = latest_path(config)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return None


def read_latest(config: VTConfig) -> Tuple[bool, Optional[Dict[str, Any]]]:
    """``(known, row)``: the latest promotion row without opening the store. ``known`` is
    False when only the store can tell (``row`` is then at most this instance's last pair)."""
    row = read_mirror(config)
    if config.store_mode != "lite":
        return False, row
    if row is None and (Path(config.store_path) / _PROMOTIONS_TABLE).exists():
        return False, None  # rows written without a mirror
    return True, row


class PromotionSync(HookWatcher):
    """A :class:`HookWatcher` that follows the store's promotions when there are any.

    Each check applies the store's latest promotion row (routes and hooks together, through
    the process-wide promoter, which skips rows it already applied or wrote); with no
    promotion recorded anywhere it falls back to the hook watcher's job: the ACTIVE version.
    """

    def check_once(self) -> bool:
        known, row = read_latest(get_config())
        if not (known and row is None):  # else: lite store with no promotion, nothing to open
            from ..evolve.swap import get_promoter

            promoter = get_promoter()
            rows = promoter.promotion_history()
            if rows:
                return promoter.apply_row(rows[-1]) is not None
        return super().check_once()

    def apply(self, row: Dict[str, Any]) -> bool:
        """Make a (mirrored) promotion row live now."""
        from ..evolve.swap import get_promoter

        return get_promoter().apply_row(row) is not None

    def check_in_background(self) -> None:
        threading.Thread(target=self._check_logged, name="vt-promotion-sync", daemon=True).start()

    def _check_logged(self) -> None:
        try:
            self.check_once()
        except Exception as exc:  # noqa: BLE001 - a thread of ours: say it, keep serving
            logger.warning("promotion sync failed: %s: %s", type(exc).__name__, exc)


_lock = threading.Lock()
_periodic: Optional[PromotionSync] = None


def bootstrap(runtime: Runtime) -> None:
    """Make the stored pair live on ``runtime`` once (cheaply); start the periodic sync if configured."""
    config = get_config()
    interval = config.sync_interval_s
    known, row = read_latest(config)
    if known and row is None and interval is None and not (Path(config.hooks_dir) / _ACTIVE_FILE).exists():
        return  # nothing stored: no import, no thread
    sync = PromotionSync(runtime=runtime, poll_interval=interval or 1.0)
    if row is not None:
        sync.apply(row)
    elif known:
        sync.check_once()  # lite store, no promotion: the ACTIVE hook version
    if interval is not None:
        global _periodic
        with _lock:
            if _periodic is not None:
                _periodic.stop()
            _periodic = sync
        sync.start(check_now=False)  # every ``interval`` seconds, reading the store
    elif not known:
        sync.check_in_background()  # the store has the last word; reading it takes seconds


def stop_periodic_sync(timeout: float = 5.0) -> None:
    """Stop the periodic sync thread (``vt.reset()`` does this)."""
    global _periodic
    with _lock:
        sync, _periodic = _periodic, None
    if sync is not None:
        sync.stop(timeout)
