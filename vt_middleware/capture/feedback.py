"""``vt.feedback(run_id, fixed_output)``: turn a correction of a captured call into a
``FeedbackPair`` linked to that call."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..errors import ConfigError, DataError
from ..redaction import redact
from ..types import CallRecord, FeedbackPair, input_text
from .record import content_text, last_user_index
from .worker import flush

FLUSH_TIMEOUT_S = 30.0


def prompt_text(record: CallRecord) -> str:
    """The input a hook sees: the last user message for chat calls, else the flat input."""
    messages = record.inputs.get("messages")
    if isinstance(messages, list):
        index = last_user_index(messages)
        if index is not None:
            text = content_text(messages[index].get("content"))
            if text is not None:
                return text
    return input_text(record.inputs)


def feedback(
    run_id: str, fixed_output: Optional[str] = None, *, thumbs_up: Optional[bool] = None, comment: Optional[str] = None
) -> FeedbackPair:
    """Store a correction (``fixed_output``) or approval (``thumbs_up=True``) of call ``run_id``."""
    from ..store import get_store

    if not isinstance(run_id, str) or not run_id:
        raise ConfigError(f"feedback(run_id=...) needs the run_id of a captured call, got {run_id!r}")
    if fixed_output is not None and not isinstance(fixed_output, str):
        raise ConfigError(f"fixed_output must be a string, got {type(fixed_output).__name__}")
    if fixed_output is None and thumbs_up is not True:
        raise ConfigError("feedback needs fixed_output (the corrected answer) unless thumbs_up=True")
    flush(FLUSH_TIMEOUT_S)
    stored = get_store().get_call(run_id)
    if stored is None:
        raise DataError(
            f"no captured call with run_id {run_id!r} in the store (was it captured with this "
            "store_path, or is it still in the journal because the store is down?)"
        )
    record = CallRecord.from_properties(stored.properties)
    bad_output = record.output or ""
    context: Dict[str, Any] = {
        "function": record.function_name,
        "function_name": record.function_name,
        "kind": record.kind,
        "model": record.model_used or record.model_requested,
        "hook_version": record.hook_version,
        "status": record.status,
    }
    if isinstance(record.inputs.get("messages"), list):
        context["messages"] = record.inputs["messages"]
    if thumbs_up is not None:
        context["thumbs_up"] = bool(thumbs_up)
    if comment:
        context["comment"] = redact(comment)
    pair = FeedbackPair(
        input_prompt=prompt_text(record),
        bad_output=bad_output,
        fixed_output=redact(fixed_output) if fixed_output is not None else bad_output,
        context=context,
        run_id=run_id,
    )
    get_store().add_feedback(pair)
    return pair
