"""vt_middleware's view of the VectorWave store: captured calls, feedback, promotions.

Rows live in VectorWave's own collections (``VectorWaveExecutions`` and
``VectorWaveGoldenDataset``) in VectorWave's layout, so ``vectorwave.search_executions``
and ``VectorWaveDatasetManager`` read them once VectorWave is pointed at the same place:
:func:`vectorwave_env` gives its variables (lite: ``VECTORWAVE_MODE=lite``,
``VECTORWAVE_LITE_PATH``) for a shell, and :func:`share_store_with_vectorwave` (``vt.share_store_with_vectorwave()``)
sets them in this process, on request only: the library never writes the environment by itself.
Weaviate mode (``VT_STORE_MODE=weaviate``, ``VT_WEAVIATE_HOST``/``_PORT``/``_GRPC_PORT``/``_API_KEY``)
uses one server that several app instances share: each sees the others' calls, feedback and
promotions (store/weaviate.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import PerConfig, VTConfig, get_config
from ..errors import ConfigError, DataError
from ..types import FeedbackPair
from . import IMPORT_LOCK
from .lance import FixedLanceStore

if TYPE_CHECKING:
    from .weaviate import FixedWeaviateStore

EXECUTIONS = "VectorWaveExecutions"
GOLDEN = "VectorWaveGoldenDataset"
FEEDBACK = "VTFeedback"
PROMOTIONS = "VTPromotions"


@dataclass
class StoredCall:
    """One row of the executions collection."""

    uuid: str
    properties: Dict[str, Any]
    vector: Optional[np.ndarray] = None


def vectorwave_env(config: Optional[VTConfig] = None) -> Dict[str, str]:
    """The environment variables that make VectorWave's own tools open our store."""
    config = config or get_config()
    if config.store_mode == "lite":
        return {"VECTORWAVE_MODE": "lite", "VECTORWAVE_LITE_PATH": str(config.store_path)}
    env = {
        "VECTORWAVE_MODE": "pro",
        "WEAVIATE_HOST": config.weaviate_host,
        "WEAVIATE_PORT": str(config.weaviate_port),
        "WEAVIATE_GRPC_PORT": str(config.weaviate_grpc_port),
    }
    if config.weaviate_api_key:
        env["WEAVIATE_API_KEY"] = config.weaviate_api_key
    return env


def share_store_with_vectorwave(config: Optional[VTConfig] = None) -> Dict[str, str]:
    """On the app's request, point VectorWave's in-process tools (``search_executions``,
    ``VectorWaveDatasetManager``...) at our store: VectorWave reads only its environment, so this
    sets :func:`vectorwave_env`'s variables in ``os.environ`` and clears VectorWave's caches."""
    env = vectorwave_env(config)
    os.environ.update(env)
    try:
        with IMPORT_LOCK:
            from vectorwave.database.db import get_cached_client
            from vectorwave.models.db_config import get_weaviate_settings
            from vectorwave.store.factory import get_vector_store

        get_vector_store.cache_clear()
        get_weaviate_settings.cache_clear()
        get_cached_client.cache_clear()
    except Exception:  # noqa: BLE001 - VectorWave's caches are a convenience only
        pass
    return env


def vectorwave_dataset_manager(store: Optional[ExecutionStore] = None) -> Any:
    """VectorWave's own ``VectorWaveDatasetManager`` bound to our store (its constructor would
    open whatever store VectorWave's environment names)."""
    from vectorwave import VectorWaveDatasetManager
    from vectorwave.models.db_config import get_weaviate_settings

    manager = object.__new__(VectorWaveDatasetManager)
    manager.settings = get_weaviate_settings()
    manager.store = (store or get_store()).backend
    return manager


