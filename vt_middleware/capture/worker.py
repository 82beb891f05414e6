"""The background capture worker: the caller's thread only enqueues.

A bounded queue feeds one lazily started daemon thread that takes whatever is
queued (up to ``batch_size``), builds the records (copies, truncation, redaction: see
``record.RawCall``), embeds them and writes them to the store in one batch.
When the store write fails, or the queue is full, records go to the append-only
journal and are replayed once the store answers again; writes are idempotent per
``run_id`` so replay never duplicates. ``flush()`` waits until every submitted record
is in the store or the journal; an atexit hook flushes and journals the rest.
"""
from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from ..config import VTConfig, get_config
from ..health import record_internal_error
from ..types import CallRecord
from ..call_context import refill_run_ids
from .journal import Item, Journal
from .vectors import VectorCache

if TYPE_CHECKING:
    from .record import RawCall

Queued = Union[CallRecord, "RawCall"]  # a RawCall is built (copied, redacted) on the worker

_MAX_BACKOFF_S = 30.0
_REPLAY_CHECK_S = 1.0


def _item(record: CallRecord, vector: Optional[Sequence[float]]) -> Item:
    return {
        "uuid": record.run_id,
        "properties": record.to_properties(),
        "vector": None if vector is None else [float(x) for x in vector],
    }


def _report(component: str, exc: BaseException) -> None:
    """Count an internal error from the worker thread; never let it kill the thread."""
    try:
        record_internal_error(component, exc)
    except Exception:  # noqa: BLE001 - strict mode raises; the thread must live on
        pass


