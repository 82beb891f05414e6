"""Writing captured-call records straight to the configured store (for tests that need rows)."""

from __future__ import annotations

import json
from typing import List, Optional, Sequence

from vt_middleware.errors import DataError
from vt_middleware.store.executions import ExecutionStore
from vt_middleware.types import STATUS_SUCCESS, CallRecord


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


class AllCallsExtractor:
    """The seed's extractor interface over the store, with no selection: every successful call
    with text output is golden (for pipeline tests that are about the other stages)."""

    def __init__(self, store: Optional[ExecutionStore] = None) -> None:
        self.store = store

    def _calls(self, function_name: str) -> List[CallRecord]:
        from vt_middleware.store.executions import get_store

        store = self.store or get_store()
        records = [CallRecord.from_properties(c.properties) for page in store.iter_calls(function_name) for c in page]
        return [r for r in records if r.status == STATUS_SUCCESS and (r.output or "").strip()]

    def select_steady_state(self, function_name: str) -> List[CallRecord]:
        return self._calls(function_name)

    def select_anomalies(self, function_name: str) -> List[CallRecord]:
        return []

    def extract_golden_data(self, function_name: str, output_path: str) -> str:
        calls = self._calls(function_name)
        if not calls:
            raise DataError(f"no logged calls of {function_name!r} to select golden data from")
        with open(output_path, "w", encoding="utf-8") as handle:
            for call in calls:
                messages = [*call.inputs["messages"], {"role": "assistant", "content": call.output}]
                handle.write(json.dumps({"messages": messages}) + "\n")
        return output_path
