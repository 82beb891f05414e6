"""The caller-facing half of capture: a bounded queue and one lazily started thread.

A caller only appends to a deque (no lock, no wake-up unless a batch is full). The
thread wakes at least every half ``journal_window_s``, builds what is queued (copies,
truncation, redaction: ``record.RawCall``) and hands it to :class:`~.delivery.Delivery`
as a journal chunk, so a returned call is on disk within the window whatever the store
is doing. A full queue spills to the journal on the caller's thread. After ``fork()``
the child's first call sees a new pid and starts afresh (the parent delivers what was
queued before the fork).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

from ..call_context import refill_run_ids
from ..config import VTConfig
from ..types import CallRecord
from .delivery import Delivery, build_items, remaining

if TYPE_CHECKING:
    from .record import RawCall

Queued = Union[CallRecord, "RawCall"]  # a RawCall is built (copied, redacted) on the thread

_CHUNK_MAX = 2048  # records per journal chunk: a backlog is written in steps, not one long one
_JOURNAL_AT_EXIT_S = 10.0  # at most this long for the thread to journal what is queued at exit


class CaptureQueue:
    """Bounded queue + thread in front of a :class:`Delivery`.

    Locking: each field's lock is written beside it in ``__init__``.
    """

    def __init__(self, config: VTConfig, delivery: Delivery, on_start: Optional[Callable[[], None]] = None) -> None:
        self.config = config
        self.delivery = delivery
        self._on_start = on_start
        # appended by callers without a lock (deque appends are atomic), popped under _cond
        self._queue: collections.deque[Queued] = collections.deque()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._start_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None  # _start_lock
        self._pid = os.getpid()  # _start_lock: the process the thread runs in
        self._stop = threading.Event()
        self._retired = False  # set once, before _stop
        self._pending = 0  # _cond: popped, not yet handed over
        self._flushers = 0  # _cond: flush()/journal_now() calls waiting
        self.stats: Dict[str, int] = {"enqueued": 0, "spilled_queue_full": 0}  # _cond

    # -- caller side ------------------------------------------------------------------
    def submit(self, record: Queued) -> None:
        """Queue ``record`` (never blocks; spills to the journal when the queue is full).
        The bound is checked without a lock: concurrent callers may overshoot it by one each."""
        if self._thread is None or self._pid != os.getpid():
            self._start()
        queued = self._queue
        if len(queued) >= self.config.queue_size:
            self._spill_on_caller(record)
            return
        queued.append(record)
        if len(queued) >= self.config.batch_size and not self._wake.is_set():
            self._wake.set()  # a full batch waits for no timer

    def _spill_on_caller(self, record: Queued) -> None:
        with self._cond:
            self.stats["enqueued"] += 1
            self.stats["spilled_queue_full"] += 1
        self.delivery.spill(self._build([record]))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every submitted record is stored or journaled, then let the journal be
        replayed. True when nothing is left in memory."""
        if self._thread is None and not self._queue and not self.delivery.journal.has_files():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        return self.journal_now(deadline) and self.delivery.flush(deadline)

    def journal_now(self, deadline: Optional[float]) -> bool:
        """Wait (until ``deadline``) for the thread to hand everything queued to delivery,
        that is, to the journal. True when the queue is empty."""
        if self._thread is None or self._pid != os.getpid():
            self._start()
        with self._cond:
            self._flushers += 1
        try:
            self._wake.set()
            with self._cond:
                return self._cond.wait_for(self._handed_over, remaining(deadline))
        finally:
            with self._cond:
                self._flushers -= 1

    def shutdown(self, timeout: float) -> bool:
        """Journal everything queued, give the store up to ``timeout`` and stop."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            with self._cond:  # journaling is not cut short by the store's budget, only by a stuck thread
                self._cond.wait_for(self._handed_over, max(_JOURNAL_AT_EXIT_S, remaining(deadline) or 0.0))
            thread.join(timeout=0.2)
        leftovers = self._pop(len(self._queue) + 1)  # the thread is stuck or never ran
        while leftovers:
            self.delivery.spill(self._build(leftovers))
            self._done(len(leftovers))
            leftovers = self._pop(len(self._queue) + 1)
        return self.delivery.close(deadline)

    def retire(self) -> None:
        """Stop taking records: the thread journals what is queued, delivers it and exits."""
        self._retired = True
        self._stop.set()
        self._wake.set()

    def snapshot(self) -> Dict[str, Any]:
        with self._cond:
            stats: Dict[str, Any] = dict(self.stats)
            pending = self._pending
        depth = len(self._queue)
        stats.update(self.delivery.snapshot())
        stats["pending"] += pending + depth
        stats["enqueued"] += depth
        stats["queue_depth"] = depth
        stats["store_down"] = self.delivery.backing_off()
        stats["thread_alive"] = self.alive()
        return stats

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.delivery.alive()

    # -- the thread ---------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._queue = collections.deque()
                self._cond = threading.Condition()
                self._pending = self._flushers = 0
                self._thread = None
                self._pid = os.getpid()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vt-capture", daemon=True)
                self._thread.start()
                if self._on_start is not None:
                    self._on_start()

    def _run(self) -> None:
        self.delivery.start()
        period = self.config.journal_window_s / 2
        while True:
            refill_run_ids()
            if not self._queue or not (self._flushers or self._stop.is_set()):
                self._wake.wait(period)
                self._wake.clear()  # a set() racing this is caught by the next period
            while self._queue:
                batch = self._pop(_CHUNK_MAX)
                try:
                    texts: List[str] = []
                    items = self._build(batch, texts)
                    self.delivery.hand_over(items, texts if len(texts) == len(items) else None)
                finally:
                    self._done(len(batch))
            if self._stop.is_set() and not self._queue:
                break
        if self._retired:
            self.delivery.close(time.monotonic() + self.config.shutdown_timeout_s)

    def _build(self, batch: List[Queued], texts: Optional[List[str]] = None) -> List[Any]:
        def dropped(exc: BaseException) -> None:
            self.delivery.count_error("capture.build", exc)
            self.delivery.count_dropped(1)

        return build_items(batch, self.config, dropped, texts)

    def _pop(self, limit: int) -> List[Queued]:
        """Up to ``limit`` queued records, counted as pending in the same step, so ``flush``
        never sees a record in neither the queue nor ``_pending``."""
        queued = self._queue
        batch: List[Queued] = []
        with self._cond:
            while queued and len(batch) < limit:
                try:
                    batch.append(queued.popleft())
                except IndexError:
                    break
            self._pending += len(batch)
            self.stats["enqueued"] += len(batch)
        return batch

    def _done(self, n: int) -> None:
        with self._cond:
            self._pending -= n
            if self._handed_over():
                self._cond.notify_all()

    def _handed_over(self) -> bool:
        """Nothing queued or being built (under ``_cond``)."""
        return self._pending == 0 and not self._queue
