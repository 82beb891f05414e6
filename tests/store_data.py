"""Writing captured-call records straight to the configured store (for tests that need rows)."""

from __future__ import annotations

from typing import Sequence

from vt_middleware.types import CallRecord


def write_records(records: Sequence[CallRecord], embed: bool = True) -> None:
    """Store ``records`` as captured calls, embedded with the configured model (or without vectors)."""
    from vt_middleware.config import get_config
    from vt_middleware.store.embedding import get_embedder
    from vt_middleware.store.executions import get_store

    vectors = (
        get_embedder(get_config().embedding_model).embed([r.embedding_text() for r in records]).tolist()
        if embed
        else [None] * len(records)
    )
    get_store().write_calls(
        [{"uuid": r.run_id, "properties": r.to_properties(), "vector": v} for r, v in zip(records, vectors)], fresh=True
    )
