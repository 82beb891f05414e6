"""LangChain integration: a log-only ``CallbackHandler`` and ``middleware(chat_model)``,
a Runnable that also applies hooks and routing. Real langchain-core classes."""
from __future__ import annotations

import threading
from time import perf_counter
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, BaseMessageChunk, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict

from ..config import get_config
from ..health import fail_open
from ..runtime.active import get_runtime
from ..call_context import capture_suppressed, current_function_name, current_run_id, new_run_id
from .record import ChatCall, PromptHookResult, RawCall, to_jsonable
from .worker import submit

_COMPONENT = "capture.langchain"
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function"}


def message_dict(message: BaseMessage) -> Dict[str, Any]:
    """An OpenAI-style ``{"role", "content"}`` dict of a LangChain message."""
    return {"role": _ROLES.get(message.type, message.type), "content": message.content}


def _model_name(serialized: Optional[Dict[str, Any]], kwargs: Dict[str, Any]) -> Optional[str]:
    params = kwargs.get("invocation_params") or {}
    for key in ("model", "model_name"):
        if params.get(key):
            return str(params[key])
    ser_kwargs = (serialized or {}).get("kwargs") or {}
    return ser_kwargs.get("model_name") or ser_kwargs.get("model")


class _Run:
    __slots__ = ("name", "inputs", "model", "parent", "started", "tokens", "tags")

    def __init__(self, name: str, inputs: Dict[str, Any], model: Optional[str], parent: Optional[UUID]) -> None:
        self.name, self.inputs, self.model, self.parent = name, inputs, model, parent
        self.started = perf_counter()
        self.tokens: List[str] = []


