"""Append-only local journal: every record on its way to the store, and those it could not take (yet).

Records are JSON lines in segment files under ``journal_path``. The capture thread
writes each batch as a chunk (``write_chunk``) before the store sees it, and deletes the
chunk once the store has it; a process also appends to its own ``*.jsonl.open`` segment
(records the queue could not hold); :meth:`Journal.seal` renames it to ``*.jsonl``.
Replay claims a sealed segment by renaming it (so two processes never replay the same
one), hands its items to a writer and deletes it only after the write succeeded.
Open segments left by dead processes are sealed on start. A torn last line (crash
mid-append) is skipped.
"""
from __future__ import annotations

import json
import os
import threading
import time
from itertools import count
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

Item = Dict[str, Any]  # {"uuid", "properties", "vector" (list or None)}

SEGMENT_BYTES = 16 * 1024 * 1024
_OPEN_SUFFIX = ".jsonl.open"
_SEALED_SUFFIX = ".jsonl"


def _claimed_suffix() -> str:
    """Suffix of a sealed segment this process is replaying."""
    return f".claimed-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """Append-only JSONL segments; thread-safe within a process."""

    def __init__(self, path: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._file: Optional[Any] = None
        self._file_path: Optional[Path] = None
        self._seq = count()
        self._pid = os.getpid()

    # -- writing ------------------------------------------------------------------
    def append(self, items: Sequence[Item], sync: bool = True) -> int:
        """Append ``items`` to this process's open segment (flushed; fsynced when ``sync``).
        Returns how many were written."""
        if not items:
            return 0
        lines = _lines(items)
        with self._lock:
            handle = self._current()
            handle.write(lines)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
            if handle.tell() >= self.segment_bytes:
                self._seal_locked()
        return len(items)

    def write_chunk(self, items: Sequence[Item]) -> Path:
        """Write ``items`` as a segment of their own, still marked open (this live process
        owns it; once it is dead, :meth:`recover_orphans` seals it for replay). The caller
        later discards it (its items are stored) or seals it (for replay).
        Flushed to the OS, not fsynced: it survives the process being killed."""
        path = self.path / self._segment_name()
        self.path.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(_lines(items))
        return path

    def discard(self, chunk: Path) -> None:
        """Delete a chunk whose items are all in the store."""
        try:
            chunk.unlink()
        except FileNotFoundError:
            pass

    def seal_chunk(self, chunk: Path) -> None:
        """Hand a chunk to replay (its items did not reach the store)."""
        try:
            os.replace(chunk, chunk.with_name(chunk.name[: -len(".open")]))
        except FileNotFoundError:
            pass

    def _segment_name(self) -> str:
        return f"seg-{time.time_ns()}-{os.getpid()}-{next(self._seq)}{_OPEN_SUFFIX}"

    def _current(self) -> Any:
        if self._file is not None and self._pid != os.getpid():  # a forked child: not its segment
            self._file.close()  # flushed after every append: nothing buffered is written twice
            self._file = self._file_path = None
        if self._file is None:
            self._pid = os.getpid()
            self.path.mkdir(parents=True, exist_ok=True)
            self._file_path = self.path / self._segment_name()
            self._file = open(self._file_path, "a", encoding="utf-8")
        return self._file

    def seal(self) -> None:
        """Close the open segment so it can be replayed."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        if self._file is None or self._file_path is None:
            return
        self._file.close()
        sealed = self._file_path.with_name(self._file_path.name[: -len(".open")])
        os.replace(self._file_path, sealed)
        self._file = None
        self._file_path = None

    # -- reading ------------------------------------------------------------------
    def recover_orphans(self) -> int:
        """Seal open segments whose writing process is gone. Returns how many."""
        if not self.path.exists():
            return 0
        sealed = 0
        for segment in self.path.glob(f"*{_OPEN_SUFFIX}"):
            parts = segment.name.split("-")
            pid = int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else -1
            if pid == os.getpid() or (pid > 0 and _pid_alive(pid)):
                continue
            try:
                os.replace(segment, segment.with_name(segment.name[: -len(".open")]))
                sealed += 1
            except FileNotFoundError:
                pass
        for claimed in self.path.glob("*.claimed-*"):  # a replayer died mid-way
            pid_text = claimed.name.rsplit("-", 1)[-1]
            if pid_text.isdigit() and not _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
                try:
                    os.replace(claimed, self.path / claimed.name.split(".claimed-")[0])
                except FileNotFoundError:
                    pass
        return sealed

    def sealed_segments(self) -> List[Path]:
        if not self.path.exists():
            return []
        return sorted(self.path.glob(f"*{_SEALED_SUFFIX}"))

    def has_pending(self) -> bool:
        """Records of this process not yet in the store: open, sealed, or being replayed
        (a claimed segment is neither open nor sealed until its writes finish)."""
        with self._lock:
            has_open = self._file is not None
        if has_open or self.sealed_segments():
            return True
        return self.path.exists() and any(self.path.glob(f"*{_SEALED_SUFFIX}{_claimed_suffix()}"))

    def has_files(self) -> bool:
        """Any segment here at all (this process's, sealed, or left by another process)."""
        if not self.path.exists():
            return False
        return any(self.path.glob("seg-*"))

    def pending_count(self) -> int:
        """Records waiting in this journal (all segments, sealed and open)."""
        total = 0
        if not self.path.exists():
            return 0
        for segment in self.path.iterdir():
            if segment.is_file():
                total += sum(1 for _ in read_items(segment))
        return total

    def replay(self, write: Callable[[List[Item]], Any], batch_size: int = 256) -> int:
        """Write every sealed segment's items with ``write``; delete each segment after
        its writes succeeded. Raises what ``write`` raises (the segment stays)."""
        self.seal()
        replayed = 0
        for segment in self.sealed_segments():
            claimed = segment.with_name(segment.name + _claimed_suffix())
            try:
                os.replace(segment, claimed)
            except FileNotFoundError:
                continue  # another process claimed it
            in_segment = 0
            try:
                batch: List[Item] = []
                for item in read_items(claimed):
                    batch.append(item)
                    if len(batch) >= batch_size:
                        write(batch)
                        in_segment += len(batch)
                        batch = []
                if batch:
                    write(batch)
                    in_segment += len(batch)
            except BaseException:
                os.replace(claimed, segment)  # give it back; writes are idempotent per uuid
                raise
            claimed.unlink()
            replayed += in_segment
        return replayed

    def close(self) -> None:
        self.seal()


def _lines(items: Sequence[Item]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False, default=str) + "\n" for item in items)


def read_items(segment: Path) -> Iterator[Item]:
    """Items of one segment; unparsable lines (a torn tail) are skipped."""
    try:
        handle = open(segment, "r", encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "uuid" in item and "properties" in item:
                yield item
