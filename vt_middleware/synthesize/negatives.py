"""Negatives for synthesis: outputs of captured calls that nobody corrected.

A rule that changes many of them would change answers users were content with; the
synthesiser drops such rules (``max_negative_share``) and reports its harm rate on them.
Approvals (feedback with ``thumbs_up`` and no change) arrive as identical pairs and count as
outputs that needed no fix.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..capture.feedback import prompt_text
from ..types import STATUS_SUCCESS, CallRecord, FeedbackPair

DEFAULT_LIMIT = 2_000


def uncorrected_outputs(
    function_name: str, feedback: Sequence[FeedbackPair], store: Optional[Any] = None, limit: int = DEFAULT_LIMIT
) -> List[Tuple[str, Dict[str, Any]]]:
    """``(output, hook context)`` of up to ``limit`` successful captured calls of
    ``function_name`` that no feedback pair in ``feedback`` corrects, newest first."""
    if store is None:
        from ..store.executions import get_store

        store = get_store()
    corrected = {pair.run_id for pair in feedback if pair.run_id and pair.bad_output != pair.fixed_output}
    found: List[Tuple[str, str, Dict[str, Any]]] = []
    for page in store.iter_calls(function_name):
        for call in page:
            record = CallRecord.from_properties(call.properties)
            if record.run_id in corrected or record.status != STATUS_SUCCESS or not isinstance(record.output, str):
                continue
            context = {"function_name": record.function_name, "user_input": prompt_text(record)}
            found.append((str(call.properties.get("timestamp_utc", "")), record.output, context))
    found.sort(key=lambda item: item[0], reverse=True)
    return [(output, context) for _, output, context in found[:limit]]
