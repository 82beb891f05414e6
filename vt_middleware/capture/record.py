"""Snapshotting a call on the caller's thread, building its ``CallRecord`` on the worker's.

The caller's thread copies what a record holds into plain JSON values (so later
mutation of the caller's objects cannot change it) and queues a :class:`RawCall`; the
worker truncates to ``max_field_chars`` with a marker, redacts and serialises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from time import perf_counter, time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..call_context import new_run_id, set_last_run_id
from ..config import VTConfig, get_config
from ..redaction import redact, redact_value
from ..types import STATUS_ERROR, CallRecord
from .worker import submit

TRUNCATION_MARKER = "...[truncated {n} chars]"
_MAX_DEPTH = 12
_MAX_ITEMS = 1000


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marker included, when longer."""
    if len(text) <= limit:
        return text
    marker = TRUNCATION_MARKER.format(n=len(text) - limit)
    return text[: max(0, limit - len(marker))] + marker


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break capture
        return f"<unrepresentable {type(obj).__name__}: {type(exc).__name__}>"


def _plain(value: Any, limit: int) -> bool:
    """``value`` is already JSON-safe as it is (an immutable leaf within the limit)."""
    cls = type(value)
    return (cls is str and len(value) <= limit) or cls is int or cls is bool or value is None


def to_jsonable(obj: Any, limit: int, depth: int = 0) -> Any:
    """A JSON-safe deep copy of ``obj``: containers copied, pydantic models dumped,
    anything else its ``repr``; strings truncated to ``limit``."""
    cls = type(obj)
    if cls is str:
        return obj if len(obj) <= limit else truncate(obj, limit)
    # fast path (runs on the caller's thread): small plain dicts and lists, leaves inline
    if (cls is dict or cls is list) and depth < _MAX_DEPTH and len(obj) <= _MAX_ITEMS:
        if cls is list:
            return [v if _plain(v, limit) else to_jsonable(v, limit, depth + 1) for v in obj]
        return {
            k if type(k) is str else str(k): v if _plain(v, limit) else to_jsonable(v, limit, depth + 1)
            for k, v in obj.items()
        }
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else str(obj)
    if isinstance(obj, str):
        return truncate(obj, limit)
    if depth >= _MAX_DEPTH:
        return truncate(_safe_repr(obj), limit)
    if isinstance(obj, dict):
        items = list(obj.items())
        out = {str(k): to_jsonable(v, limit, depth + 1) for k, v in items[:_MAX_ITEMS]}
        if len(items) > _MAX_ITEMS:
            out["..."] = f"[{len(items) - _MAX_ITEMS} more items truncated]"
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        seq = list(obj)
        out_list = [to_jsonable(v, limit, depth + 1) for v in seq[:_MAX_ITEMS]]
        if len(seq) > _MAX_ITEMS:
            out_list.append(f"[{len(seq) - _MAX_ITEMS} more items truncated]")
        return out_list
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    dump = getattr(obj, "model_dump", None)  # pydantic (openai / langchain objects)
    if callable(dump):
        try:
            return to_jsonable(dump(), limit, depth + 1)
        except Exception:  # noqa: BLE001
            pass
    return truncate(_safe_repr(obj), limit)


def output_text(value: Any, limit: int) -> Optional[str]:
    """The recorded text of a return value: strings as-is, JSON for JSON-able values,
    ``repr`` for the rest; truncated."""
    if value is None or isinstance(value, str):
        return None if value is None else truncate(value, limit)
    safe = to_jsonable(value, limit)
    if isinstance(safe, str):
        return safe
    return truncate(json.dumps(safe, ensure_ascii=False), limit)


def sanitize(record: CallRecord, config: Optional[VTConfig] = None) -> CallRecord:
    """Make ``record`` safe to queue and store: JSON copies, truncation, redaction (in place)."""
    config = config or get_config()
    limit = config.max_field_chars
    record.inputs = redact_value(to_jsonable(record.inputs, limit), config)
    record.params = redact_value(to_jsonable(record.params, limit), config)
    if record.output is not None:
        record.output = redact(truncate(str(record.output), limit), config)
    if record.raw_output is not None:
        record.raw_output = redact(truncate(str(record.raw_output), limit), config)
    if record.error_message is not None:
        record.error_message = redact(truncate(str(record.error_message), limit), config)
    for name in ("model_requested", "model_used"):  # a caller's own text, e.g. a key pasted as model
        value = getattr(record, name)
        if value is not None:
            setattr(record, name, redact(truncate(str(value), limit), config))
    return record


# -- chat messages -------------------------------------------------------------------
def last_user_index(messages: List[Any]) -> Optional[int]:
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, dict) and message.get("role") == "user":
            return i
    return None


TEXT_PART_TYPES = frozenset(("text", "input_text"))  # chat and Responses API text parts


