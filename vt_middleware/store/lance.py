"""VectorWave's LanceDB store with its lite-mode faults fixed.

VectorWave 1.0.2's ``LanceVectorStore`` (tested in tests/test_store.py):
- ``collection_exists`` tests ``name in db.list_tables()``; with lancedb 0.40
  ``list_tables()`` returns a response object, so it is always False;
- every vector is padded/truncated to 384 dimensions whatever the table holds;
- reads load the whole table into Python; ``fetch_by_id`` pastes the uuid into SQL unescaped;
- ``lancedb.connect`` without ``read_consistency_interval`` keeps each open table at the
  version it first read, so a long-lived process never sees rows another process wrote.

And two LanceDB 0.40 memory traps for a long-lived writer (benchmarks/bench_soak.py):
- the default session caches grow to about 1 GiB with many small appends: capped here;
- every ``merge_insert`` left about 1 MiB behind: writes are plain appends after a lookup
  of the batch's uuids (skipped for records the caller knows are new).

``FixedLanceStore`` keeps VectorWave's on-disk layout (``uuid``, ``vector``,
JSON ``payload``) so VectorWave's own tools read what we write, and adds
idempotent writes (merge on ``uuid``) and paged scans with a pushed-down filter.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import IMPORT_LOCK

with IMPORT_LOCK:  # VectorWave's import cycles break under concurrent first imports
    from vectorwave.store.base import StoreRecord
    from vectorwave.store.lance_store import LanceVectorStore, _row_to_record, _serialize_properties

from ..errors import DataError
from .compaction import ChildCompactor
from .upsert import UpsertWrites

COMPACT_EVERY_WRITES = 50
COMPACT_MIN_INTERVAL_S = 60.0
KEEP_OLD_VERSIONS = timedelta(minutes=10)
CACHE_BYTES = 32 << 20  # each of LanceDB's index and metadata caches (default: about 1 GiB, kept)
_ID_LOOKUP_CHUNK = 500
_OPEN_ATTEMPTS = 5


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class FixedLanceStore(UpsertWrites, LanceVectorStore):
    """A ``vectorwave`` ``VectorStore`` over LanceDB that keeps the table's own dimension."""

    def __init__(self, db_path: str, vector_dim: int = 384) -> None:
        super().__init__(db_path=db_path, vector_dim=vector_dim)
        # Interval 0: every read checks for a newer table version (other processes' writes).
        session = self._lancedb.Session(index_cache_size_bytes=CACHE_BYTES, metadata_cache_size_bytes=CACHE_BYTES)
        self._db = self._lancedb.connect(db_path, read_consistency_interval=timedelta(0), session=session)
        self._write_locks: Dict[str, threading.Lock] = {}  # one per table: a big batch never holds up another table
        self._schema_lock = threading.Lock()
        self._dims: Dict[str, int] = {}  # fixed when a table is created
        self._writes: Dict[str, int] = {}
        self.compactor = ChildCompactor(db_path, KEEP_OLD_VERSIONS)

    # -- schema ---------------------------------------------------------------
    def table_names(self) -> List[str]:
        names: List[str] = []
        token: Optional[str] = None
        while True:
            listing = self._db.list_tables(page_token=token)
            names.extend(getattr(listing, "tables", None) or [])
            token = getattr(listing, "page_token", None)
            if not token:
                return names

    def collection_exists(self, collection: str) -> bool:
        return collection in self.table_names()

    def ensure_collection(
        self, collection: str, properties: List[Dict[str, Any]], vector_dim: Optional[int] = None
    ) -> None:
        if self.collection_exists(collection):
            return
        super().ensure_collection(collection, properties, vector_dim or self._vector_dim)

    def delete_collection(self, collection: str) -> None:
        if self.collection_exists(collection):
            self._db.drop_table(collection)
        self._open_tables.pop(collection, None)
        self._dims.pop(collection, None)

    def _open(self, collection: str):
        cached = self._open_tables.get(collection)
        if cached is not None:
            return cached
        with self._schema_lock:  # two threads creating a table at once: one saw it half-made
            cached = self._open_tables.get(collection)
            if cached is not None:
                return cached
            if not self.collection_exists(collection):
                self.ensure_collection(collection, properties=[])
            for attempt in range(_OPEN_ATTEMPTS):
                try:
                    table = self._db.open_table(collection)
                    break
                except ValueError:  # another process is still creating it
                    if attempt == _OPEN_ATTEMPTS - 1:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            self._open_tables[collection] = table
            return table

    def close(self) -> None:
        """Let a running compaction finish (a child left behind would outlive its reaper)."""
        self.compactor.wait(timeout=60)
        super().close()

    def table_dim(self, collection: str) -> int:
        """The vector dimension the table was created with (read once: a schema read is a round trip)."""
        dim = self._dims.get(collection)
        if dim is None:
            dim = self._dims[collection] = int(self._open(collection).schema.field("vector").type.list_size)
        return dim

    def _write_lock(self, collection: str) -> threading.Lock:
        lock = self._write_locks.get(collection)
        if lock is None:
            with self._schema_lock:
                lock = self._write_locks.setdefault(collection, threading.Lock())
        return lock

    # -- writes -----------------------------------------------------------------
    def upsert_many(self, collection: str, items: Sequence[Dict[str, Any]], fresh: bool = False) -> int:
        """Write items keyed by ``uuid``; a uuid already stored, or repeated in ``items``, is
        written once. ``fresh``: the caller knows none is stored yet (new run ids), so the
        lookup is skipped. Returns the number of rows written."""
        if not items:
            return 0
        table = self._open(collection)
        dim = self.table_dim(collection)
        rows: Dict[str, Dict[str, Any]] = {}
        for item in items:
            vector = item.get("vector")
            vector = [0.0] * dim if vector is None else [float(x) for x in vector]
            if len(vector) != dim:
                raise DataError(
                    f"vector of {len(vector)} dimensions for collection '{collection}', "
                    f"which stores {dim}; configure embedding_dim to match or use a new store_path"
                )
            uid = str(item["uuid"])
            rows.setdefault(uid, {"uuid": uid, "vector": vector, "payload": _serialize_properties(item["properties"])})
        with self._write_lock(collection):
            if not fresh:
                for uid in self._stored_ids(table, list(rows)):
                    del rows[uid]
            if rows:
                table.add(list(rows.values()))
            self._writes[collection] = writes = self._writes.get(collection, 0) + 1
        if writes % COMPACT_EVERY_WRITES == 0:
            self.compactor.start(collection, COMPACT_MIN_INTERVAL_S)  # skipped while one runs
        return len(rows)

    def replace_many(self, collection: str, items: Sequence[Dict[str, Any]]) -> int:
        """Write items keyed by ``uuid``, replacing a stored row of the same uuid in one atomic
        step (LanceDB ``merge_insert``; for rare edits such as a corrected feedback pair)."""
        if not items:
            return 0
        table = self._open(collection)
        dim = self.table_dim(collection)
        rows = [
            {
                "uuid": str(item["uuid"]),
                "payload": _serialize_properties(item["properties"]),
                "vector": [0.0] * dim if item.get("vector") is None else [float(x) for x in item["vector"]],
            }
            for item in items
        ]
        with self._write_lock(collection):
            table.merge_insert("uuid").when_matched_update_all().when_not_matched_insert_all().execute(rows)
        return len(rows)

    def delete_ids(self, collection: str, uuids: Sequence[str]) -> int:
        """Delete the rows with these uuids; returns how many there were."""
        if not uuids or not self.collection_exists(collection):
            return 0
        where = "uuid IN (" + ", ".join(sql_quote(str(u)) for u in uuids) + ")"
        table = self._open(collection)
        with self._write_lock(collection):
            found = int(table.count_rows(where))
            if found:
                table.delete(where)
        return found

    def page_rows(
        self, collection: str, function_name: Optional[str], offset: int, limit: int, include_vector: bool = False
    ) -> Tuple[int, List[StoreRecord]]:
        """``(total, records)``: rows ``offset .. offset+limit`` in write order (one query, not a scan)."""
        if not self.collection_exists(collection):
            return 0, []
        where = function_filter(function_name)
        table = self._open(collection)
        total = int(table.count_rows(where))
        columns = ["uuid", "payload"] + (["vector"] if include_vector else [])
        query = table.search().select(columns)
        if where:
            query = query.where(where)
        rows = query.offset(offset).limit(limit).to_list() if limit > 0 and offset < total else []
        return total, [_row_to_record(row, include_vector=include_vector) for row in rows]

    @staticmethod
    def _stored_ids(table: Any, uuids: List[str]) -> List[str]:
        """Those of ``uuids`` the table holds."""
        found: List[str] = []
        for start in range(0, len(uuids), _ID_LOOKUP_CHUNK):
            chunk = uuids[start : start + _ID_LOOKUP_CHUNK]
            where = f"uuid IN ({', '.join(sql_quote(u) for u in chunk)})"
            found.extend(
                row["uuid"] for row in table.search().where(where).select(["uuid"]).limit(len(chunk)).to_list()
            )
        return found

    def compact(self, collection: str, timeout: Optional[float] = None) -> bool:
        """Compact ``collection`` now (in a child process, see ``compaction``) and wait.
        Without it every small write adds a fragment that later reads scan; old versions
        are kept for a while so readers in other processes never lose theirs."""
        self.compactor.wait(timeout)
        self.compactor.start(collection)
        return self.compactor.wait(timeout)

    # -- reads ----------------------------------------------------------------
    def fetch_by_id(self, collection: str, uuid: str, include_vector: bool = False) -> Optional[StoreRecord]:
        if not self.collection_exists(collection):
            return None
        rows = self._open(collection).search().where(f"uuid = {sql_quote(str(uuid))}").limit(1).to_list()
        return _row_to_record(rows[0], include_vector=include_vector) if rows else None

    def count_rows(self, collection: str, where: Optional[str] = None) -> int:
        if not self.collection_exists(collection):
            return 0
        return int(self._open(collection).count_rows(where))

    def scan(
        self,
        collection: str,
        where: Optional[str] = None,
        include_vector: bool = False,
        batch_size: int = 1000,
    ) -> Iterator[List[Dict[str, Any]]]:
        """Yield pages of raw rows (``uuid``, ``payload`` dict, optional ``vector``)."""
        if not self.collection_exists(collection):
            return
        table = self._open(collection)
        columns = ["uuid", "payload"] + (["vector"] if include_vector else [])
        query = table.search().select(columns)
        if where:
            query = query.where(where)
        reader = query.to_batches(batch_size)
        for batch in reader:
            data = batch.to_pydict()
            page = []
            for i, uid in enumerate(data["uuid"]):
                try:
                    payload = json.loads(data["payload"][i] or "{}")
                except ValueError:
                    payload = {}
                row: Dict[str, Any] = {"uuid": uid, "payload": payload}
                if include_vector:
                    row["vector"] = data["vector"][i]
                page.append(row)
            if page:
                yield page

    def pages(
        self, collection: str, function_name: Optional[str] = None, include_vector: bool = False, batch_size: int = 1000
    ) -> Iterator[List[StoreRecord]]:
        """Pages of records; ``function_name`` narrows the read (callers re-check it exactly)."""
        for page in self.scan(collection, function_filter(function_name), include_vector, batch_size):
            yield [StoreRecord(uuid=row["uuid"], properties=row["payload"], vector=row.get("vector")) for row in page]


def function_filter(function_name: Optional[str]) -> Optional[str]:
    """A LanceDB pre-filter on the JSON payload (over-inclusive: rows are re-checked in Python)."""
    if not function_name:
        return None
    needle = json.dumps({"function_name": function_name}, ensure_ascii=False)[1:-1]
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"payload LIKE {sql_quote('%' + escaped + '%')} ESCAPE '\\'"