class ExecutionStore:
    """Reads and writes vt_middleware's rows through a VectorWave ``VectorStore``: LanceDB
    (lite) or Weaviate, both behind the same ``upsert_many`` / ``pages`` / ``fetch_by_id``."""

    def __init__(self, config: Optional[VTConfig] = None, backend: Any = None) -> None:
        self.config = config or get_config()
        self.backend = self._open_backend(self.config) if backend is None else adapt_backend(backend)

    @staticmethod
    def _open_backend(config: VTConfig) -> Backend:
        if config.store_mode == "lite":
            config.store_path.mkdir(parents=True, exist_ok=True)
            store: Backend = FixedLanceStore(str(config.store_path), vector_dim=config.embedding_dim)
        elif config.store_mode == "weaviate":
            from .weaviate import connect

            store = connect(config)
        else:  # pragma: no cover - VTConfig validates store_mode
            raise ConfigError(f"unknown store_mode {config.store_mode!r}")
        return store

    def close(self) -> None:
        self.backend.close()

    # -- writes ---------------------------------------------------------------
    def write_calls(self, items: Sequence[Dict[str, Any]], fresh: bool = False) -> int:
        """Write ``{"uuid", "properties", "vector"}`` items; idempotent per uuid (``fresh``: the
        caller knows none is stored yet, as for calls just captured, so no lookup is made)."""
        return self.backend.upsert_many(EXECUTIONS, list(items), fresh=fresh)

    # -- reads ----------------------------------------------------------------
    def count(self, function_name: Optional[str] = None) -> int:
        if function_name is None:
            return self.backend.count_rows(EXECUTIONS)
        return sum(len(page) for page in self.iter_calls(function_name))

    def iter_calls(
        self,
        function_name: Optional[str] = None,
        include_vector: bool = False,
        page_size: int = 1000,
    ) -> Iterator[List[StoredCall]]:
        """Pages of calls (optionally of one function), memory bounded by ``page_size``."""
        for page in self.backend.pages(EXECUTIONS, function_name, include_vector, page_size):
            calls = [
                _stored(record, include_vector)
                for record in page
                if function_name is None or record.properties.get("function_name") == function_name
            ]
            if calls:
                yield calls

    def get_call(self, uuid: str, include_vector: bool = False) -> Optional[StoredCall]:
        record = self.backend.fetch_by_id(EXECUTIONS, uuid, include_vector=include_vector)
        return _stored(record, include_vector) if record is not None else None

    def recent_calls(self, function_name: Optional[str] = None, limit: int = 50) -> List[StoredCall]:
        """The newest ``limit`` calls (by timestamp)."""
        calls = [c for page in self.iter_calls(function_name) for c in page]
        calls.sort(key=lambda c: str(c.properties.get("timestamp_utc", "")), reverse=True)
        return calls[:limit]

    def function_names(self) -> List[str]:
        names: set[str] = set()
        for page in self.iter_calls():
            names.update(str(c.properties.get("function_name")) for c in page)
        return sorted(n for n in names if n and n != "None")

    # -- feedback ---------------------------------------------------------------
    def add_feedback(self, pair: FeedbackPair, vector: Optional[Sequence[float]] = None) -> str:
        self.backend.upsert_many(FEEDBACK, [self._feedback_item(pair, vector)])
        return pair.pair_id

    def _feedback_item(self, pair: FeedbackPair, vector: Optional[Sequence[float]] = None) -> Dict[str, Any]:
        from ..redaction import redact_value  # every way in is redacted, not only vt.feedback

        row = redact_value(pair.to_dict(), self.config)
        context = row.get("context") or {}
        return {
            "uuid": pair.pair_id,
            "properties": _document(
                row,
                kind="feedback",
                created_at=row.get("created_at"),
                function_name=context.get("function_name") or context.get("function"),
            ),
            "vector": list(vector) if vector is not None else None,
        }

    def get_feedback(self, pair_id: str) -> Optional[FeedbackPair]:
        record = self.backend.fetch_by_id(FEEDBACK, pair_id)
        if record is None:
            return None
        data = record.properties.get("data")
        return FeedbackPair.from_dict(json.loads(data) if isinstance(data, str) else dict(record.properties))

    def update_feedback(self, pair: FeedbackPair) -> FeedbackPair:
        """Replace the stored pair with the same ``pair_id`` (one atomic write); DataError if none."""
        if self.get_feedback(pair.pair_id) is None:
            raise DataError(f"no feedback pair with pair_id {pair.pair_id!r}")
        self.backend.replace_many(FEEDBACK, [self._feedback_item(pair)])
        return self.get_feedback(pair.pair_id) or pair

    def delete_feedback(self, pair_id: str) -> bool:
        """Delete one feedback pair; False when there was none."""
        return self.backend.delete_ids(FEEDBACK, [pair_id]) > 0

    def feedback_for_call(self, run_id: str) -> List[FeedbackPair]:
        return [p for p in self.list_feedback() if p.run_id == run_id]

    def page_calls(
        self, function_name: Optional[str] = None, offset: int = 0, limit: int = 50
    ) -> Tuple[int, List[StoredCall]]:
        """``(total, calls)``: one page of calls in write order (oldest first); one query on
        LanceDB, a scan on backends without ``page_rows``."""
        if hasattr(self.backend, "page_rows"):
            total, records = self.backend.page_rows(EXECUTIONS, function_name, offset, limit)
            calls = [
                _stored(r, False)
                for r in records
                if function_name is None or r.properties.get("function_name") == function_name
            ]
            return total, calls
        calls = [c for page in self.iter_calls(function_name) for c in page]
        return len(calls), calls[offset : offset + limit]

    def list_feedback(self, function_name: Optional[str] = None) -> List[FeedbackPair]:
        pairs = [FeedbackPair.from_dict(row) for row in self._documents(FEEDBACK)]
        if function_name:
            pairs = [
                p
                for p in pairs
                if p.context.get("function") in (None, function_name) or p.context.get("function_name") == function_name
            ]
        pairs.sort(key=lambda p: p.created_at)
        return pairs

    # -- promotions (shared across app instances) --------------------------------
    def record_promotion(self, promotion: Dict[str, Any]) -> str:
        """Write one promotion row; returns its ``record_id`` (a new one when it has none)."""
        from ..types import new_id

        row = {"record_id": new_id(), **promotion}
        self.record_promotions([row])
        return str(row["record_id"])

    def record_promotions(self, promotions: Sequence[Dict[str, Any]]) -> int:
        """Write promotion rows in one batch, each under its ``record_id`` (a new id when it has
        none): a row already stored is not written again (a replayed journal). Returns rows written."""
        from ..types import new_id, utc_now_iso

        created_at = utc_now_iso()
        items = []
        for promotion in promotions:
            row = {"created_at": created_at, **promotion}
            document = _document(row, kind="promotion", created_at=row["created_at"], action=promotion.get("action"))
            items.append({"uuid": str(promotion.get("record_id") or new_id()), "properties": document})
        return self.backend.upsert_many(PROMOTIONS, items)

    def promotions(self) -> List[Dict[str, Any]]:
        rows = self._documents(PROMOTIONS)
        rows.sort(key=lambda r: str(r.get("created_at", "")))
        return rows

    def _documents(self, collection: str) -> List[Dict[str, Any]]:
        """Feedback/promotion rows: the JSON in ``data`` (rows of older lite stores: the row itself)."""
        rows = []
        for page in self.backend.pages(collection):
            for record in page:
                data = record.properties.get("data")
                rows.append(json.loads(data) if isinstance(data, str) else dict(record.properties))
        return rows


