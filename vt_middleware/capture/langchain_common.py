"""What LangChain capture paths share: one model call of a chat model (routing the model
instance, the prompt hook on the last human message, the output hook on a final text
answer, the record), and message snapshots converted to OpenAI's format on the worker."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages

from ..call_context import capture_suppressed, current_function_name, current_run_id, current_scope
from ..health import fail_open
from ..runtime.active import get_runtime
from .record import ChatCall, PromptHookResult, assistant_output, content_text, replace_content_text

COMPONENT = "capture.langchain"
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}
_ROUTED_CACHE_MAX = 64
# request kwargs that make the answer schema-constrained JSON (only JSON hooks apply to it)
STRUCTURED_KWARGS = ("response_format", "ls_structured_output_format")


def message_dict(message: BaseMessage) -> Dict[str, Any]:
    """An OpenAI-style ``{"role", "content"}`` dict of a LangChain message (for hook context)."""
    return {"role": _ROLES.get(message.type, message.type), "content": message.content}


class MessageSnapshot:
    """The messages a model call sent, kept by reference on the caller's thread (LangChain
    messages are not mutated in place) and dumped to OpenAI's chat format, tool calls and
    tool messages included, by the worker."""

    __slots__ = ("messages",)

    def __init__(self, messages: Sequence[BaseMessage]) -> None:
        self.messages = tuple(messages)

    def model_dump(self) -> List[Dict[str, Any]]:
        return convert_to_openai_messages(list(self.messages))


class ToolsSnapshot:
    """The tools offered to a model call, dumped to OpenAI's tool format by the worker."""

    __slots__ = ("tools",)

    def __init__(self, tools: Sequence[Any]) -> None:
        self.tools = tuple(tools)

    def model_dump(self) -> List[Any]:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return [convert_to_openai_tool(tool) for tool in self.tools]


def openai_tool_calls(message: AIMessage) -> List[Dict[str, Any]]:
    """``message.tool_calls`` in OpenAI's wire format."""
    return [
        {
            "id": call.get("id"),
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call.get("args") or {}, ensure_ascii=False)},
        }
        for call in message.tool_calls
    ]


def model_name_of(model: Any) -> Optional[str]:
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class ModelRouter:
    """Copies of a chat model asking for a routed model name, made once per (model, name)."""

    def __init__(self) -> None:
        self._copies: Dict[Tuple[int, str], Tuple[Any, Any]] = {}

    def routed(self, model: Any, name: str) -> Any:
        key = (id(model), name)
        hit = self._copies.get(key)
        if hit is not None and hit[0] is model:
            return hit[1]
        attr = "model_name" if isinstance(getattr(model, "model_name", None), str) else "model"
        copy = model.model_copy(update={attr: name})
        if len(self._copies) >= _ROUTED_CACHE_MAX:
            self._copies.clear()
        self._copies[key] = (model, copy)
        return copy


def last_human_index(messages: Sequence[BaseMessage]) -> Optional[int]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].type == "human":
            return i
    return None


def begin_call(
    messages: Sequence[BaseMessage],
    system: Optional[BaseMessage],
    model_name: Optional[str],
    function_name: Optional[str],
    default_name: str,
    params: Dict[str, Any],
    structured: bool = False,
) -> Tuple[Optional[ChatCall], Sequence[BaseMessage], Optional[str]]:
    """Start one model call: ``(call, messages to send, routed model name)``. ``call`` is
    None when capture is suppressed; prompt hooks touch only the last human message's text.
    ``structured``: the answer is schema-constrained JSON (only JSON hooks apply to it)."""
    if capture_suppressed():
        return None, messages, model_name
    call: Optional[ChatCall] = None
    routed = model_name
    with fail_open(COMPONENT):
        pair = get_runtime().current()
        routed = pair.route(model_name) if model_name is not None else None
        name = function_name or current_function_name() or default_name
        sent = [system, *messages] if system is not None else list(messages)
        dicts = [message_dict(m) for m in sent]
        prompt = PromptHookResult(dicts, None, None)
        hooks = pair.hooks
        index = last_human_index(messages) if hooks is not None else None
        text = content_text(messages[index].content) if index is not None else None
        if hooks is not None and index is not None and text is not None:
            hooked = hooks.apply_prompt(
                text, {"function_name": name, "model": routed, "messages": dicts, "user_input": text}
            )
            prompt = PromptHookResult(dicts, text, hooked)
            if prompt.changed:
                target = messages[index]
                messages = list(messages)
                content = replace_content_text(target.content, text, hooked)
                messages[index] = target.model_copy(update={"content": content})
        scope = current_scope()
        parent = current_run_id() or (scope.root_run_id if scope is not None else None)
        call = ChatCall(
            pair,
            name,
            "langchain",
            dicts,
            model_name,
            routed,
            prompt,
            params,
            parent_run_id=parent,
            recorded=MessageSnapshot(sent),
            structured=structured,
        )  # type: ignore[arg-type]
    return call, messages, routed


def answer_text(message: Any) -> Tuple[Optional[str], List[Dict[str, Any]]]:
    """(text, tool calls in OpenAI's format) of a model's message."""
    text = content_text(getattr(message, "content", None))
    calls = openai_tool_calls(message) if isinstance(message, AIMessage) and message.tool_calls else []
    return text, calls


def _submit(
    call: ChatCall,
    message: Any,
    output: Optional[str],
    raw: Optional[str],
    tool_calls: List[Dict[str, Any]],
    streamed: bool,
) -> None:
    metadata = getattr(message, "response_metadata", None) or {}
    extra: Dict[str, Any] = {"stream": True} if streamed else {}
    if metadata.get("finish_reason"):
        extra["finish_reason"] = metadata["finish_reason"]
    recorded = assistant_output(output, tool_calls, extra)
    call.finish(
        output=recorded,
        raw_output=recorded if tool_calls else raw,
        model_used=metadata.get("model_name"),
        usage=getattr(message, "usage_metadata", None),
        extra=extra,
    )


def fail_call(call: Optional[ChatCall], error: BaseException) -> None:
    if call is not None:
        with fail_open(COMPONENT):
            call.finish(output=None, error=error)


def finish_call(call: Optional[ChatCall], message: Any) -> Any:
    """Record the call; returns ``message`` with its text hooked (the same object if
    unchanged). Messages with tool calls are never hooked."""
    if call is None:
        return message
    with fail_open(COMPONENT):
        raw, tool_calls = answer_text(message)
        output = call.apply_output(raw) if raw is not None and not tool_calls else raw
        _submit(call, message, output, raw, tool_calls, False)
        if output is not None and raw is not None and output != raw:
            message = message.model_copy(update={"content": replace_content_text(message.content, raw, output)})
    return message


def finish_stream(call: Optional[ChatCall], total: Any, received: Optional[str]) -> None:
    """Record a streamed call: ``total`` is the sum of the model's chunks, ``received`` the
    text the user got (None: chunks passed through unhooked, ``stream_hooks="record_only"``,
    and the record keeps the hooked text as before)."""
    if call is None:
        return
    with fail_open(COMPONENT):
        raw, tool_calls = answer_text(total)
        raw = raw or ""
        if received is None:
            received = call.apply_output(raw) if not tool_calls else raw
        _submit(call, total, received, raw, tool_calls, True)