def content_text(content: Any) -> Optional[str]:
    """Text of an OpenAI message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in TEXT_PART_TYPES]
        return "\n".join(texts) if texts else None
    return None


def replace_content_text(content: Any, text: str, hooked: str) -> Any:
    """``content`` whose text ``text`` became ``hooked``: parts keep their order and only text
    parts change (an addition goes to the last text part, a prefix to the first; any other
    change puts the whole hooked text in the first text part and drops the other text parts)."""
    if isinstance(content, str):
        return hooked
    where = [i for i, p in enumerate(content) if isinstance(p, dict) and p.get("type") in TEXT_PART_TYPES]
    parts = list(content)
    if len(where) > 1 and hooked.startswith(text):
        last = parts[where[-1]]
        parts[where[-1]] = {**last, "text": last.get("text", "") + hooked[len(text) :]}
        return parts
    if len(where) > 1 and hooked.endswith(text):
        first = parts[where[0]]
        parts[where[0]] = {**first, "text": hooked[: len(hooked) - len(text)] + first.get("text", "")}
        return parts
    parts[where[0]] = {**parts[where[0]], "text": hooked}
    return [p for i, p in enumerate(parts) if i not in where[1:]]


@dataclass
class PromptHookResult:
    messages: List[Any]
    user_text: Optional[str]
    hooked_text: Optional[str]

    @property
    def changed(self) -> bool:
        return self.hooked_text is not None and self.hooked_text != self.user_text


def apply_prompt_hook(pair: Any, messages: List[Any], context: Dict[str, Any]) -> PromptHookResult:
    """Run ``intercept_prompt`` on the last user message's text; the caller's list is not
    mutated (a new list is returned when the text changed)."""
    index = None if pair.hooks is None else last_user_index(messages)
    if index is None:
        return PromptHookResult(messages, None, None)
    message = messages[index]
    text = content_text(message.get("content"))
    if text is None:
        return PromptHookResult(messages, None, None)
    hooked = pair.hooks.apply_prompt(text, context)
    if hooked == text:
        return PromptHookResult(messages, text, hooked)
    new_messages = list(messages)
    new_messages[index] = {**message, "content": replace_content_text(message["content"], text, hooked)}
    return PromptHookResult(new_messages, text, hooked)


# -- one chat call in progress (openai wrapper, langchain middleware) ------------------
LEAF_TYPES = frozenset((str, int, float, bool, type(None)))  # immutable: kept as they are
STR_ONLY = frozenset((str,))  # a message dict of only strings: a shallow copy is a deep one
_UNSET: Any = object()


# reads (output, raw_output, model_used, usage, extra) from a provider response (worker thread)
ResponseReader = Callable[[Any], Tuple[Optional[str], Optional[str], Optional[str], Any, Dict[str, Any]]]


@dataclass(eq=False, slots=True)
class ChatCall:
    """What a chat call asked, under which runtime pair; :meth:`finish` submits the record.
    ``recorded`` is the messages' snapshot (taken at :meth:`finish` when not given)."""

    pair: Any
    function_name: str
    kind: str
    messages: List[Any]
    model_requested: Optional[str]
    model_sent: Optional[str]
    prompt: PromptHookResult
    params: Dict[str, Any]
    parent_run_id: Optional[str] = None
    recorded: Optional[List[Any]] = None
    run_id: str = field(default_factory=new_run_id)
    started: float = field(default_factory=perf_counter)
    finished: bool = False
    structured: bool = False  # schema-constrained JSON output: only JSON hooks apply

    def __post_init__(self) -> None:
        set_last_run_id(self.run_id)

    def context(self) -> Dict[str, Any]:
        return {
            "function_name": self.function_name,
            "model": self.model_sent,
            "messages": self.messages,
            "run_id": self.run_id,
        }

    def apply_output(self, text: str) -> str:
        if self.pair.hooks is None:
            return text
        if self.structured:
            return self.pair.hooks.apply_json_output(text, self.context())
        return self.pair.hooks.apply_output(text, self.context())

    def output_stream(self) -> Any:
        """A stream processor (``feed``/``finish``) for one streamed answer; None without hooks."""
        if self.pair.hooks is None:
            return None
        return self.pair.hooks.output_stream(self.context(), structured=self.structured)

    def finish(
        self,
        *,
        output: Optional[str] = _UNSET,
        raw_output: Optional[str] = None,
        model_used: Optional[str] = None,
        usage: Any = None,
        error: Optional[BaseException] = None,
        extra: Optional[Dict[str, Any]] = None,
        response: Any = None,
        read: Optional[ResponseReader] = None,
    ) -> None:
        """Queue the call (once); the worker builds the record. With ``read``, the worker
        reads what was not given (``output`` left unset) from the provider's ``response``."""
        if self.finished:
            return
        self.finished = True
        if self.recorded is None:
            self.recorded = to_jsonable(self.messages, get_config().max_field_chars)
        submit(ChatRawCall(self, output, raw_output, model_used, usage, error, extra, response, read))


