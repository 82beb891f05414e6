"""Promotion rows on their way to the store: a small local journal and its background writer.

A promotion or rollback is recorded once its row is in this journal: one file per row in
``VTPromotions.pending/`` (next to a lite store, so every process using that store reads it; in
``state_dir`` with Weaviate), written whole under a temporary name and renamed. That is in the
kernel before the swap, so it outlives the process; it is not fsynced on the caller's path (an
fsync waits behind every other write of the disk: milliseconds under load): a
:class:`RecordWriter` thread fsyncs it, writes the row into the store's promotions collection
under the row's ``record_id`` (looked up first, so a replay never doubles a row), and only then
removes the file. While it writes a row, a writer holds an exclusive ``flock`` on the
row's file: two writers (threads or processes) never write the same row at once, and the lock
of a process that dies is released with it.

Readers of the record add the rows still waiting (:func:`waiting_rows`), read *before* the
store: a row that lands in between is then in one read or the other, never in neither. Rows a
process left behind (it died, or the store was down) are written by the next start's check of
the record or ``vt flush``; a failed write is counted (``runtime.promotion_record``) and retried
with backoff while the process lives.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import importlib.util
import json
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

from ..config import VTConfig
from ..health import record_thread_error
from .derived import latest_path

logger = logging.getLogger("vt_middleware.runtime")

PENDING_DIR = "VTPromotions.pending"
_EXIT_FLUSH_S = 2.0
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0
_CONTENDED_S = 0.05  # another writer holds a row: look again soon


class RecordSink(Protocol):
    """Where rows land (``store.executions.ExecutionStore.record_promotions``)."""

    def record_promotions(self, promotions: Sequence[Dict[str, Any]]) -> int: ...


def pending_dir(config: VTConfig) -> Path:
    """The journal of rows waiting for the store: beside the latest-row mirror."""
    return latest_path(config).parent / PENDING_DIR


def waiting_rows(folder: Path) -> List[Dict[str, Any]]:
    """The rows in the journal ``folder``, oldest first (a file removed meanwhile is skipped)."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []
    rows = []
    for name in names:
        try:
            row = json.loads((folder / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue  # landed while we listed
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable promotion journal file %s: %s", folder / name, exc)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def import_before_threads() -> None:
    """Import httpx here, in the caller's thread, before a thread of ours opens the store (whose
    client libraries import it): the openai SDK reads ``sys.modules["httpx"]`` while it parses a
    response, and a module another thread is still importing there breaks the app's call."""
    if importlib.util.find_spec("httpx") is not None:
        importlib.import_module("httpx")


def _write_whole(path: Path, data: bytes) -> None:
    """``data`` as the new file ``path``, seen whole or not at all (a temporary name, renamed):
    four system calls, each a point where the caller's thread may wait for the GIL under load."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RecordWriter:
    """Journals rows durably now and writes them into the store in its own thread."""

    def __init__(self, folder: Path, sink: Callable[[], RecordSink]) -> None:
        self.folder = folder
        self._sink = sink  # resolved in the thread: opening the store can take seconds
        self._cond = threading.Condition()
        self._mine: Dict[str, float] = {}  # file name -> when journaled, for rows journaled here
        self._replay = False
        self._busy = False
        self._stopped = False
        self._thread: Optional[threading.Thread] = None
        self.failures = 0  # failed store writes since start (each also counted in health)
        self.last_landed_s: Optional[float] = None  # journaled -> in the store, for the newest row landed
        _writers.add(self)

    def journal(self, row: Dict[str, Any]) -> None:
        """Put ``row`` in the journal (raises when it cannot be), then have it fsynced and
        written into the store in the background."""
        name = f"{int(row['at_ns']):020d}-{row['record_id']}.json"
        data = json.dumps(row, default=str).encode("utf-8")
        try:
            _write_whole(self.folder / name, data)
        except FileNotFoundError:  # the first row (or the folder was removed)
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_whole(self.folder / name, data)
        with self._cond:
            self._mine[name] = time.monotonic()
            self._wake()

    def replay(self) -> None:
        """Write every row waiting in the journal (this process's or any other's) soon."""
        with self._cond:
            self._replay = True
            self._wake()

    def waiting(self) -> List[Dict[str, Any]]:
        """The rows not yet in the store (any process's), oldest first."""
        return waiting_rows(self.folder)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the rows journaled here (and a requested replay) are in the store."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._unlanded() and not self._replay and not self._busy, timeout)

    def _unlanded(self) -> bool:
        """Rows journaled here still waiting (one another writer landed is done); under ``_cond``."""
        for name in [n for n in self._mine if not (self.folder / n).exists()]:
            del self._mine[name]
        return bool(self._mine)

    def stop(self) -> None:
        """End the thread (rows not yet in the store stay journaled); a later row starts it again."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _wake(self) -> None:
        self._stopped = False
        if self._thread is None or not self._thread.is_alive():
            import_before_threads()
            self._thread = threading.Thread(target=self._run, name="vt-promotion-record", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _run(self) -> None:
        delay = _RETRY_FIRST_S
        while True:
            with self._cond:
                busy = self._cond.wait_for(lambda: bool(self._mine or self._replay) or self._stopped, timeout=30.0)
                if not busy or self._stopped:
                    self._thread = None  # idle or stopped: the next row starts another
                    return
                replay, self._replay, self._busy = self._replay, False, True
                names = sorted(os.listdir(self.folder)) if replay and self.folder.is_dir() else sorted(self._mine)
            pause = 0.0
            try:
                if not self._land([n for n in names if n.endswith(".json") and not n.startswith(".")]):
                    pause = _CONTENDED_S
                delay = _RETRY_FIRST_S
            except Exception as exc:  # noqa: BLE001 - the rows stay journaled; counted and retried
                self.failures += 1
                record_thread_error("runtime.promotion_record", exc)
                pause, delay = delay, min(delay * 2, _RETRY_MAX_S)
                with self._cond:
                    self._replay = self._replay or replay
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if pause:
                with self._cond:
                    self._cond.wait_for(lambda: self._stopped, timeout=pause)

    def _land(self, names: List[str]) -> bool:
        """Write the rows of ``names`` into the store, then remove their files; False when
        another writer held one of them (it is left to that writer, looked at again later)."""
        rows: List[Dict[str, Any]] = []
        landed: List[str] = []
        skipped: List[str] = []
        contended = False
        with contextlib.ExitStack() as held:
            for name in names:
                path = self.folder / name
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    landed.append(name)  # another writer wrote it
                    continue
                held.callback(os.close, fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    contended = True
                    continue
                os.fsync(fd)  # durable on disk before the store write starts
                try:
                    rows.append(json.loads(path.read_text(encoding="utf-8")))
                except FileNotFoundError:  # written and removed by the writer that held it
                    landed.append(name)
                    continue
                except ValueError as exc:  # not written by a writer (those rename whole files): left alone
                    logger.warning("ignoring unreadable promotion journal file %s: %s", path, exc)
                    skipped.append(name)
                    continue
                landed.append(name)
            if rows:
                self._sink().record_promotions(rows)
            for name in landed:
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / name).unlink()  # lost in a crash: the replay's lookup skips the row
        now = time.monotonic()
        with self._cond:
            for name in skipped:
                self._mine.pop(name, None)
            for name in landed:
                journaled = self._mine.pop(name, None)
                if journaled is not None:
                    self.last_landed_s = now - journaled
        return not contended


_writers: weakref.WeakSet[RecordWriter] = weakref.WeakSet()


def flush_all(timeout: float = _EXIT_FLUSH_S) -> bool:
    """Land the rows every writer holds (at exit and before the store is reset); what is not in
    the store by ``timeout`` stays journaled for the next start. True when all landed."""
    deadline = time.monotonic() + timeout
    done = True
    for writer in list(_writers):
        done = writer.flush(max(0.0, deadline - time.monotonic())) and done
    return done


def retire_all(timeout: float = _EXIT_FLUSH_S) -> bool:
    """:func:`flush_all`, then end every writer's thread (before the store is reset)."""
    done = flush_all(timeout)
    for writer in list(_writers):
        writer.stop()
    return done


atexit.register(flush_all)
os.register_at_fork(after_in_child=lambda: _writers.clear())
