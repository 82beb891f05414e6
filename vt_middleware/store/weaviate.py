"""VectorWave's Weaviate store with the faults that matter to vt_middleware fixed.

VectorWave 1.0.2's ``WeaviateVectorStore`` (tested in tests/test_store_weaviate.py):
- ``insert_many`` runs a background dynamic batch, logs failures and returns a count:
  a store that is down reads as "0 written", so the capture worker would never spill
  the batch to its journal;
- ``fetch_by_id`` answers None for every error, so an outage reads as "no such row";
- ``iterate`` returns no vectors (the selection stage needs them) and ``insert`` into a
  collection nobody created relies on auto-schema, which types an RFC3339 string as a
  date and a token count as a float.

``FixedWeaviateStore`` writes through one synchronous gRPC ``BatchObjects`` call that
raises on failure (a batch replaces an object with the same uuid, so rewriting a call
is idempotent), declares every collection's properties before the first write, and
reads in pages with Weaviate's cursor (``after``), vectors included. The cursor cannot be
combined with a filter in Weaviate, so a function's calls are selected while paging.
Every failure is a ``StoreError``; with the server down the client first retries (a
write takes ~15 s to fail; the capture worker then spills the batch to its journal).
"""

from __future__ import annotations

import uuid as uuid_lib
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set

from . import IMPORT_LOCK

with IMPORT_LOCK:  # VectorWave's import cycles break under concurrent first imports
    from vectorwave.store.base import StoreRecord
    from vectorwave.store.weaviate_store import WeaviateVectorStore, _to_record

from ..config import VTConfig
from ..errors import StoreError
from .upsert import UpsertWrites

_TEXT = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "status",
    "error_message",
    "error_code",
    "return_value",
    "exec_source",
    "run_id",
    "kind",
    "inputs",
    "params",
    "raw_output",
    "model_requested",
    "model_used",
    "hook_version",
)
# VectorWave's own execution schema (vectorwave.database.db.create_execution_schema) plus ours.
EXECUTION_PROPERTIES: List[Dict[str, Any]] = (
    [
        {"name": "function_name", "data_type": "TEXT", "tokenization": "field"},
        {"name": "function_uuid", "data_type": "UUID"},
        {"name": "timestamp_utc", "data_type": "DATE"},
        {"name": "duration_ms", "data_type": "NUMBER"},
        {"name": "created_unix", "data_type": "NUMBER"},
    ]
    + [{"name": name, "data_type": "TEXT"} for name in _TEXT]
    + [{"name": name, "data_type": "INT"} for name in ("prompt_tokens", "completion_tokens", "total_tokens")]
)
# Feedback and promotion rows keep their whole content as JSON in ``data`` (lossless: a
# nanosecond timestamp would not survive gRPC's double-typed properties).
DOCUMENT_PROPERTIES: List[Dict[str, Any]] = [
    {"name": "kind", "data_type": "TEXT", "tokenization": "field"},
    {"name": "function_name", "data_type": "TEXT", "tokenization": "field"},
    {"name": "action", "data_type": "TEXT", "tokenization": "field"},
    {"name": "created_at", "data_type": "TEXT", "tokenization": "field"},
    {"name": "data", "data_type": "TEXT"},
]


def connect(config: VTConfig) -> FixedWeaviateStore:
    """A store on the Weaviate server the config names (REST port + gRPC port)."""
    try:
        import weaviate
    except ImportError as exc:  # pragma: no cover - weaviate-client comes with vectorwave
        raise StoreError("store_mode='weaviate' needs the weaviate-client package") from exc
    where = f"{config.weaviate_host}:{config.weaviate_port} (gRPC {config.weaviate_grpc_port})"
    try:
        # skip_init_checks: the checks ask pypi.org for the newest client; readiness is checked below.
        client = weaviate.connect_to_custom(
            http_host=config.weaviate_host,
            http_port=config.weaviate_port,
            http_secure=False,
            grpc_host=config.weaviate_host,
            grpc_port=config.weaviate_grpc_port,
            grpc_secure=False,
            auth_credentials=(weaviate.auth.AuthApiKey(config.weaviate_api_key) if config.weaviate_api_key else None),
            skip_init_checks=True,
        )
    except Exception as exc:
        raise StoreError(f"cannot connect to Weaviate at {where}: {exc}") from exc
    store = FixedWeaviateStore(client)
    if not store.is_ready():
        store.close()
        raise StoreError(f"Weaviate at {where} is not ready (GET /v1/.well-known/ready failed)")
    return store


