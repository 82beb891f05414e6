"""Delivery of captured records: store, else journal, else an in-memory hold.

The capture queue's thread hands over *chunks*: records already built and written to a
journal chunk file (so a killed process loses nothing older than the journal window).
This part's own thread embeds a chunk's records and writes them to the store in one
batch, then deletes the chunk file; when the store fails (or backs off) the chunk is
sealed for replay instead. Replay passes write sealed segments (this process's and
those dead processes left) with the checked, uuid-idempotent write. Only where the
journal itself is unwritable are records held in memory, bounded by ``queue_size``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..config import VTConfig
from ..health import record_thread_error
from ..types import CallRecord
from .journal import Item, Journal
from .vectors import VectorCache

_MAX_BACKOFF_S = 30.0
_REPLAY_CHECK_S = 1.0
_IDLE_TICK_S = 0.25

IN_PROCESS_EMBEDDERS = ("static", "hash")  # microseconds a text: a child process would cost more
STAT_NAMES = (
    "written",
    "journaled",
    "replayed",
    "dropped",
    "errors",
    "batches",
    "held",
    "embedded",
    "embed_cache_hits",
)


def remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@dataclass
class Chunk:
    """Built records on their way to the store; ``path`` is their journal chunk (None where
    the journal could not be written)."""

    items: List[Item]
    path: Optional[Path]
    texts: Optional[List[str]] = None  # each item's embedding text, where known
    since: float = field(default_factory=time.monotonic)


def build_items(
    batch: Sequence[Any], config: VTConfig, on_error: Callable[[BaseException], None], texts: Optional[List[str]] = None
) -> List[Item]:
    """Store items of ``batch`` (``CallRecord`` or ``RawCall``); one that cannot be built is
    reported through ``on_error`` and left out. ``texts`` gets each item's embedding text
    (so embedding need not parse the properties back)."""
    items = []
    for record in batch:
        try:
            built = record if isinstance(record, CallRecord) else record.build(config)
            item = {"uuid": built.run_id, "properties": built.to_properties(), "vector": None}
            if texts is not None:
                texts.append(built.embedding_text())
            items.append(item)
        except Exception as exc:  # noqa: BLE001 - one bad record must not sink the batch
            on_error(exc)
    return items


class Delivery:
    """Store -> journal -> hold, with backoff and replay, on a thread of its own.

    Locking: ``_cond`` guards the fields marked so where they are set in ``__init__``;
    the delivery thread alone touches the rest.
    """

    def __init__(self, config: VTConfig, journal: Journal, journal_only: Callable[[], bool]) -> None:
        self.config = config
        self.journal = journal
        self._journal_only = journal_only
        self._cond = threading.Condition()
        # guarded by _cond (the lock is named beside each):
        self._chunks: List[Chunk] = []  # _cond: handed over, not yet taken by the thread
        self._busy = 0  # _cond: records taken by the thread, not yet stored or journaled
        self._held: List[Item] = []  # _cond: the journal was unwritable; kept here, bounded
        self._replay_passes = 0  # _cond
        self._flushers = 0  # _cond: flush()/close() calls waiting; chunks go without lingering
        self._replay_wanted = True  # _cond: the first pass replays what earlier processes left
        self._retry_at = 0.0  # _cond (written); read without it: a float, read whole
        self._backoff = 0.5  # _cond
        self.stats: Dict[str, int] = dict.fromkeys(STAT_NAMES, 0)  # _cond
        # the delivery thread's own (no lock):
        self._last_replay_check = 0.0
        self._vectors = VectorCache()  # (locks itself)
        self._own_store: Any = None
        # set once:
        self._stop = threading.Event()
        self.ready = threading.Event()  # set after the start-up pass over old segments
        self._thread: Optional[threading.Thread] = None  # set by start(), from the queue thread

    # -- the queue thread's side ------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vt-capture-delivery", daemon=True)
            self._thread.start()

    def hand_over(self, items: List[Item], texts: Optional[List[str]] = None) -> None:
        """Journal ``items`` as a chunk, then queue them for the store."""
        if not items:
            return
        path: Optional[Path] = None
        try:
            path = self.journal.write_chunk(items)
        except Exception as exc:  # noqa: BLE001 - disk full: the store (or the hold) takes them
            self.count_error("capture.journal", exc)
        with self._cond:
            self._chunks.append(Chunk(items, path, texts))
            if self._flushers or sum(len(c.items) for c in self._chunks) >= self.config.batch_size:
                self._cond.notify_all()

    def spill(self, items: List[Item]) -> None:
        """Straight to the journal (queue full, or the end of the process); held if it fails."""
        if not items:
            return
        try:
            self.journal.append(items, sync=False)
        except Exception as exc:  # noqa: BLE001 - disk full / unwritable
            self.count_error("capture.journal", exc)
            self._hold(items)
            return
        with self._cond:
            self.stats["journaled"] += len(items)

    def count_error(self, component: str, exc: BaseException) -> None:
        with self._cond:
            self.stats["errors"] += 1
        record_thread_error(component, exc)

    def count_dropped(self, n: int) -> None:
        with self._cond:
            self.stats["dropped"] += n

    # -- flush / shutdown (any thread) -----------------------------------------------------
    def settled(self) -> bool:
        """Nothing waiting for or inside a store write (under ``_cond``)."""
        return not self._chunks and self._busy == 0

    def flush(self, deadline: Optional[float]) -> bool:
        """Wait for queued chunks, then replay until the journal is empty, the store fails,
        or time is up. True only when every record is in the store: nothing in memory and none
        waiting in the journal (a forked child's journal is its delivery)."""
        self.ready.wait(remaining(deadline))
        with self._cond:
            self._flushers += 1
            self._replay_wanted = True
            self._cond.notify_all()
        try:
            with self._cond:
                settled = self._cond.wait_for(self.settled, remaining(deadline))
                # (a pass already running when we asked may predate our newest segment)
                while settled and (self.journal.has_pending() or self._held) and time.monotonic() >= self._retry_at:
                    passes = self._replay_passes
                    self._replay_wanted = True
                    self._cond.notify_all()
                    done = self._cond.wait_for(
                        lambda n=passes: self._replay_passes > n or not self.alive(), remaining(deadline)
                    )
                    if not done or not self.alive():
                        break
                return self.settled() and not self._held and (self._journal_only() or not self.journal.has_pending())
        finally:
            with self._cond:
                self._flushers -= 1

    def close(self, deadline: Optional[float]) -> bool:
        """Stop the thread (waiting for its write until ``deadline``), seal every chunk still
        in memory for replay and close the journal. True when nothing was left over."""
        with self._cond:
            self._flushers += 1  # no lingering from here on
            self._cond.notify_all()
            self._cond.wait_for(self.settled, remaining(deadline))
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=min(0.2, remaining(deadline) or 0.0) if deadline is not None else None)
        self._retry_held()
        with self._cond:
            chunks, self._chunks = self._chunks, []
            held, self._held = self._held, []
            self.stats["held"] = 0
            self.stats["dropped"] += len(held)  # the process is going: the last resort
        left = sum(len(c.items) for c in chunks)
        for chunk in chunks:
            self._to_replay(chunk)
        try:
            self.journal.close()
        except Exception as exc:  # noqa: BLE001
            record_thread_error("capture.journal", exc)
        return not left and not held

    def stop(self) -> None:
        """Ask the thread to finish what it has and exit (a retired worker)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def backing_off(self) -> bool:
        return time.monotonic() < self._retry_at

    def reset_backoff(self) -> None:
        """Let the next write try the store at once."""
        with self._cond:
            self._retry_at = 0.0
            self._backoff = 0.5

    def snapshot(self) -> Dict[str, Any]:
        with self._cond:
            stats: Dict[str, Any] = dict(self.stats)
            stats["pending"] = self._busy + sum(len(c.items) for c in self._chunks)
        return stats

    # -- the delivery thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:  # warm up (imports, store, model) now, not inside the exit flush
            if not self._journal_only():
                self.store()
            self._embedder()
        except Exception as exc:  # noqa: BLE001 - the first batch reports it again
            record_thread_error("capture.warmup", exc)
        try:
            self.journal.recover_orphans()
        except Exception as exc:  # noqa: BLE001
            record_thread_error("capture.journal", exc)
        self._maybe_replay(force=True)
        self.ready.set()
        while not self._stop.is_set():
            chunks = self._take()
            if chunks:
                self._deliver(chunks)
            self._maybe_replay(force=not chunks)
        with self._cond:
            self._cond.notify_all()

    def _take(self) -> List[Chunk]:
        """Chunks to write now: a full batch, the oldest past ``flush_interval_s``, or a flush
        waiting. Short of that the thread lingers (fewer, larger LanceDB writes: each costs a
        fragment and memory); idle, it wakes every 0.25 s for replay checks."""
        with self._cond:
            while not self._stop.is_set():
                if self._chunks:
                    rows = sum(len(c.items) for c in self._chunks)
                    linger = self._chunks[0].since + self.config.flush_interval_s - time.monotonic()
                    if rows >= self.config.batch_size or linger <= 0 or self._flushers or self._replay_wanted:
                        chunks, self._chunks = self._chunks, []
                        self._busy += sum(len(c.items) for c in chunks)
                        return chunks
                    self._cond.wait(min(linger, _IDLE_TICK_S))
                else:
                    if self._replay_wanted:
                        return []
                    if not self._cond.wait(_IDLE_TICK_S):
                        return []
            return []

    def _deliver(self, chunks: List[Chunk]) -> None:
        items = [it for c in chunks for it in c.items]
        texts = None if any(c.texts is None for c in chunks) else [t for c in chunks for t in c.texts or ()]
        try:
            if self.backing_off() or self._journal_only():
                self._replay_later(chunks)
                return
            try:
                self._embed(items, texts)
            except Exception as exc:  # noqa: BLE001 - journaled unembedded; replay embeds
                self.count_error("capture.embed", exc)
                self._replay_later(chunks)
                return
            try:
                self.store().write_calls(items, fresh=True)  # new run ids: nothing to look up
            except Exception as exc:  # noqa: BLE001
                self.count_error("capture.store", exc)
                self._store_failed()
                self._replay_later(chunks)
                return
            self._store_ok()
            for chunk in chunks:
                if chunk.path is not None:
                    self.journal.discard(chunk.path)
            with self._cond:
                self.stats["written"] += len(items)
                self.stats["batches"] += 1
        finally:
            with self._cond:
                self._busy -= len(items)
                self._cond.notify_all()

    def _replay_later(self, chunks: List[Chunk]) -> None:
        for chunk in chunks:
            self._to_replay(chunk)

    def _to_replay(self, chunk: Chunk) -> None:
        """Seal ``chunk`` for replay (or journal/hold it where it has no file)."""
        if chunk.path is None:
            self.spill(chunk.items)
            return
        self.journal.seal_chunk(chunk.path)
        with self._cond:
            self.stats["journaled"] += len(chunk.items)

    def store(self) -> Any:
        from ..store import executions_module

        store = executions_module().get_store()
        if store.config is self.config:
            return store
        if self._own_store is None:  # a retired worker drains into its own config's store
            self._own_store = executions_module().ExecutionStore(self.config)
        return self._own_store

    def _embedder(self) -> Any:
        """The capture embedder: in this process when cheap, else in a child process."""
        from ..store.embedding import get_embedder

        name = self.config.capture_embedding_model
        if self.config.capture_embedding_process and name not in IN_PROCESS_EMBEDDERS:
            from ..store.embed_process import get_process_embedder

            return get_process_embedder(name)
        return get_embedder(name)

    def _embed(self, items: List[Item], texts: Optional[List[str]] = None) -> None:
        """Fill in missing vectors (in place); identical texts are embedded once."""
        self._vectors.fill(items, self._embedder(), texts)
        with self._cond:
            self.stats["embedded"] = self._vectors.embedded
            self.stats["embed_cache_hits"] = self._vectors.hits

    def write_replayed(self, items: List[Item]) -> None:
        """The checked (uuid lookup) write replay uses: a journaled write may have landed."""
        self._embed(items)
        self.store().write_calls(items)

    def _maybe_replay(self, force: bool) -> None:
        now = time.monotonic()
        with self._cond:
            requested, self._replay_wanted = self._replay_wanted, False
        if not requested and (not force or now - self._last_replay_check < _REPLAY_CHECK_S):
            return
        self._last_replay_check = now
        self._retry_held()
        try:
            if self._journal_only():
                self.journal.seal()  # a forked child: the parent (or the next process) replays
                return
            self.journal.recover_orphans()  # segments of exited children / crashed processes
            if not self.backing_off() and self.journal.has_pending():
                replayed = self.journal.replay(self.write_replayed, batch_size=self.config.batch_size)
                if replayed:
                    with self._cond:
                        self.stats["replayed"] += replayed
                self._store_ok()
        except Exception as exc:  # noqa: BLE001
            self.count_error("capture.replay", exc)
            self._store_failed()
        finally:
            with self._cond:
                self._replay_passes += 1
                self._cond.notify_all()

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
        if not self.backing_off() and not self._journal_only():
            try:
                self._embed(items)
                self.store().write_calls(items)  # held after a failed write that may have landed: looked up
            except Exception as exc:  # noqa: BLE001
                self.count_error("capture.store", exc)
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

    def _store_failed(self) -> None:
        with self._cond:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)

    def _store_ok(self) -> None:
        with self._cond:
            self._retry_at = 0.0
            self._backoff = 0.5
