"""vt_middleware's view of the VectorWave store: captured calls, feedback, promotions.

Rows live in VectorWave's own collections (``VectorWaveExecutions`` and
``VectorWaveGoldenDataset``) in VectorWave's layout, so ``vectorwave.search_executions``
and ``VectorWaveDatasetManager`` read them. Lite mode points VectorWave's env
(``VECTORWAVE_MODE=lite``, ``VECTORWAVE_LITE_PATH``) at the same directory.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..config import PerConfig, VTConfig, get_config
from ..errors import ConfigError, StoreError
from ..types import FeedbackPair
from .lance import FixedLanceStore, sql_quote

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


def point_vectorwave_at(config: VTConfig) -> None:
    """Make VectorWave's own factory (``get_vector_store``) open the same store."""
    os.environ["VECTORWAVE_MODE"] = "lite" if config.store_mode == "lite" else "pro"
    os.environ.setdefault("VECTORWAVE_QUIET", "1")
    if config.store_mode == "lite":
        os.environ["VECTORWAVE_LITE_PATH"] = str(config.store_path)
    else:
        os.environ["WEAVIATE_HOST"] = config.weaviate_host
        os.environ["WEAVIATE_PORT"] = str(config.weaviate_port)
        os.environ["WEAVIATE_GRPC_PORT"] = str(config.weaviate_grpc_port)
        if config.weaviate_api_key:
            os.environ["WEAVIATE_API_KEY"] = config.weaviate_api_key
    try:
        from vectorwave.models.db_config import get_weaviate_settings
        from vectorwave.store.factory import get_vector_store

        get_vector_store.cache_clear()
        get_weaviate_settings.cache_clear()
    except Exception:  # noqa: BLE001 - VectorWave's caches are a convenience only
        pass