class FixedWeaviateStore(UpsertWrites, WeaviateVectorStore):
    """A ``vectorwave`` ``VectorStore`` over Weaviate whose writes and reads raise on failure."""

    def __init__(self, client: Any) -> None:
        super().__init__(client=client)
        self._ensured: Set[str] = set()

    # -- schema -----------------------------------------------------------------------
    def collection_exists(self, collection: str) -> bool:
        try:
            return bool(self._client.collections.exists(collection))
        except Exception as exc:
            raise StoreError(f"Weaviate schema read for {collection!r} failed: {exc}") from exc

    def ensure_collection(
        self, collection: str, properties: List[Dict[str, Any]], vector_dim: Optional[int] = None
    ) -> None:
        if collection in self._ensured:
            return
        try:
            super().ensure_collection(collection, properties, vector_dim)
        except Exception as exc:
            if not self.collection_exists(collection):  # another instance may have won the race
                raise StoreError(f"cannot create Weaviate collection {collection!r}: {exc}") from exc
        self._ensured.add(collection)

    def _ensure_known(self, collection: str) -> None:
        """Declare our collections before their first write; others are left to auto-schema."""
        from .executions import EXECUTIONS, FEEDBACK, PROMOTIONS  # the executions module names them

        schema = {EXECUTIONS: EXECUTION_PROPERTIES, FEEDBACK: DOCUMENT_PROPERTIES, PROMOTIONS: DOCUMENT_PROPERTIES}.get(
            collection
        )
        if schema is not None:
            self.ensure_collection(collection, schema)

    # -- writes -----------------------------------------------------------------------
    def upsert_many(self, collection: str, items: Sequence[Dict[str, Any]], fresh: bool = False) -> int:
        """Write items keyed by ``uuid`` in one batch (``fresh`` is accepted for the shared
        signature: Weaviate keys objects by uuid itself); raises StoreError naming what failed."""
        if not items:
            return 0
        from weaviate.classes.data import DataObject

        self._ensure_known(collection)
        objects = [
            DataObject(
                properties={k: v for k, v in item["properties"].items() if v is not None},
                uuid=str(item["uuid"]),
                vector=[float(x) for x in item["vector"]] if item.get("vector") is not None else None,
            )
            for item in items
        ]
        try:
            result = self._client.collections.get(collection).data.insert_many(objects)
        except Exception as exc:
            raise StoreError(f"Weaviate batch write to {collection!r} failed: {exc}") from exc
        if result.errors:
            index, error = next(iter(result.errors.items()))
            raise StoreError(
                f"Weaviate rejected {len(result.errors)} of {len(objects)} objects for "
                f"{collection!r}; object {index}: {getattr(error, 'message', error)}"
            )
        return len(objects)

    def replace_many(self, collection: str, items: Sequence[Dict[str, Any]]) -> int:
        """Write items keyed by ``uuid``, replacing stored objects (Weaviate's batch does so per uuid)."""
        return self.upsert_many(collection, items)

    def delete_ids(self, collection: str, uuids: Sequence[str]) -> int:
        """Delete the objects with these uuids; returns how many there were."""
        if not uuids or not self.collection_exists(collection):
            return 0
        col = self._client.collections.get(collection)
        deleted = 0
        for uuid in uuids:
            try:
                deleted += bool(col.data.delete_by_id(uuid=str(uuid)))
            except Exception as exc:
                raise StoreError(f"Weaviate delete of {collection}/{uuid} failed: {exc}") from exc
        return deleted

    # -- reads ----------------------------------------------------------------------------
    def fetch_by_id(self, collection: str, uuid: str, include_vector: bool = False) -> Optional[StoreRecord]:
        if not self.collection_exists(collection):
            return None
        try:
            obj = self._client.collections.get(collection).query.fetch_object_by_id(
                uuid=uuid, include_vector=include_vector
            )
        except Exception as exc:
            raise StoreError(f"Weaviate read of {collection}/{uuid} failed: {exc}") from exc
        return _plain(_to_record(obj, include_vector)) if obj is not None else None

    def pages(
        self, collection: str, function_name: Optional[str] = None, include_vector: bool = False, batch_size: int = 1000
    ) -> Iterator[List[StoreRecord]]:
        """Pages of records in uuid order through the cursor API (``after``). The cursor takes
        no filter, so ``function_name`` is left to the caller, which checks every row."""
        if not self.collection_exists(collection):
            return
        col = self._client.collections.get(collection)
        after: Optional[str] = None
        while True:
            try:
                response = col.query.fetch_objects(limit=batch_size, after=after, include_vector=include_vector)
            except Exception as exc:
                raise StoreError(f"Weaviate read of {collection!r} failed: {exc}") from exc
            if not response.objects:
                return
            yield [_plain(_to_record(obj, include_vector)) for obj in response.objects]
            after = str(response.objects[-1].uuid)

    def iterate(self, collection: str, batch_size: int = 100) -> Iterator[StoreRecord]:
        for page in self.pages(collection, batch_size=batch_size):
            yield from page

    def count_rows(self, collection: str) -> int:
        if not self.collection_exists(collection):
            return 0
        try:
            response = self._client.collections.get(collection).aggregate.over_all(total_count=True)
        except Exception as exc:
            raise StoreError(f"Weaviate count of {collection!r} failed: {exc}") from exc
        return int(response.total_count or 0)


def _plain(record: StoreRecord) -> StoreRecord:
    """Dates and uuids back to the strings they were written as (CallRecord stores text)."""
    for key, value in list(record.properties.items()):
        if isinstance(value, datetime):
            record.properties[key] = value.isoformat()
        elif isinstance(value, uuid_lib.UUID):
            record.properties[key] = str(value)
    return record
