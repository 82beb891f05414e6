"""Files derived from the promotion record, written off the promotion's path.

After a promotion or rollback is recorded and swapped in, :class:`DerivedFiles` writes, in its
own thread, the latest-row mirror (``VTPromotions.latest.json``: next to a lite store, or in
``state_dir`` with Weaviate) and the hooks folder's ``ACTIVE`` + ``history.jsonl``. Only the
newest pending row is written (a burst of swaps costs one write); ``flush`` waits for it, and
the files of a process that exits are flushed at exit (bounded).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config import VTConfig
from ..health import record_thread_error
from .hook_dir import HookDir, write_atomic

logger = logging.getLogger("vt_middleware.runtime")

LATEST_FILE = "VTPromotions.latest.json"
_EXIT_FLUSH_S = 2.0


def latest_path(config: VTConfig) -> Path:
    """Where the latest promotion row is mirrored: shared in lite mode, per instance otherwise."""
    folder = config.store_path if config.store_mode == "lite" else config.state_dir
    return Path(folder) / LATEST_FILE


def read_mirror(config: VTConfig) -> Optional[Dict[str, Any]]:
    """The mirrored row, or None (missing or unreadable)."""
    path = latest_path(config)
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return None
    return row if isinstance(row, dict) else None


def write_mirror(config: VTConfig, row: Dict[str, Any]) -> None:
    """Mirror ``row`` (atomic replace) unless a newer row is there already."""
    current = read_mirror(config)
    if current is not None and int(current.get("at_ns") or 0) > int(row.get("at_ns") or 0):
        return
    write_atomic(latest_path(config), json.dumps(row, default=str), durable=False)


class DerivedFiles:
    """One background writer of the files derived from the live row."""

    def __init__(self, config: VTConfig, hooks_dir: Path) -> None:
        self.config = config
        self.hooks_dir = hooks_dir
        self._cond = threading.Condition()
        self._pending: Optional[Tuple[Dict[str, Any], bool]] = None
        self._busy = False
        self._thread: Optional[threading.Thread] = None
        self._dirs: Dict[str, HookDir] = {}
        self._pointed: Dict[str, Optional[str]] = {}
        _writers.add(self)

    def submit(self, row: Dict[str, Any], *, mirror: bool) -> None:
        """Write the files for ``row`` soon (a later ``submit`` replaces one not yet written)."""
        with self._cond:
            self._pending = (row, mirror)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vt-derived-files", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the files of every submitted row are written; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._pending is not None, timeout=30.0):
                    self._thread = None  # idle: let the thread end; submit starts another
                    return
                pending, self._pending, self._busy = self._pending, None, True
            if pending is None:  # never: wait_for returned with one pending
                continue
            row, mirror = pending
            try:
                self.write(row, mirror=mirror)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def write(self, row: Dict[str, Any], *, mirror: bool) -> None:
        """Write the mirror (if asked) and the hooks folder's pointer for ``row`` now, unless the
        mirror holds a newer row (whose writer writes them: two promoters of one process)."""
        try:
            newest = read_mirror(self.config)
            if newest is not None and int(newest.get("at_ns") or 0) > int(row.get("at_ns") or 0):
                return
            if mirror:
                write_mirror(self.config, row)
            folder = str(row.get("hooks_dir") or self.hooks_dir)
            version = row.get("hook_version")
            if self._pointed.get(folder, "?") != version:
                hook_dir = self._dirs.setdefault(folder, HookDir(folder))
                if hook_dir.active_version() != version or version is None:
                    hook_dir.write_pointer(
                        version,
                        {
                            "at": row.get("at"),
                            "action": row.get("action"),
                            "version": version,
                            "promotion_id": row.get("promotion_id"),
                            "reason": row.get("reason", ""),
                        },
                    )
                self._pointed[folder] = version
        except Exception as exc:  # noqa: BLE001 - caches only: the record and the live pair stand
            record_thread_error("runtime.derived_files", exc)


_writers: weakref.WeakSet[DerivedFiles] = weakref.WeakSet()


def flush_all(timeout: float = _EXIT_FLUSH_S) -> None:
    """Write the pending files of every writer (at exit, and when the runtime is reset)."""
    for writer in list(_writers):
        writer.flush(timeout)


atexit.register(flush_all)
os.register_at_fork(after_in_child=lambda: _writers.clear())