class CaptureWorker:
    """Queue + background batching thread + journal for one configuration."""

    def __init__(self, config: Optional[VTConfig] = None) -> None:
        self.config = config or get_config()
        self.journal = Journal(self.config.journal_path)
        # a deque, not queue.Queue: appending wakes no thread (a wake-up per call cost the
        # caller tens of microseconds and, when the woken worker took the GIL, milliseconds)
        self._queue: "collections.deque[Queued]" = collections.deque()
        self._wake = threading.Event()  # set by a full batch, flush() and shutdown()
        self._cond = threading.Condition()
        self._start_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._flush_requested = threading.Event()
        self._ready = threading.Event()  # set after the startup pass over old journal segments
        self._inflight: List[Item] = []
        self._held: List[Item] = []  # journal unwritable (disk full): kept here, bounded
        self._pending = 0  # claimed from the queue, not yet in the store or journal
        self._replay_passes = 0
        self._flushers = 0  # flush() calls waiting: the worker takes batches without lingering
        self._last_replay_check = 0.0
        self._store_retry_at = 0.0
        self._backoff = 0.5
        self._own_store: Any = None
        self.stats: Dict[str, int] = dict.fromkeys(
            ("enqueued", "written", "journaled", "replayed", "dropped", "errors", "batches",
             "spilled_queue_full", "held", "embedded", "embed_cache_hits"), 0)
        self._vectors = VectorCache()

    # -- caller side ------------------------------------------------------------------
    def submit(self, record: Queued) -> None:
        """Hand ``record`` to the worker (never blocks; spills to the journal when full).
        No lock: a queued record counts as pending (and enqueued) from the queue itself until
        the worker claims it (:meth:`_claim`). The bound is checked without a lock:
        concurrent callers may overshoot it by one each."""
        if self._thread is None:
            self._start()
        queued = self._queue
        if len(queued) >= self.config.queue_size:
            with self._cond:
                self._claim(1)
                self.stats["spilled_queue_full"] += 1
            self._spill(self._items([record]))
            self._done(1)
            return
        queued.append(record)
        if len(queued) >= self.config.batch_size and not self._wake.is_set():
            self._wake.set()  # a full batch waits for no timer

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every submitted record is stored or journaled, then give the
        journal one replay pass. True when nothing is left in memory."""
        if self._thread is None:
            if not self.journal.has_files():
                return True
            self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._ready.wait(_remaining(deadline))
        with self._cond:
            self._flushers += 1
        try:
            return self._wait_drained(deadline)
        finally:
            with self._cond:
                self._flushers -= 1

    def _wait_drained(self, deadline: Optional[float]) -> bool:
        self._flush_requested.set()
        self._wake.set()
        with self._cond:
            drained = self._cond.wait_for(self._drained, _remaining(deadline))
            # Replay passes until the journal is empty, the store fails again, or time is up
            # (a pass already running when we asked may predate our newest segment).
            while (drained and (self.journal.has_pending() or self._held)
                   and time.monotonic() >= self._store_retry_at):
                passes = self._replay_passes
                self._flush_requested.set()
                self._wake.set()
                done = self._cond.wait_for(lambda: self._replay_passes > passes or not self._alive(),
                                           _remaining(deadline))
                if not done or not self._alive():
                    break
            return self._drained() and not self._held

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flush, stop the thread, and journal whatever is still in memory."""
        timeout = self.config.shutdown_timeout_s if timeout is None else timeout
        drained = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.1, min(timeout, 2.0)))
        leftovers: List[Item] = []
        self._retry_held()
        with self._cond:
            held, self._held = self._held, []
            self.stats["held"] = 0
            self.stats["dropped"] += len(held)  # the process is going: the last resort
        if thread is not None and thread.is_alive():
            leftovers.extend(self._inflight)  # a stuck write: journal it too (idempotent)
        queued = 0
        while self._queue:
            batch = self._pop(1)
            if not batch:
                break
            leftovers.extend(self._items(batch))
            queued += 1
        if leftovers:
            self._spill(leftovers)
            self._done(queued)
        try:
            self.journal.close()
        except Exception as exc:  # noqa: BLE001
            _report("capture.journal", exc)
        return drained and not leftovers

    def snapshot(self) -> Dict[str, Any]:
        with self._cond:
            stats: Dict[str, Any] = dict(self.stats)
            stats["pending"] = self._pending
            depth = len(self._queue)
        stats["pending"] += depth
        stats["enqueued"] += depth
        stats["queue_depth"] = depth
        stats["store_down"] = time.monotonic() < self._store_retry_at
        stats["thread_alive"] = self._alive()
        return stats

    # -- worker thread ------------------------------------------------------------------
    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vt-capture", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:  # warm up (imports, store, model) now, not inside the atexit flush
            from ..store.embedding import get_embedder

            if not _journal_only(self.config):
                self._store()
            get_embedder(self.config.embedding_model)
        except Exception as exc:  # noqa: BLE001 - the first batch reports it again
            _report("capture.warmup", exc)
        try:
            self.journal.recover_orphans()
        except Exception as exc:  # noqa: BLE001
            _report("capture.journal", exc)
        self._flush_requested.set()  # replay what earlier processes left behind
        self._maybe_replay(force=True)
        self._ready.set()
        while True:
            refill_run_ids()
            batch = self._take_batch()
            if batch:
                self._process(batch)
            if self._stop.is_set() and not self._queue:
                break
            self._maybe_replay(force=not batch)
        with self._cond:
            self._cond.notify_all()

    def _take_batch(self) -> List[Queued]:
        """Up to ``batch_size`` queued records. Short of a full batch, records linger up to
        ``flush_interval_s`` (from when the worker first sees them) unless a flush or
        shutdown asks: fewer, larger writes (each LanceDB write costs a fragment and
        memory). Idle, it wakes at least every 0.25 s (journal replay checks)."""
        queued, full, interval = self._queue, self.config.batch_size, self.config.flush_interval_s
        linger_until: Optional[float] = None
        while len(queued) < full and not self._flushers and not self._stop.is_set():
            now = time.monotonic()
            if queued and linger_until is None:
                linger_until = now + interval
            wait = min(interval, 0.25) if linger_until is None else linger_until - now
            if wait <= 0:
                break
            self._wake.wait(wait)
            self._wake.clear()  # a set() racing this is caught by the next timeout
            if linger_until is None and not queued:
                return []  # an idle tick
        return self._pop(full) if queued else []

    def _pop(self, limit: int) -> List[Queued]:
        """Up to ``limit`` queued records, claimed (see :meth:`_claim`) in the same step, so
        ``flush`` never sees a record in neither the queue nor ``_pending``."""
        queued = self._queue
        batch: List[Queued] = []
        with self._cond:
            while queued and len(batch) < limit:
                try:
                    batch.append(queued.popleft())
                except IndexError:
                    break
            self._claim(len(batch))
        return batch

    def _claim(self, n: int) -> None:
        """Count ``n`` records taken by the worker as pending and enqueued (under ``_cond``)."""
        self._pending += n
        self.stats["enqueued"] += n

    def _drained(self) -> bool:
        """Nothing queued or in hand (under ``_cond``)."""
        return self._pending == 0 and not self._queue

    def _store(self) -> Any:
        from ..store.executions import ExecutionStore, get_store

        store = get_store()
        if store.config is self.config:
            return store
        if self._own_store is None:  # a retired worker drains into its own config's store
            self._own_store = ExecutionStore(self.config)
        return self._own_store

    def _embed(self, items: List[Item]) -> None:
        """Fill in missing vectors (in place); identical texts are embedded once."""
        from ..store.embedding import get_embedder

        self._vectors.fill(items, get_embedder(self.config.embedding_model))
        with self._cond:
            self.stats["embedded"] = self._vectors.embedded
            self.stats["embed_cache_hits"] = self._vectors.hits

    def _items(self, batch: List[Queued]) -> List[Item]:
        """Store items of ``batch``; a record that cannot be built is counted and dropped."""
        items = []
        for record in batch:
            try:
                built = record if isinstance(record, CallRecord) else record.build(self.config)
                items.append(_item(built, None))
            except Exception as exc:  # noqa: BLE001 - one bad record must not sink the batch
                self._count_error("capture.build", exc)
                with self._cond:
                    self.stats["dropped"] += 1
        return items

    def _process(self, batch: List[Queued]) -> None:
        items = self._items(batch)
        self._inflight = items
        try:
            if not items:
                return
            try:
                self._embed(items)
            except Exception as exc:  # noqa: BLE001 - journal unembedded; replay embeds
                self._count_error("capture.embed", exc)
                self._spill(items)
                return
            if time.monotonic() < self._store_retry_at or _journal_only(self.config):
                self._spill(items)
                return
            try:
                self._store().write_calls(items, fresh=True)  # new run ids: nothing to look up
            except Exception as exc:  # noqa: BLE001
                self._count_error("capture.store", exc)
                self._store_failed()
                self._spill(items)
                return
            self._store_ok()
            with self._cond:
                self.stats["written"] += len(items)
                self.stats["batches"] += 1
        finally:
            self._inflight = []
            self._done(len(batch))

    def _maybe_replay(self, force: bool) -> None:
        now = time.monotonic()
        requested = self._flush_requested.is_set()
        if not requested and (not force or now - self._last_replay_check < _REPLAY_CHECK_S):
            return
        self._flush_requested.clear()
        self._last_replay_check = now
        self._retry_held()
        if _journal_only(self.config):
            self.journal.seal()  # a forked child: the parent (or the next process) replays
            with self._cond:
                self._replay_passes += 1
                self._cond.notify_all()
            return
        try:
            self.journal.recover_orphans()  # segments of exited children / crashed processes
            if now >= self._store_retry_at and self.journal.has_pending():
                replayed = self.journal.replay(self._write_replayed, batch_size=self.config.batch_size)
                if replayed:
                    with self._cond:
                        self.stats["replayed"] += replayed
                self._store_ok()
        except Exception as exc:  # noqa: BLE001
            self._count_error("capture.replay", exc)
            self._store_failed()
        finally:
            with self._cond:
                self._replay_passes += 1
                self._cond.notify_all()

    def _write_replayed(self, items: List[Item]) -> None:
        self._embed(items)
        self._store().write_calls(items)

    def _spill(self, items: List[Item]) -> None:
        if not items:
            return
        try:
            self.journal.append(items)
        except Exception as exc:  # noqa: BLE001 - disk full / unwritable
            self._count_error("capture.journal", exc)
            self._hold(items)
            return
        with self._cond:
            self.stats["journaled"] += len(items)

    def _hold(self, items: List[Item]) -> None:
        """Keep ``items`` in memory (at most ``queue_size``) until the store or the journal
        takes them; only what does not fit is dropped, and counted."""
        with self._cond:
            room = max(0, self.config.queue_size - len(self._held))
            self._held.extend(items[:room])
            self.stats["dropped"] += max(0, len(items) - room)
            self.stats["held"] = len(self._held)

    def _retry_held(self) -> None:
        """Give held items to the store (if it is not backing off), else to the journal.
        They stay in ``_held`` until one takes them, so ``flush()`` never sees them gone early."""
        with self._cond:
            items = list(self._held)
        if not items:
            return
        if time.monotonic() >= self._store_retry_at:
            try:
                self._embed(items)
                self._store().write_calls(items)  # held after a failed write that may have landed: looked up
            except Exception as exc:  # noqa: BLE001
                self._count_error("capture.store", exc)
                self._store_failed()
            else:
                self._store_ok()
                self._release_held(items, "written")
                return
        try:
            self.journal.append(items)
        except Exception:  # noqa: BLE001 - still unwritable: keep holding (counted once already)
            return
        self._release_held(items, "journaled")

    def _release_held(self, items: List[Item], outcome: str) -> None:
        taken = {id(it) for it in items}
        with self._cond:
            self._held = [it for it in self._held if id(it) not in taken]
            self.stats["held"] = len(self._held)
            self.stats[outcome] += len(items)

    def _done(self, n: int) -> None:
        with self._cond:
            self._pending -= n
            if self._pending <= 0:
                self._cond.notify_all()

    def _count_error(self, component: str, exc: BaseException) -> None:
        with self._cond:
            self.stats["errors"] += 1
        _report(component, exc)

    def _store_failed(self) -> None:
        self._store_retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)

    def _store_ok(self) -> None:
        self._store_retry_at = 0.0
        self._backoff = 0.5


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


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
                old._stop.set()
                old._wake.set()
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
    return worker.flush(timeout)