class ExecutionStore:
    """Reads and writes vt_middleware's rows through a VectorWave ``VectorStore``."""

    def __init__(self, config: Optional[VTConfig] = None, backend: Any = None) -> None:
        self.config = config or get_config()
        if backend is None:
            backend = self._open_backend(self.config)
        self.backend = backend
        self._lock = threading.Lock()

    @staticmethod
    def _open_backend(config: VTConfig) -> Any:
        os.environ.setdefault("VECTORWAVE_QUIET", "1")
        if config.store_mode == "lite":
            config.store_path.mkdir(parents=True, exist_ok=True)
            store = FixedLanceStore(str(config.store_path), vector_dim=config.embedding_dim)
            point_vectorwave_at(config)
            return store
        if config.store_mode == "weaviate":
            try:
                import weaviate
                from vectorwave.store.weaviate_store import WeaviateVectorStore
            except ImportError as exc:  # pragma: no cover
                raise ConfigError("store_mode='weaviate' needs weaviate-client") from exc
            try:
                client = weaviate.connect_to_custom(
                    http_host=config.weaviate_host, http_port=config.weaviate_port, http_secure=False,
                    grpc_host=config.weaviate_host, grpc_port=config.weaviate_grpc_port, grpc_secure=False,
                    auth_credentials=(weaviate.auth.AuthApiKey(config.weaviate_api_key)
                                      if config.weaviate_api_key else None),
                    skip_init_checks=True,
                )
            except Exception as exc:
                raise StoreError(f"cannot connect to Weaviate at {config.weaviate_host}:{config.weaviate_port}: {exc}") from exc
            point_vectorwave_at(config)
            return WeaviateVectorStore(client=client)
        raise ConfigError(f"unknown store_mode {config.store_mode!r}")

    # -- writes ---------------------------------------------------------------
    def write_calls(self, items: Sequence[Dict[str, Any]]) -> int:
        """Write ``{"uuid", "properties", "vector"}`` items; idempotent per uuid on LanceDB."""
        if isinstance(self.backend, FixedLanceStore):
            return self.backend.upsert_many(EXECUTIONS, list(items))
        written = 0
        for item in items:
            if self.backend.fetch_by_id(EXECUTIONS, item["uuid"]) is None:
                self.backend.insert(EXECUTIONS, item["properties"], uuid=item["uuid"],
                                    vector=item.get("vector"))
                written += 1
        return written

    # -- reads ----------------------------------------------------------------
    def count(self, function_name: Optional[str] = None) -> int:
        if isinstance(self.backend, FixedLanceStore):
            where = _function_filter(function_name) if function_name else None
            if where is None:
                return self.backend.count_rows(EXECUTIONS)
            return sum(len(page) for page in self.iter_calls(function_name))
        return sum(len(page) for page in self.iter_calls(function_name))

    def iter_calls(
        self,
        function_name: Optional[str] = None,
        include_vector: bool = False,
        page_size: int = 1000,
    ) -> Iterator[List[StoredCall]]:
        """Pages of calls (optionally of one function), memory bounded by ``page_size``."""
        if isinstance(self.backend, FixedLanceStore):
            where = _function_filter(function_name) if function_name else None
            for page in self.backend.scan(EXECUTIONS, where, include_vector, page_size):
                calls = [
                    StoredCall(row["uuid"], row["payload"],
                               np.asarray(row["vector"], dtype=np.float32) if include_vector else None)
                    for row in page
                    if function_name is None or row["payload"].get("function_name") == function_name
                ]
                if calls:
                    yield calls
            return
        page: List[StoredCall] = []
        for record in self.backend.iterate(EXECUTIONS, batch_size=page_size):
            if function_name and record.properties.get("function_name") != function_name:
                continue
            vector = None
            if include_vector:
                full = self.backend.fetch_by_id(EXECUTIONS, record.uuid, include_vector=True)
                vector = np.asarray(full.vector, dtype=np.float32) if full and full.vector else None
            page.append(StoredCall(record.uuid, record.properties, vector))
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page

    def get_call(self, uuid: str, include_vector: bool = False) -> Optional[StoredCall]:
        record = self.backend.fetch_by_id(EXECUTIONS, uuid, include_vector=include_vector)
        if record is None:
            return None
        vector = np.asarray(record.vector, dtype=np.float32) if record.vector else None
        return StoredCall(record.uuid, record.properties, vector)

    def recent_calls(self, function_name: Optional[str] = None, limit: int = 50) -> List[StoredCall]:
        """The newest ``limit`` calls (by timestamp)."""
        calls = [c for page in self.iter_calls(function_name) for c in page]
        calls.sort(key=lambda c: str(c.properties.get("timestamp_utc", "")), reverse=True)
        return calls[:limit]

    def function_names(self) -> List[str]:
        names = set()
        for page in self.iter_calls():
            names.update(str(c.properties.get("function_name")) for c in page)
        return sorted(n for n in names if n and n != "None")

    # -- feedback ---------------------------------------------------------------
    def add_feedback(self, pair: FeedbackPair, vector: Optional[Sequence[float]] = None) -> str:
        from ..capture.redact import redact_value  # every way in is redacted, not only vt.feedback

        row = redact_value(pair.to_dict(), self.config)
        self.backend.insert(FEEDBACK, {"kind": "feedback", **row}, uuid=pair.pair_id,
                            vector=list(vector) if vector is not None else None)
        return pair.pair_id

    def list_feedback(self, function_name: Optional[str] = None) -> List[FeedbackPair]:
        pairs = [FeedbackPair.from_dict(r.properties) for r in self._all(FEEDBACK)]
        if function_name:
            pairs = [p for p in pairs if p.context.get("function") in (None, function_name)
                     or p.context.get("function_name") == function_name]
        pairs.sort(key=lambda p: p.created_at)
        return pairs

    # -- promotions (shared across app instances) --------------------------------
    def record_promotion(self, promotion: Dict[str, Any]) -> str:
        from ..types import new_id, utc_now_iso

        uid = new_id()
        self.backend.insert(PROMOTIONS, {"created_at": utc_now_iso(), **promotion,
                                         "data": json.dumps(promotion, default=str)}, uuid=uid)
        return uid

    def promotions(self) -> List[Dict[str, Any]]:
        rows = [r.properties for r in self._all(PROMOTIONS)]
        rows.sort(key=lambda r: str(r.get("created_at", "")))
        return rows

    def _all(self, collection: str) -> List[Any]:
        if isinstance(self.backend, FixedLanceStore):
            if not self.backend.collection_exists(collection):
                return []
        elif not self.backend.collection_exists(collection):
            return []
        return list(self.backend.iterate(collection))


def _function_filter(function_name: Optional[str]) -> Optional[str]:
    """A LanceDB pre-filter on the JSON payload; rows are re-checked exactly in Python."""
    if not function_name:
        return None
    needle = json.dumps({"function_name": function_name}, ensure_ascii=False)[1:-1]
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"payload LIKE {sql_quote('%' + escaped + '%')} ESCAPE '\\'"


_stores: PerConfig[ExecutionStore] = PerConfig(ExecutionStore)


def get_store() -> ExecutionStore:
    """The process-wide store for the current config (opened on first use)."""
    return _stores.get()


def reset_store() -> None:
    _stores.reset()
