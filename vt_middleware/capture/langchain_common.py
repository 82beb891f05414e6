"""What LangChain capture paths share: one model call of a chat model (routing the model
instance, the prompt hook on the last human message, the output hook on a final text
answer, the record and its run id), with messages, tools and answers read into OpenAI's
format on the worker."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.utils.utils import LC_ID_PREFIX

from ..call_context import capture_suppressed, current_scope, new_run_id, set_last_run_id, tracked_call
from ..health import fail_open
from ..runtime.active import get_runtime
from .record import ChatCall, PromptHookResult, assistant_output, content_text, replace_content_text

COMPONENT = "capture.langchain"
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}
_ROUTED_CACHE_MAX = 64
# request kwargs that make the answer schema-constrained JSON (only JSON hooks apply to it)
STRUCTURED_KWARGS = ("response_format", "ls_structured_output_format")
_NO_PROMPT = PromptHookResult([], None, None)  # read-only: a call without prompt hooks
_NO_DICTS: List[Dict[str, Any]] = []  # read-only: the hook context's messages, without hooks


def message_dict(message: BaseMessage) -> Dict[str, Any]:
    """An OpenAI-style ``{"role", "content"}`` dict of a LangChain message (for hook context)."""
    return {"role": _ROLES.get(message.type, message.type), "content": message.content}


class MessageSnapshot:
    """The messages a model call sent (``system`` first, when given), kept by reference on the
    caller's thread (LangChain messages are not mutated in place) and dumped to OpenAI's chat
    format, tool calls and tool messages included, by the worker."""

    __slots__ = ("messages",)

    def __init__(self, messages: Sequence[BaseMessage], system: Optional[BaseMessage] = None) -> None:
        self.messages = (system, *messages) if system is not None else tuple(messages)

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


_CONTENT = frozenset(("content",))
_set_field = object.__setattr__


def with_content(message: BaseMessage, content: Any) -> Any:
    """``message.model_copy(update={"content": content})``: the same shallow copy, made without
    pydantic's generic steps (a hooked call makes two); model_copy itself for a message with
    private attributes (LangChain's have none)."""
    extra = getattr(message, "__pydantic_extra__", None)
    fields_set = getattr(message, "__pydantic_fields_set__", None)
    if fields_set is None or getattr(message, "__pydantic_private__", None) is not None:
        return message.model_copy(update={"content": content})
    cls = type(message)
    copy = cls.__new__(cls)
    state = message.__dict__.copy()
    state["content"] = content
    _set_field(copy, "__dict__", state)
    _set_field(copy, "__pydantic_extra__", None if extra is None else dict(extra))
    _set_field(copy, "__pydantic_fields_set__", fields_set | _CONTENT)
    _set_field(copy, "__pydantic_private__", None)
    return copy


def last_human_index(messages: Sequence[BaseMessage]) -> Optional[int]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].type == "human":
            return i
    return None


def begin_call(
    messages: Sequence[BaseMessage],
    system: Optional[BaseMessage],
    model: Any,
    router: ModelRouter,
    function_name: Optional[str],
    default_name: str,
    params: Dict[str, Any],
    structured: bool = False,
    run_id: Optional[str] = None,
) -> Tuple[Optional[ChatCall], Sequence[BaseMessage], Any]:
    """Start one model call: ``(call, messages to send, model to call)``; the model is ``model``
    or its copy asking for the routed name. ``call`` is None when capture is suppressed; prompt
    hooks touch only the last human message's text. ``structured``: the answer is
    schema-constrained JSON (only JSON hooks apply to it). ``run_id``: the record's id when
    known (else vt makes one)."""
    if capture_suppressed():
        return None, messages, model
    call: Optional[ChatCall] = None
    asked = messages  # recorded as the caller sent them
    with fail_open(COMPONENT):
        pair = get_runtime().current()
        requested = model_name_of(model)
        routed = pair.routes.get(requested, requested) if requested is not None else None
        if routed != requested:
            model = router.routed(model, routed)  # type: ignore[arg-type]
        tracked = tracked_call()
        name = function_name or (tracked[0] if tracked is not None else default_name)
        hooks = pair.hooks
        prompt, dicts = _NO_PROMPT, _NO_DICTS  # the hook context's messages: only for hooks
        if hooks is not None:
            dicts = [message_dict(m) for m in ((system, *messages) if system is not None else messages)]
            index = last_human_index(messages)
            text = content_text(messages[index].content) if index is not None else None
            if index is not None and text is not None:
                hooked = hooks.apply_prompt(
                    text, {"function_name": name, "model": routed, "messages": dicts, "user_input": text}
                )
                prompt = PromptHookResult(dicts, text, hooked)
                if hooked != text:
                    target = messages[index]
                    messages = list(messages)
                    messages[index] = with_content(target, replace_content_text(target.content, text, hooked))
        if tracked is not None:
            parent: Optional[str] = tracked[1]
        else:
            scope = current_scope()
            parent = scope.root_run_id if scope is not None else None
        call = ChatCall(
            pair,
            name,
            "langchain",
            dicts,
            requested,
            routed,
            prompt,
            params,
            parent_run_id=parent,
            recorded=MessageSnapshot(asked, system),  # type: ignore[arg-type]  # dumped by the worker
            run_id=run_id or new_run_id(),
            structured=structured,
        )
    return call, messages, model