class _RunLog:
    """Runs in flight keyed by run_id; one lock, so one handler can serve many requests."""

    def __init__(self, function_name: Optional[str]) -> None:
        self.function_name = function_name
        self._runs: Dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    def start(self, run_id: UUID, parent: Optional[UUID], serialized: Optional[Dict[str, Any]],
              inputs: Dict[str, Any], kwargs: Dict[str, Any]) -> None:
        if capture_suppressed() or not get_config().capture_enabled:
            return
        metadata = kwargs.get("metadata") or {}
        name = (self.function_name or metadata.get("vt_function_name") or current_function_name()
                or "langchain." + str((serialized or {}).get("name") or "chat_model"))
        run = _Run(name, inputs, _model_name(serialized, kwargs), parent)
        with self._lock:
            self._runs[run_id] = run

    def token(self, run_id: UUID, token: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None and token:
            run.tokens.append(token)

    def end(self, run_id: UUID, response: Any = None, error: Optional[BaseException] = None) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        output, usage, model_used = None, None, None
        if response is not None:
            generations = response.generations[0] if response.generations else []
            first = generations[0] if generations else None
            if first is not None:
                output = first.text
                message = getattr(first, "message", None)
                usage = getattr(message, "usage_metadata", None)
                model_used = (getattr(message, "response_metadata", None) or {}).get("model_name")
            llm_output = response.llm_output or {}
            usage = usage or llm_output.get("token_usage")
            model_used = model_used or llm_output.get("model_name")
        elif run.tokens:
            output = "".join(run.tokens)
        submit(RawCall(output, usage, {
            "function_name": run.name, "inputs": to_jsonable(run.inputs, get_config().max_field_chars),
            "kind": "langchain", "model_requested": run.model, "model_used": model_used or run.model,
            "params": {"streamed_tokens": len(run.tokens)} if run.tokens else {},
            "latency_ms": (perf_counter() - run.started) * 1000.0,
            "hook_version": get_runtime().current().hook_version, "run_id": new_run_id(),
            "parent_run_id": str(run.parent) if run.parent else current_run_id(),
        }, error))

    def pending(self) -> int:
        with self._lock:
            return len(self._runs)


class CallbackHandler(BaseCallbackHandler):
    """Log-only: records chat/LLM runs (by run_id; nested runs apart). Works in sync and
    async LangChain code (it runs inline; every method is short and thread-safe)."""

    run_inline = True
    raise_error = False

    def __init__(self, function_name: Optional[str] = None) -> None:
        super().__init__()
        self._log = _RunLog(function_name)

    def on_chat_model_start(self, serialized: Dict[str, Any], messages: List[List[BaseMessage]], *,
                            run_id: UUID, parent_run_id: Optional[UUID] = None, **kwargs: Any) -> None:
        with fail_open(_COMPONENT):
            batch = [[message_dict(m) for m in conversation] for conversation in messages]
            inputs = {"messages": batch[0]} if len(batch) == 1 else {"messages": batch[0], "batch": batch}
            self._log.start(run_id, parent_run_id, serialized, inputs, kwargs)

    def on_llm_start(self, serialized: Dict[str, Any], prompts: List[str], *, run_id: UUID,
                     parent_run_id: Optional[UUID] = None, **kwargs: Any) -> None:
        with fail_open(_COMPONENT):
            inputs = {"prompt": prompts[0]} if len(prompts) == 1 else {"prompt": prompts[0], "batch": prompts}
            self._log.start(run_id, parent_run_id, serialized, inputs, kwargs)

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(_COMPONENT):
            self._log.token(run_id, token)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(_COMPONENT):
            self._log.end(run_id, response=response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(_COMPONENT):
            self._log.end(run_id, error=error)


class AsyncVTCallbackHandler(AsyncCallbackHandler):
    """The async flavour of :class:`CallbackHandler` (same records)."""

    run_inline = True
    raise_error = False

    def __init__(self, function_name: Optional[str] = None) -> None:
        super().__init__()
        self._sync = CallbackHandler(function_name)

    async def on_chat_model_start(self, serialized: Dict[str, Any], messages: List[List[BaseMessage]],
                                  **kwargs: Any) -> None:
        self._sync.on_chat_model_start(serialized, messages, **kwargs)

    async def on_llm_start(self, serialized: Dict[str, Any], prompts: List[str], **kwargs: Any) -> None:
        self._sync.on_llm_start(serialized, prompts, **kwargs)

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self._sync.on_llm_new_token(token, **kwargs)

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self._sync.on_llm_end(response, **kwargs)

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self._sync.on_llm_error(error, **kwargs)


# -- middleware ------------------------------------------------------------------------
def _to_messages(value: Any) -> List[BaseMessage]:
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, BaseMessage):
        return [value]
    return list(convert_to_messages(value))


class VTMiddleware(RunnableSerializable[Any, BaseMessage]):
    """Wraps a chat model: routes its model, hooks the last human message and the
    answer, and captures the call. ``prompt | vt.middleware(chat_model) | parser``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat_model: Any
    function_name: Optional[str] = None

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    # preparing a call ------------------------------------------------------------
    def _begin(self, value: Any) -> "tuple[Optional[ChatCall], List[BaseMessage], Runnable]":
        messages = _to_messages(value)
        if capture_suppressed():  # capture_enabled=False still routes and hooks; submit drops the record
            return None, messages, self.chat_model
        call: Optional[ChatCall] = None
        model: Runnable = self.chat_model
        with fail_open(_COMPONENT):
            pair = get_runtime().current()
            requested = getattr(self.chat_model, "model_name", None) or getattr(self.chat_model, "model", None)
            routed = pair.route(requested)
            name = self.function_name or current_function_name() or "langchain." + type(self.chat_model).__name__
            dicts = [message_dict(m) for m in messages]
            hooked_messages, prompt = messages, PromptHookResult(dicts, None, None)
            human = [i for i, m in enumerate(messages) if m.type == "human" and isinstance(m.content, str)]
            if human and pair.hooks is not None:
                idx = human[-1]
                text = messages[idx].content
                hooked = pair.hooks.apply_prompt(text, {"function_name": name, "model": routed, "messages": dicts})
                prompt = PromptHookResult(dicts, text, hooked)
                if hooked != text:
                    hooked_messages = list(messages)
                    hooked_messages[idx] = messages[idx].model_copy(update={"content": hooked})
            call = ChatCall(pair, name, "langchain", dicts, requested, routed, prompt, {},
                            parent_run_id=current_run_id())
            if routed != requested:
                model = self.chat_model.bind(model=routed)
            messages = hooked_messages
        return call, messages, model

    @staticmethod
    def _finish(call: Optional[ChatCall], message: Any, error: Optional[BaseException] = None,
                raw_text: Optional[str] = None) -> Any:
        if call is None:
            return message
        with fail_open(_COMPONENT):
            if error is not None:
                call.finish(output=None, error=error)
                return message
            raw = raw_text if raw_text is not None else (message.content if isinstance(message.content, str) else None)
            output = call.apply_output(raw) if raw is not None else None
            metadata = getattr(message, "response_metadata", None) or {}
            usage = getattr(message, "usage_metadata", None)
            call.finish(output=output, raw_output=raw, model_used=metadata.get("model_name"), usage=usage,
                        extra={"finish_reason": metadata.get("finish_reason"), "stream": raw_text is not None})
            if raw_text is None and output is not None and output != raw:
                message = message.model_copy(update={"content": output})
        return message

    # Runnable API ---------------------------------------------------------------------
    def invoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> BaseMessage:
        call, messages, model = self._begin(input)
        with _Recording(call):
            message = model.invoke(messages, config, **kwargs)
        return self._finish(call, message)

    async def ainvoke(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> BaseMessage:
        call, messages, model = self._begin(input)
        with _Recording(call):
            message = await model.ainvoke(messages, config, **kwargs)
        return self._finish(call, message)

    def stream(self, input: Any, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Iterator[BaseMessageChunk]:
        call, messages, model = self._begin(input)
        with _Recording(call, streaming=True) as recording:
            for chunk in model.stream(messages, config, **kwargs):
                yield recording.add(chunk)

    async def astream(self, input: Any, config: Optional[RunnableConfig] = None,
                      **kwargs: Any) -> AsyncIterator[BaseMessageChunk]:
        call, messages, model = self._begin(input)
        with _Recording(call, streaming=True) as recording:
            async for chunk in model.astream(messages, config, **kwargs):
                yield recording.add(chunk)


class _Recording:
    """A ``with`` block around a middleware call's model call: an error leaving it is
    recorded; for streams, chunks are summed and the total is recorded when the stream
    ends or the consumer closes it early."""

    __slots__ = ("call", "streaming", "total")

    def __init__(self, call: Optional[ChatCall], streaming: bool = False) -> None:
        self.call, self.streaming, self.total = call, streaming, None

    def add(self, chunk: Any) -> Any:
        self.total = chunk if self.total is None else self.total + chunk
        return chunk

    def __enter__(self) -> "_Recording":
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        call = self.call
        if call is None or call.finished:
            return False
        if isinstance(exc, Exception):
            VTMiddleware._finish(call, None, exc)
        elif self.streaming:  # ended, or closed early by the consumer (GeneratorExit)
            VTMiddleware._finish(call, self.total or AIMessage(content=""), raw_text=_text(self.total))
        return False


def _text(message: Any) -> str:
    content = getattr(message, "content", "") if message is not None else ""
    return content if isinstance(content, str) else str(content)


def middleware(chat_model: Any, function_name: Optional[str] = None) -> VTMiddleware:
    """A Runnable around ``chat_model`` that applies the active hooks and routing and
    captures each call."""
    from ..errors import ConfigError

    if not isinstance(chat_model, Runnable):
        raise ConfigError(f"vt.middleware expects a LangChain chat model (a Runnable), got {type(chat_model).__name__}")
    return VTMiddleware(chat_model=chat_model, function_name=function_name)

