"""Append-only local journal: every record on its way to the store, and those it could not take (yet).

Records are JSON lines in segment files under ``journal_path``. The capture thread
writes each batch as a chunk (``write_chunk``) before the store sees it, and deletes the
chunk once the store has it; a process also appends to its own ``*.jsonl.open`` segment
(records the queue could not hold); :meth:`Journal.seal` renames it to ``*.jsonl``.
Replay claims a sealed segment by renaming it (so two processes never replay the same
one), hands its items to a writer and deletes it only after the write succeeded.
Open segments left by dead processes are sealed on start.

Reading is per line and per record: a line that cannot be decoded (bytes that are not
UTF-8 JSON, a torn last line) or is JSON of the wrong shape, and a record the store
rejects as data (``DataError``/``TypeError``/``ValueError`` on its own), is moved to
``<journal_path>/quarantine/quarantine.jsonl`` with its segment and byte offset, counted
and logged once; the rest of the segment and later segments replay. Only a failure of
the store itself stops a pass (and gives back what is left of the segment).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from itertools import count
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import DataError

Item = Dict[str, Any]  # {"uuid", "properties", "vector" (list or None)}

logger = logging.getLogger("vt_middleware")
QUARANTINE_DIR = "quarantine"
QUARANTINE_FILE = "quarantine.jsonl"
# what a single record's write raises when the record itself is unusable (not the store)
RECORD_ERRORS = (DataError, TypeError, ValueError, KeyError)
_SURE_RECORD_ERRORS = (DataError, TypeError, KeyError)


class _StoreFailed(Exception):
    """The store failed after ``done`` records of the batch were written."""

    def __init__(self, error: BaseException, done: int) -> None:
        super().__init__(str(error))
        self.error, self.done = error, done


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
        self._quarantine_lock = threading.Lock()
        self._quarantine_logged = False
        self.quarantined = 0  # by this process

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
            self._file = open(self._file_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across appends
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
        """Valid records waiting in this journal (all segments, sealed and open)."""
        total = 0
        if not self.path.exists():
            return 0
        for segment in self.path.iterdir():
            if segment.is_file() and segment.name.startswith("seg-"):
                total += sum(1 for _, entry in read_entries(segment) if isinstance(entry, dict))
        return total

    # -- quarantine -------------------------------------------------------------------
    @property
    def quarantine_path(self) -> Path:
        return self.path / QUARANTINE_DIR / QUARANTINE_FILE

    def quarantine(self, segment: Path, offset: int, reason: str, raw: Union[bytes, Item]) -> None:
        """Move one unusable line or record out of the way (appended, fsynced), count it and
        log the first one with the file's path."""
        from ..redaction import redact_unparsed  # a corrupt line may hold anything

        text = (
            raw.decode("utf-8", "backslashreplace")
            if isinstance(raw, bytes)
            else json.dumps(raw, ensure_ascii=False, default=str)
        )
        entry = {
            "segment": segment.name.split(".claimed-")[0],
            "offset": offset,
            "reason": reason,
            "raw": redact_unparsed(text.rstrip("\n")),
            "quarantined_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path = self.quarantine_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._quarantine_lock:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self.quarantined += 1
            first, self._quarantine_logged = not self._quarantine_logged, True
        if first:
            logger.warning(
                "vt_middleware journal: a record could not be replayed (%s at %s offset %d) and was "
                "moved to %s; later ones are counted in capture_stats()['quarantined']; see `vt doctor`",
                reason,
                entry["segment"],
                offset,
                path,
            )

    def quarantine_count(self) -> int:
        """Records in the quarantine file (every process's)."""
        try:
            with open(self.quarantine_path, "rb") as handle:
                return sum(1 for line in handle if line.strip())
        except FileNotFoundError:
            return 0

    def report(self, examples: int = 5) -> Dict[str, Any]:
        """What ``vt doctor`` shows: records waiting, records quarantined (count, file, the
        commonest reasons, a few examples) and what to do with them."""
        reasons: Dict[str, int] = {}
        shown: List[Dict[str, Any]] = []
        try:
            with open(self.quarantine_path, "rb") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        entry = {"reason": "unreadable quarantine line", "segment": "?", "offset": -1}
                    reason = str(entry.get("reason", "?")).split(":")[0]
                    reasons[reason] = reasons.get(reason, 0) + 1
                    if len(shown) < examples:
                        shown.append({k: entry.get(k) for k in ("segment", "offset", "reason")})
        except FileNotFoundError:
            pass
        quarantined = sum(reasons.values())
        segments = sorted(p.name for p in self.path.glob("seg-*")) if self.path.exists() else []
        advice = (
            "nothing to do"
            if not quarantined
            else f"each line of {self.quarantine_path} is one record that could not be replayed: its segment, "
            "byte offset, reason and raw (redacted) text. Such records never block capture. To keep one, "
            'fix its JSON to {"uuid", "properties": {...}, "vector": null} and append it to a new '
            f"file {self.path}/seg-manual-0-0.jsonl (replayed on the next flush); then delete or archive the "
            "quarantine file"
        )
        return {
            "journal_path": str(self.path),
            "segments": len(segments),
            "pending_records": self.pending_count(),
            "quarantined": quarantined,
            "quarantine_path": str(self.quarantine_path),
            "quarantine_reasons": reasons,
            "examples": shown,
            "advice": advice,
        }

    # -- replay -----------------------------------------------------------------------
    def replay(self, write: Callable[[List[Item]], Any], batch_size: int = 256) -> int:
        """Write every sealed segment's valid records with ``write``, quarantining lines and
        records that cannot be used, and delete each segment once done. A failure of the store
        is raised after what is left of the segment was given back for the next pass."""
        self.seal()
        replayed = 0
        for segment in self.sealed_segments():
            claimed = segment.with_name(segment.name + _claimed_suffix())
            try:
                os.replace(segment, claimed)
            except FileNotFoundError:
                continue  # another process claimed it
            try:
                good = self._valid_entries(claimed)
            except BaseException:
                os.replace(claimed, segment)  # e.g. the quarantine is unwritable: all back
                raise
            position = 0
            try:
                while position < len(good):
                    batch = good[position : position + batch_size]
                    replayed += self._write_batch(claimed, batch, write)
                    position += len(batch)
            except _StoreFailed as failed:
                self._give_back(claimed, segment, [item for _, item in good[position + failed.done :]])
                raise failed.error from None
            except BaseException:
                self._give_back(claimed, segment, [item for _, item in good[position:]])
                raise
            claimed.unlink()
        return replayed

    def _valid_entries(self, segment: Path) -> List[Tuple[int, Item]]:
        good = []
        for offset, entry in read_entries(segment):
            if isinstance(entry, dict):
                good.append((offset, entry))
            else:
                reason, raw = entry
                self.quarantine(segment, offset, reason, raw)
        return good

    def _write_batch(self, segment: Path, batch: List[Tuple[int, Item]], write: Callable[[List[Item]], Any]) -> int:
        """Write ``batch``; where it fails as data, record by record, quarantining the records
        the store rejects. A ``DataError``/``TypeError``/``KeyError`` for one record is the
        record's; a ``ValueError`` only when another record of the batch was written (the
        store raises it too). Anything else is the store's (:class:`_StoreFailed`)."""
        try:
            write([item for _, item in batch])
            return len(batch)
        except RECORD_ERRORS:
            pass
        except BaseException as exc:
            raise _StoreFailed(exc, 0) from exc
        written, doubtful = 0, []
        for index, (offset, item) in enumerate(batch):
            try:
                write([item])
                written += 1
            except _SURE_RECORD_ERRORS as exc:
                self.quarantine(segment, offset, f"rejected by the store: {type(exc).__name__}: {exc}", item)
            except ValueError as exc:
                doubtful.append((offset, item, exc))
            except BaseException as exc:
                raise _StoreFailed(exc, index) from exc
        if doubtful and not written:
            raise _StoreFailed(doubtful[0][2], 0)
        for offset, item, exc in doubtful:
            self.quarantine(segment, offset, f"rejected by the store: {type(exc).__name__}: {exc}", item)
        return written

    def _give_back(self, claimed: Path, segment: Path, items: List[Item]) -> None:
        """Replace the claimed segment by one holding only ``items`` (not yet written and not
        quarantined), under its sealed name for the next pass."""
        try:
            tmp = claimed.with_name(claimed.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(_lines(items))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, segment)
            claimed.unlink()
        except OSError:  # cannot rewrite it: give the whole segment back (writes are idempotent)
            os.replace(claimed, segment)

    def close(self) -> None:
        self.seal()


def _lines(items: Sequence[Item]) -> str:
    return "".join(json.dumps(item, ensure_ascii=False, default=str) + "\n" for item in items)


Entry = Union[Item, Tuple[str, bytes]]  # a record, or (why it is unusable, the raw line)


def read_entries(segment: Path) -> Iterator[Tuple[int, Entry]]:
    """``(byte offset, record or (reason, raw line))`` for every non-blank line of ``segment``.
    Never raises for the content (bytes are decoded per line)."""
    try:
        handle = open(segment, "rb")  # noqa: SIM115 - closed by the reader that iterates it
    except FileNotFoundError:
        return
    with handle:
        offset = 0
        for raw in handle:
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            yield start, _parse_line(raw)


def _parse_line(raw: bytes) -> Entry:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason} at byte {exc.start}", raw
    try:
        item = json.loads(text)
    except ValueError as exc:
        torn = "" if raw.endswith(b"\n") else " (torn last line)"
        return f"not JSON{torn}: {exc}", raw
    problem = record_problem(item)
    return item if problem is None else (problem, raw)


def record_problem(item: Any) -> Optional[str]:
    """Why ``item`` is not a journal record (``{"uuid": str, "properties": dict, "vector":
    list of numbers or None}``), or None."""
    if not isinstance(item, dict):
        return f"not a record: a JSON {type(item).__name__}"
    uid = item.get("uuid")
    if not isinstance(uid, str) or not uid:
        return f"bad uuid: {uid!r:.80}"
    if not isinstance(item.get("properties"), dict):
        return f"properties must be an object, got {type(item.get('properties')).__name__}"
    vector = item.get("vector")
    if vector is not None and not (
        isinstance(vector, list)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vector)
    ):
        return "vector must be a list of finite numbers or null"
    return None


def read_items(segment: Path) -> Iterator[Item]:
    """Valid records of one segment; unusable lines are skipped (replay quarantines them)."""
    for _, entry in read_entries(segment):
        if isinstance(entry, dict):
            yield entry