def answer_text(message: Any) -> Tuple[Optional[str], List[Dict[str, Any]]]:
    """(text, tool calls in OpenAI's format) of a model's message."""
    text = content_text(getattr(message, "content", None))
    calls = openai_tool_calls(message) if isinstance(message, AIMessage) and message.tool_calls else []
    return text, calls


def read_message(message: Any) -> Tuple[Optional[str], Optional[str], Optional[str], Any, Dict[str, Any]]:
    """``(output, raw_output, model_used, usage, extra)`` of a model's answer (worker thread)."""
    metadata = getattr(message, "response_metadata", None) or {}
    extra: Dict[str, Any] = {}
    if metadata.get("finish_reason"):
        extra["finish_reason"] = metadata["finish_reason"]
    text, tool_calls = answer_text(message)
    recorded = assistant_output(text, tool_calls, extra)
    raw = recorded if tool_calls else text
    return recorded, raw, metadata.get("model_name"), getattr(message, "usage_metadata", None), extra


def fail_call(call: Optional[ChatCall], error: BaseException) -> None:
    if call is not None:
        with fail_open(COMPONENT):
            call.finish(output=None, error=error)


def finish_call(call: Optional[ChatCall], message: Any, run_id_from_message: bool = False) -> Any:
    """Record the call; returns ``message`` with its text hooked (the same object if
    unchanged). Messages with tool calls are never hooked. The worker reads the message for
    the record (LangChain messages are not mutated in place), so the caller's thread only
    hooks. ``run_id_from_message``: the record takes the LangChain run id in the message's
    id (:func:`langchain_run_id`), settled here, before the caller can read ``last_run_id``."""
    if call is None:
        return message
    with fail_open(COMPONENT):
        if run_id_from_message:
            run_id = langchain_run_id(message)
            if run_id is not None:
                call.run_id = run_id
                set_last_run_id(run_id)
        raw = None
        if call.pair.hooks is not None and not getattr(message, "tool_calls", None):
            raw = content_text(message.content)
        if raw is None:
            call.finish(response=message, read=read_message)
            return message
        output = call.apply_output(raw)
        call.finish(output=output, raw_output=raw, response=message, read=read_message)
        if output != raw:
            message = with_content(message, replace_content_text(message.content, raw, output))
    return message


def finish_stream(call: Optional[ChatCall], total: Any, received: Optional[str]) -> None:
    """Record a streamed call: ``total`` is the sum of the model's chunks, ``received`` the
    text the user got (None: chunks passed through unhooked, ``stream_hooks="record_only"``,
    and the record keeps the hooked text)."""
    if call is None:
        return
    with fail_open(COMPONENT):
        if getattr(total, "tool_calls", None):  # never hooked: the worker reads it all
            call.finish(response=total, read=read_message, extra={"stream": True})
            return
        raw = content_text(total.content) or ""
        if received is None:
            received = call.apply_output(raw)
        call.finish(output=received, raw_output=raw, response=total, read=read_message, extra={"stream": True})


# -- run ids ---------------------------------------------------------------------------------
_LC_RUN = LC_ID_PREFIX + "-"  # LangChain's id of an answer the provider gave none: "lc_run--<run id>[-<n>]"
_RUN_ID_END = len(_LC_RUN) + 36  # a uuid's text


class _RecentRunIds:
    """Run ids given to records lately (two rotating sets): a message id seen again (one
    message object returned twice, an answer replayed by a middleware) must not lend its run
    id to a second record, which would replace the first in the store."""

    __slots__ = ("current", "previous", "size")

    def __init__(self, size: int = 4096) -> None:
        self.current: Set[str] = set()
        self.previous: Set[str] = set()
        self.size = size

    def claim(self, run_id: str) -> bool:
        """True when ``run_id`` is new (now taken); False when it was taken lately."""
        current = self.current
        if run_id in current or run_id in self.previous:
            current.add(run_id)  # kept in view while it recurs
            return False
        current.add(run_id)
        if len(current) >= self.size:
            self.previous, self.current = current, set()
        return True


claim_run_id = _RecentRunIds().claim


def langchain_run_id(message: Any) -> Optional[str]:
    """The LangChain run id of the model call that made ``message``, read from the id that
    LangChain gives an answer whose provider set none (``lc_run--<run id>``; ChatOpenAI's chat
    completions are such). None, and the record keeps vt's own run id, when the provider set
    its own id (e.g. ``msg_...``), for an answer from LangChain's cache (its id is an earlier
    call's) and for a run id given to a record lately (:class:`_RecentRunIds`)."""
    mid = getattr(message, "id", None)
    if type(mid) is not str or not mid.startswith(_LC_RUN):
        return None
    if len(mid) < _RUN_ID_END or (len(mid) > _RUN_ID_END and mid[_RUN_ID_END] != "-"):
        return None
    usage = getattr(message, "usage_metadata", None)
    if usage and "total_cost" in usage:  # how LangChain marks a cache hit (its cost zeroed)
        return None
    run_id = mid[len(_LC_RUN) : _RUN_ID_END]
    return run_id if claim_run_id(run_id) else None
