"""``vt.middleware(chat_model)``: a ``BaseChatModel`` around a chat model that routes its
model, applies the prompt hook to the last human message and the output hook to final
text answers, and captures each call under the LangChain run id of the wrapper's run (vt
makes one when the call runs outside LangChain's callbacks, or the id is already recorded,
e.g. by a ``vt.CallbackHandler`` on the same run). Being a chat model, it works with
``bind_tools``, ``with_structured_output``, ``create_agent``, ``stream``/``astream`` and
``batch``."""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Tuple

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableParallel, RunnableSequence
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from pydantic import ConfigDict, PrivateAttr

from ..config import get_config
from ..errors import ConfigError
from ..health import fail_open
from . import langchain_callbacks  # noqa: F401 - installs the run-scope tracker (vt.last_run_id)
from .langchain_common import (
    COMPONENT,
    STRUCTURED_KWARGS,
    ModelRouter,
    begin_call,
    claim_run_id,
    fail_call,
    finish_call,
    finish_stream,
    model_name_of,
    with_content,
)
from .record import ChatCall, content_text


class VTChatModel(BaseChatModel):
    """A chat model that calls ``inner`` through vt_middleware (routing, hooks, capture)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    function_name: Optional[str] = None
    _router: ModelRouter = PrivateAttr(default_factory=ModelRouter)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def _llm_type(self) -> str:
        return "vt-" + self.inner._llm_type

    @property
    def _identifying_params(self) -> Dict[str, Any]:
        return {**self.inner._identifying_params, "vt_function_name": self.function_name}

    @property
    def model_name(self) -> Optional[str]:
        return model_name_of(self.inner)

    # one call --------------------------------------------------------------------------
    def _begin(
        self, messages: List[BaseMessage], kwargs: Dict[str, Any], run_manager: Any
    ) -> Tuple[Optional[ChatCall], List[BaseMessage], BaseChatModel]:
        inner = self.inner
        structured = any(k in kwargs for k in STRUCTURED_KWARGS)
        run_id = str(run_manager.run_id) if run_manager is not None else None
        call, sent, model = begin_call(
            messages,
            None,
            inner,
            self._router,
            self.function_name,
            "langchain." + type(inner).__name__,
            {},
            structured,
            run_id if run_id is not None and claim_run_id(run_id) else None,
        )
        return call, list(sent), model

    @staticmethod
    def _result(call: Optional[ChatCall], result: ChatResult) -> ChatResult:
        if call is None or not result.generations:
            return result
        first = result.generations[0]
        message = finish_call(call, first.message)
        if message is first.message:
            return result
        hooked = ChatGeneration(message=message, generation_info=first.generation_info)
        return ChatResult(generations=[hooked, *result.generations[1:]], llm_output=result.llm_output)

    def _generate(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[CallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, sent, model = self._begin(messages, kwargs, run_manager)
        try:
            result = model._generate(sent, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            fail_call(call, exc)
            raise
        return self._result(call, result)

    async def _agenerate(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, sent, model = self._begin(messages, kwargs, run_manager)
        try:
            result = await model._agenerate(sent, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            fail_call(call, exc)
            raise
        return self._result(call, result)

    def _stream(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[CallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call, sent, model = self._begin(messages, kwargs, run_manager)
        hook = _StreamHook(call)
        try:
            for chunk in model._stream(sent, stop=stop, run_manager=run_manager, **kwargs):
                yield hook.add(chunk)
        except Exception as exc:
            hook.failed(exc)
            raise
        finally:  # also when the consumer stops early (GeneratorExit)
            tail = hook.finish()
        if tail:
            yield ChatGenerationChunk(message=AIMessageChunk(content=tail))

    async def _astream(
        self,
        messages: List[BaseMessage],
        stop: Optional[List[str]] = None,
        run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call, sent, model = self._begin(messages, kwargs, run_manager)
        hook = _StreamHook(call)
        try:
            async for chunk in model._astream(sent, stop=stop, run_manager=run_manager, **kwargs):
                yield hook.add(chunk)
        except Exception as exc:
            hook.failed(exc)
            raise
        finally:
            tail = hook.finish()
        if tail:
            yield ChatGenerationChunk(message=AIMessageChunk(content=tail))

    # tools and structured output: the inner model's own, re-aimed at this wrapper ---------
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:  # type: ignore[override]
        return self._reaim(self.inner.bind_tools(tools, **kwargs))

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable[Any, Any]:
        try:
            structured = self.inner.with_structured_output(schema, **kwargs)
        except NotImplementedError:
            return super().with_structured_output(schema, **kwargs)
        return self._reaim(structured)

    def _reaim(self, runnable: Runnable[Any, Any]) -> Runnable[Any, Any]:
        """``runnable`` with every use of ``inner`` replaced by this wrapper (same kwargs)."""
        found: List[bool] = []
        reaimed = _replace(runnable, self.inner, self, found)
        if not found:
            raise ConfigError(
                f"cannot route {type(runnable).__name__} from {type(self.inner).__name__} "
                "through vt.middleware: the inner model is not part of it"
            )
        return reaimed


def _replace(node: Any, old: Any, new: Any, found: List[bool]) -> Any:
    if node is old:
        found.append(True)
        return new
    if isinstance(node, RunnableBinding):
        bound = _replace(node.bound, old, new, found)
        return node if bound is node.bound else node.model_copy(update={"bound": bound})
    if isinstance(node, RunnableSequence):
        steps = [_replace(step, old, new, found) for step in node.steps]
        return node.model_copy(update={"first": steps[0], "middle": steps[1:-1], "last": steps[-1]})
    if isinstance(node, RunnableParallel):
        return node.model_copy(update={"steps__": {k: _replace(v, old, new, found) for k, v in node.steps__.items()}})
    if isinstance(node, RunnableWithFallbacks):
        return node.model_copy(
            update={
                "runnable": _replace(node.runnable, old, new, found),
                "fallbacks": [_replace(f, old, new, found) for f in node.fallbacks],
            }
        )
    return node


class _StreamHook:
    """One streamed call: chunks summed for the record and, with ``stream_hooks="apply"``,
    their text sent through the output hook's stream processor (bounded look-ahead, or held
    to the end), so the user receives the hooked text. A message that turns out to call
    tools gets its held-back text released unhooked."""

    __slots__ = ("call", "done", "proc", "received", "tools", "total")

    def __init__(self, call: Optional[ChatCall]) -> None:
        self.call, self.done, self.tools = call, call is None, False
        self.total: Any = None
        self.proc: Any = None
        self.received: List[str] = []
        if call is not None and get_config().stream_hooks == "apply":
            with fail_open(COMPONENT):
                self.proc = call.output_stream()

    def add(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        if self.done:
            return chunk
        message = chunk.message
        self.total = message if self.total is None else self.total + message
        if getattr(message, "tool_call_chunks", None):
            self.tools = True
        text = message.content
        if self.proc is None or type(text) is not str:
            return chunk
        out = text
        with fail_open(COMPONENT):
            out = self.proc.feed(text)
        self.received.append(out)
        if out == text:
            return chunk
        return ChatGenerationChunk(message=with_content(message, out), generation_info=chunk.generation_info)

    def failed(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            fail_call(self.call, error)

    def finish(self) -> str:
        """Record the call; returns the text still to send (the processor's end)."""
        if self.done:
            return ""
        self.done = True
        total = self.total if self.total is not None else AIMessageChunk(content="")
        tail = ""
        if self.proc is not None:
            with fail_open(COMPONENT):
                if self.tools:  # never hooked: release what the processor held back
                    raw, sent = content_text(total.content) or "", "".join(self.received)
                    tail = raw[len(sent) :] if raw.startswith(sent) else ""
                else:
                    tail = self.proc.finish()
        finish_stream(self.call, total, "".join(self.received) + tail if self.proc is not None else None)
        return tail


def middleware(chat_model: Any, function_name: Optional[str] = None) -> VTChatModel:
    """A chat model around ``chat_model`` that applies the active hooks and routing and
    captures each call."""
    if not isinstance(chat_model, BaseChatModel):
        raise ConfigError(
            "vt.middleware expects a LangChain chat model (a BaseChatModel Runnable such as "
            f"ChatOpenAI), got {type(chat_model).__name__}"
        )
    return VTChatModel(inner=chat_model, function_name=function_name)