Backend = Union[FixedLanceStore, "FixedWeaviateStore"]


def adapt_backend(backend: Any) -> Backend:
    """Our fixed store for a VectorWave store (e.g. a ``VectorWaveDatasetManager``'s ``.store``)."""
    with IMPORT_LOCK:
        from vectorwave.store.lance_store import LanceVectorStore
        from vectorwave.store.weaviate_store import WeaviateVectorStore

        from .weaviate import FixedWeaviateStore

    if isinstance(backend, (FixedLanceStore, FixedWeaviateStore)):
        return backend
    if isinstance(backend, LanceVectorStore):
        return FixedLanceStore(backend._db_path, vector_dim=backend._vector_dim)
    if isinstance(backend, WeaviateVectorStore):
        return FixedWeaviateStore(backend._client)
    raise ConfigError(
        f"unsupported store backend {type(backend).__name__}: expected VectorWave's "
        f"LanceVectorStore or WeaviateVectorStore"
    )


def _document(row: Dict[str, Any], **indexed: Any) -> Dict[str, Any]:
    """A row kept losslessly as JSON in ``data``, next to a few filterable fields."""
    return {**{k: v for k, v in indexed.items() if v is not None}, "data": json.dumps(row, default=str)}


def _stored(record: Any, include_vector: bool) -> StoredCall:
    vector = record.vector if include_vector else None
    return StoredCall(
        record.uuid, record.properties, np.asarray(vector, dtype=np.float32) if vector is not None else None
    )


_stores: PerConfig[ExecutionStore] = PerConfig(ExecutionStore)


def get_store() -> ExecutionStore:
    """The process-wide store for the current config (opened on first use)."""
    return _stores.get()


def reset_store() -> None:
    """Retire the process-wide store (its Weaviate connection is closed)."""
    retired = _stores.reset()
    if retired is not None:
        retired.close()