# -- what the caller's thread queues -----------------------------------------------------
class RawCall:
    """A finished call as the caller's thread saw it: JSON copies of its inputs (so later
    mutation cannot change them), the output value and the usage object as they are.
    The worker thread turns it into a truncated, redacted ``CallRecord`` (:meth:`build`),
    keeping serialisation, redaction and token counting off the caller's thread."""

    __slots__ = ("ended", "fields", "output", "usage")

    def __init__(self, output: Any, usage: Any, fields: Dict[str, Any], error: Optional[BaseException] = None) -> None:
        self.output = output
        self.usage = usage
        self.fields = fields
        self.ended = time()
        if error is not None:
            _mark_error(fields, error)

    def build(self, config: Optional[VTConfig] = None) -> CallRecord:
        """The sanitised record (worker thread)."""
        config = config or get_config()
        record = CallRecord(
            **self.fields,
            output=None if self.output is None else output_text(self.output, config.max_field_chars),
            prompt_tokens=usage_field(self.usage, "prompt_tokens", "input_tokens"),
            completion_tokens=usage_field(self.usage, "completion_tokens", "output_tokens"),
            total_tokens=usage_field(self.usage, "total_tokens", "total_tokens"),
            timestamp_utc=datetime.fromtimestamp(self.ended, timezone.utc).isoformat(),
            created_unix=self.ended,
        )
        return sanitize(record, config)


class ChatRawCall(RawCall):
    """A finished :class:`ChatCall`: the caller's thread keeps references (the call with its
    snapshots, the provider's immutable response); the worker assembles the fields."""

    __slots__ = ("call", "extra", "latency_ms", "model_used", "raw_output", "read", "response")

    def __init__(
        self,
        call: ChatCall,
        output: Any,
        raw_output: Optional[str],
        model_used: Optional[str],
        usage: Any,
        error: Optional[BaseException],
        extra: Optional[Dict[str, Any]],
        response: Any,
        read: Optional[ResponseReader],
    ) -> None:
        self.latency_ms = (perf_counter() - call.started) * 1000.0
        self.call, self.raw_output, self.model_used, self.extra = call, raw_output, model_used, extra
        self.response, self.read = response, read
        self.output, self.usage, self.fields, self.ended = output, usage, {}, time()  # no super(): hot path
        if error is not None:
            _mark_error(self.fields, error)

    def build(self, config: Optional[VTConfig] = None) -> CallRecord:
        call, output, raw, model_used, usage, extra = (
            self.call,
            self.output,
            self.raw_output,
            self.model_used,
            self.usage,
            self.extra,
        )
        if self.read is not None:
            r_output, r_raw, model_used, usage, r_extra = self.read(self.response)
            extra = {**r_extra, **extra} if extra else r_extra
            if output is _UNSET:
                output, raw = r_output, r_raw
        if output is _UNSET:
            output = None
        params = {**call.params, **extra} if extra else dict(call.params)
        if call.prompt.changed:
            params["prompt_after_hook"] = call.prompt.hooked_text
        self.output, self.usage = output, usage
        self.fields.update(
            {
                "function_name": call.function_name,
                "inputs": {"messages": call.recorded},
                "kind": call.kind,
                "model_requested": call.model_requested,
                "model_used": model_used or call.model_sent,
                "params": params,
                "raw_output": raw if raw != output else None,
                "latency_ms": self.latency_ms,
                "hook_version": call.pair.hook_version,
                "run_id": call.run_id,
                "parent_run_id": call.parent_run_id,
            }
        )
        return super().build(config)


def _mark_error(fields: Dict[str, Any], error: BaseException) -> None:
    """Record ``error`` (rare; its ``str()`` is not worth deferring to the worker)."""
    fields["status"] = STATUS_ERROR
    fields["error_type"] = type(error).__name__
    fields["error_message"] = str(error)


def usage_field(usage: Any, name: str, alt: str) -> Optional[int]:
    """A token count from an OpenAI usage object or a LangChain usage dict."""
    if usage is None:
        return None
    for key in (name, alt):
        value = usage.get(key) if isinstance(usage, dict) else getattr(usage, key, None)
        if isinstance(value, int):
            return value
    return None


# -- assistant output: text, tool calls, choices ---------------------------------------
def tool_call_dicts(tool_calls: Any) -> List[Dict[str, Any]]:
    """Tool calls (SDK objects or dicts) in OpenAI's chat format:
    ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
    out: List[Dict[str, Any]] = []
    for call in tool_calls or []:
        data = call if isinstance(call, dict) else to_jsonable(call, get_config().max_field_chars)
        function = data.get("function") if isinstance(data.get("function"), dict) else {}
        out.append(
            {
                "id": data.get("id"),
                "type": data.get("type") or "function",
                "function": {"name": function.get("name"), "arguments": function.get("arguments") or ""},
            }
        )
    return out


def assistant_output(text: Optional[str], tool_calls: List[Dict[str, Any]], extra: Dict[str, Any]) -> Optional[str]:
    """The recorded output of an assistant message; its tool calls go to ``extra["tool_calls"]``.
    A message with only tool calls is recorded as their JSON text (``output_is_tool_calls``)."""
    if not tool_calls:
        return text
    extra["tool_calls"] = tool_calls
    if text:
        return text
    extra["output_is_tool_calls"] = True
    return json.dumps(tool_calls, ensure_ascii=False)
