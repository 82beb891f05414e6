"""The capture worker: a queue-and-thread part and a delivery part, for one configuration.

``queueing.CaptureQueue`` takes records from callers (bounded queue, lazy thread, flush
with timeout, fork check by pid) and journals them within ``journal_window_s``;
``delivery.Delivery`` moves them on: store, else journal, else an in-memory hold, with
backoff and replay (writes are idempotent per ``run_id``, so replay never duplicates).
This module keeps the process-wide worker and its exits: atexit journals what is left
and gives the store ``shutdown_timeout_s``; SIGTERM/SIGINT journal, then chain to the
app's handler (``signals``).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Any, Dict, Optional

from ..config import VTConfig, get_config
from . import signals
from .delivery import Delivery
from .journal import Journal
from .queueing import CaptureQueue, Queued

__all__ = ["CaptureWorker", "Queued", "capture_stats", "flush", "get_worker", "shutdown_worker", "submit"]


class CaptureWorker(CaptureQueue):
    """The queue, its thread and a :class:`Delivery` with its journal, for ``config``."""

    def __init__(self, config: Optional[VTConfig] = None) -> None:
        config = config or get_config()
        self.journal = Journal(config.journal_path)
        super().__init__(
            config, Delivery(config, self.journal, lambda: _journal_only(config)), on_start=_install_signal_handlers
        )

    def shutdown(self, timeout: Optional[float] = None) -> bool:  # type: ignore[override]
        return super().shutdown(self.config.shutdown_timeout_s if timeout is None else timeout)


# -- module-level API ---------------------------------------------------------------------
_worker_lock = threading.Lock()
_worker: Optional[CaptureWorker] = None


def get_worker() -> CaptureWorker:
    """The worker for the current config (a config change retires the old one, which
    drains its queue into its own store)."""
    global _worker
    worker = _worker
    if worker is not None and worker.config is get_config():
        return worker
    with _worker_lock:
        if _worker is None or _worker.config is not get_config():
            old = _worker
            _worker = CaptureWorker(get_config())
            if old is not None:
                old.retire()
        return _worker


def submit(record: Queued) -> None:
    """Enqueue a sanitised ``CallRecord`` or a ``RawCall`` (caller's thread: no I/O, no
    embedding, no redaction)."""
    config = get_config()
    if not config.capture_enabled:
        return
    worker = _worker
    if worker is None or worker.config is not config:
        worker = get_worker()
    worker.submit(record)


def flush(timeout: Optional[float] = None) -> bool:
    """Wait until captured calls are in the store (or the journal). True when drained."""
    worker = _worker
    if worker is None:
        worker = get_worker()
    _install_signal_handlers()  # (again) from the main thread: in front of a handler the app set since
    return worker.flush(timeout)


def capture_stats() -> Dict[str, Any]:
    """Counters of the capture pipeline, plus records waiting in the journal and records
    quarantined (``quarantine_path``). Never raises: a failure is reported in ``"error"``."""
    stats: Dict[str, Any] = {
        "enqueued": 0,
        "written": 0,
        "journaled": 0,
        "replayed": 0,
        "dropped": 0,
        "errors": 0,
        "queue_depth": 0,
        "pending": 0,
    }
    try:
        worker = _worker
        if worker is None:
            journal = Journal(get_config().journal_path)
        else:
            stats = worker.snapshot()
            journal = worker.journal
        stats["journal_pending"] = journal.pending_count()
        stats["quarantined"] = journal.quarantine_count()
        stats["quarantine_path"] = str(journal.quarantine_path)
    except Exception as exc:  # noqa: BLE001 - a stats call must never fail the host
        stats["error"] = f"{type(exc).__name__}: {exc}"
    return stats


def shutdown_worker(timeout: Optional[float] = None) -> bool:
    """Flush and stop the worker (``vt.reset()`` and atexit use it)."""
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    if worker is None:
        return True
    return worker.shutdown(timeout)


def _journal_held() -> None:
    """Signal handlers: everything queued to the journal, within ``signal_flush_timeout_s``."""
    worker = _worker
    if worker is not None and worker.config.handle_signals:
        worker.journal_now(time.monotonic() + worker.config.signal_flush_timeout_s)


def _install_signal_handlers() -> None:
    """Chain ours in front of the current handlers (a no-op off the main thread, or when
    ours is already in front)."""
    if get_config().handle_signals:
        signals.install(_journal_held)


def _atexit_flush() -> None:
    try:
        shutdown_worker()
    except Exception:  # noqa: BLE001 - never fail interpreter exit
        pass


_forked_with_lance = False


def _journal_only(config: VTConfig) -> bool:
    """In a child forked after LanceDB started, its Rust runtime's threads are gone and a
    write can hang: the child journals and the parent replays."""
    return _forked_with_lance and config.store_mode == "lite"


def _after_fork_in_child() -> None:
    """The parent's thread does not exist in the child: start from a clean worker/store."""
    global _worker, _worker_lock, _forked_with_lance
    import sys

    _forked_with_lance = _forked_with_lance or "lancedb" in sys.modules
    _worker_lock = threading.Lock()
    _worker = None  # (a kept reference would see the new pid and start afresh too)
    try:
        from ..store import reset_store

        reset_store()
    except Exception:  # noqa: BLE001
        pass


# Flush before threading's exit hooks stop concurrent.futures (LanceDB writes through an
# executor, which refuses work once its own exit hook ran). Importing it first puts our
# hook ahead of its hook (they run in reverse order). The plain atexit hook catches
# records captured by non-daemon threads after that.
# (concurrent.futures.process too: VectorWave's import chain reaches it via joblib, and
# an import that registers an exit hook during shutdown raises.)
import concurrent.futures.process  # noqa: E402
import concurrent.futures.thread  # noqa: E402,F401

try:
    threading._register_atexit(_atexit_flush)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    pass
atexit.register(_atexit_flush)
# Imported by the first wrap/track/middleware, usually on the main thread: the app's own
# threads may make every call, and only the main thread can install a handler.
_install_signal_handlers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