def capture_stats() -> Dict[str, Any]:
    """Counters of the capture pipeline, plus records waiting in the journal."""
    worker = _worker
    if worker is None:
        stats: Dict[str, Any] = {"enqueued": 0, "written": 0, "journaled": 0, "replayed": 0,
                                 "dropped": 0, "errors": 0, "queue_depth": 0, "pending": 0}
        journal = Journal(get_config().journal_path)
    else:
        stats = worker.snapshot()
        journal = worker.journal
    stats["journal_pending"] = journal.pending_count()
    return stats


def shutdown_worker(timeout: Optional[float] = None) -> bool:
    """Flush and stop the worker (``vt.reset()`` and atexit use it)."""
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    if worker is None:
        return True
    return worker.shutdown(timeout)


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
    _worker = None
    try:
        from ..store.executions import reset_store

        reset_store()
    except Exception:  # noqa: BLE001
        pass


# Flush before threading's exit hooks stop concurrent.futures (LanceDB writes through an
# executor, which refuses work once its own exit hook ran). Importing it first puts our
# hook ahead of its hook (they run in reverse order). The plain atexit hook catches
# records captured by non-daemon threads after that.
# (concurrent.futures.process too: VectorWave's import chain reaches it via joblib, and
# an import that registers an exit hook during shutdown raises.)
import concurrent.futures.process  # noqa: E402,F401
import concurrent.futures.thread  # noqa: E402,F401

try:
    threading._register_atexit(_atexit_flush)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    pass
atexit.register(_atexit_flush)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
