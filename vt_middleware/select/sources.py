"""Where the extractor reads calls from: vt_middleware's store (any VectorWave store)
or plain arrays. A source loads one function's vectors and statuses in pages, and
fetches full rows only for the calls that were selected (memory: the ``(n, d)``
float32 matrix plus a uuid and a status per call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..types import STATUS_SUCCESS, CallRecord, FeedbackPair

DEFAULT_PAGE_SIZE = 2000


@dataclass
class CallMatrix:
    """One function's calls: uuid, embedding row and status of each."""

    uuids: List[str]
    vectors: np.ndarray  # (n, d) float32; a call stored without a vector is a zero row
    statuses: List[str]

    def __len__(self) -> int:
        return len(self.uuids)


class CallSource(Protocol):
    def load(self, function_name: str) -> CallMatrix: ...

    def fetch(self, uuids: Sequence[str]) -> Dict[str, Dict[str, Any]]: ...

    def feedback(self, function_name: str) -> List[FeedbackPair]: ...


class StoreSource:
    """Calls of an :class:`~vt_middleware.store.executions.ExecutionStore`, read in pages."""

    def __init__(self, store: Any, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ConfigError(f"page_size must be >= 1, got {page_size!r}")
        self.store = store
        self.page_size = page_size

    def load(self, function_name: str) -> CallMatrix:
        uuids: List[str] = []
        statuses: List[str] = []
        blocks: List[np.ndarray] = []
        dim: Optional[int] = None
        for page in self.store.iter_calls(function_name, include_vector=True, page_size=self.page_size):
            page_dims = {len(c.vector) for c in page if c.vector is not None}
            for d in page_dims:
                if dim is None:
                    dim = d
                elif d != dim:
                    bad = next(c.uuid for c in page if c.vector is not None and len(c.vector) == d)
                    raise DataError(
                        f"calls of {function_name!r} have mixed vector dimensions "
                        f"({dim} and {d}, e.g. call {bad}); re-embed them with one model"
                    )
            width = dim or 0
            block = np.zeros((len(page), width), dtype=np.float32)
            for row, call in enumerate(page):
                if call.vector is not None and width:
                    block[row] = call.vector
            blocks.append(block)
            uuids.extend(c.uuid for c in page)
            statuses.extend(str(c.properties.get("status") or STATUS_SUCCESS) for c in page)
        width = dim or 0
        blocks = [b if b.shape[1] == width else np.zeros((len(b), width), np.float32) for b in blocks]
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, width), dtype=np.float32)
        return CallMatrix(uuids, vectors, statuses)

    def fetch(self, uuids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        found: Dict[str, Dict[str, Any]] = {}
        for uuid in uuids:
            call = self.store.get_call(uuid)
            if call is not None:
                found[uuid] = call.properties
        return found

    def feedback(self, function_name: str) -> List[FeedbackPair]:
        return self.store.list_feedback(function_name)


@dataclass
class ArraySource:
    """Calls given as arrays: ``vectors`` (n, d), optional statuses, uuids, records
    (:class:`~vt_middleware.types.CallRecord`, for export) and feedback pairs."""

    vectors: Any
    statuses: Optional[Sequence[str]] = None
    uuids: Optional[Sequence[str]] = None
    records: Optional[Sequence[CallRecord]] = None
    feedback_pairs: List[FeedbackPair] = field(default_factory=list)

    def load(self, function_name: str) -> CallMatrix:
        from .density import as_matrix

        vectors = as_matrix(self.vectors)
        n = len(vectors)
        uuids = (
            list(self.uuids)
            if self.uuids is not None
            else ([r.run_id for r in self.records] if self.records is not None else [str(i) for i in range(n)])
        )
        statuses = (
            list(self.statuses)
            if self.statuses is not None
            else ([r.status for r in self.records] if self.records is not None else [STATUS_SUCCESS] * n)
        )
        if len(uuids) != n or len(statuses) != n:
            raise DataError(f"array source: {n} vectors but {len(uuids)} uuids and {len(statuses)} statuses")
        return CallMatrix(uuids, vectors, statuses)

    def fetch(self, uuids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        if self.records is None:
            return {}
        wanted = set(uuids)
        return {r.run_id: r.to_properties() for r in self.records if r.run_id in wanted}

    def feedback(self, function_name: str) -> List[FeedbackPair]:
        return list(self.feedback_pairs)


def open_source(dataset_manager: Any, page_size: int = DEFAULT_PAGE_SIZE) -> CallSource:
    """A source for what the seed called ``dataset_manager``: None (the configured
    store), an ExecutionStore, a ``vectorwave.VectorWaveDatasetManager`` (read through
    its ``.store``), a source, or an (n, d) array."""
    from ..store.executions import ExecutionStore, get_store

    if dataset_manager is None:
        return StoreSource(get_store(), page_size)
    if isinstance(dataset_manager, ExecutionStore):
        return StoreSource(dataset_manager, page_size)
    if hasattr(dataset_manager, "load") and hasattr(dataset_manager, "fetch"):
        return dataset_manager
    if isinstance(dataset_manager, (np.ndarray, list, tuple)):
        return ArraySource(dataset_manager)
    backend = getattr(dataset_manager, "store", None)
    if backend is not None and hasattr(backend, "fetch_by_id"):
        return StoreSource(ExecutionStore(backend=_paged_backend(backend)), page_size)
    raise ConfigError(
        f"dataset_manager must be a VectorWaveDatasetManager, an ExecutionStore, an array "
        f"or a call source; got {type(dataset_manager).__name__}"
    )


def _paged_backend(backend: Any) -> Any:
    """VectorWave's own lite store loads whole tables; the same LanceDB directory is
    opened through FixedLanceStore, which reads in pages."""
    from ..store.lance import FixedLanceStore

    try:
        from vectorwave.store.lance_store import LanceVectorStore
    except ImportError:  # pragma: no cover - vectorwave is a dependency
        return backend
    if isinstance(backend, LanceVectorStore) and not isinstance(backend, FixedLanceStore):
        return FixedLanceStore(backend._db_path, vector_dim=backend._vector_dim)
    return backend
