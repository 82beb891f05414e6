"""``vt.middleware(chat_model)``: a ``BaseChatModel`` around a chat model that routes its
model, applies the prompt hook to the last human message and the output hook to final
text answers, and captures each call. Being a chat model, it works with ``bind_tools``,
``with_structured_output``, ``create_agent``, ``stream``/``astream`` and ``batch``."""
from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Tuple

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableParallel, RunnableSequence
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from pydantic import ConfigDict, PrivateAttr

from ..errors import ConfigError
from . import langchain_callbacks  # noqa: F401 - installs the run-scope tracker (vt.last_run_id)
from .langchain_common import (
    STRUCTURED_KWARGS,
    ModelRouter,
    begin_call,
    fail_call,
    finish_call,
    finish_stream,
    model_name_of,
)
from .record import ChatCall


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
    def _begin(self, messages: List[BaseMessage],
               kwargs: Dict[str, Any]) -> Tuple[Optional[ChatCall], List[BaseMessage], BaseChatModel, bool]:
        inner = self.inner
        requested = model_name_of(inner)
        call, sent, routed = begin_call(messages, None, requested, self.function_name,
                                        "langchain." + type(inner).__name__, {})
        model = inner if routed is None or routed == requested else self._router.routed(inner, routed)
        return call, list(sent), model, any(k in kwargs for k in STRUCTURED_KWARGS)

    @staticmethod
    def _result(call: Optional[ChatCall], result: ChatResult, structured: bool) -> ChatResult:
        if call is None or not result.generations:
            return result
        first = result.generations[0]
        message = finish_call(call, first.message, structured)
        if message is first.message:
            return result
        hooked = ChatGeneration(message=message, generation_info=first.generation_info)
        return ChatResult(generations=[hooked, *result.generations[1:]], llm_output=result.llm_output)

    def _generate(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                  run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> ChatResult:
        call, sent, model, structured = self._begin(messages, kwargs)
        try:
            result = model._generate(sent, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            fail_call(call, exc)
            raise
        return self._result(call, result, structured)

    async def _agenerate(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                         run_manager: Optional[AsyncCallbackManagerForLLMRun] = None, **kwargs: Any) -> ChatResult:
        call, sent, model, structured = self._begin(messages, kwargs)
        try:
            result = await model._agenerate(sent, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            fail_call(call, exc)
            raise
        return self._result(call, result, structured)

    def _stream(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        call, sent, model, structured = self._begin(messages, kwargs)
        total = _Total(call)
        try:
            for chunk in model._stream(sent, stop=stop, run_manager=run_manager, **kwargs):
                yield total.add(chunk)
        except Exception as exc:
            total.failed(exc)
            raise
        finally:  # also when the consumer stops early (GeneratorExit)
            suffix = total.finish(structured)
        if suffix:
            yield ChatGenerationChunk(message=AIMessageChunk(content=suffix))

    async def _astream(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                       run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        call, sent, model, structured = self._begin(messages, kwargs)
        total = _Total(call)
        try:
            async for chunk in model._astream(sent, stop=stop, run_manager=run_manager, **kwargs):
                yield total.add(chunk)
        except Exception as exc:
            total.failed(exc)
            raise
        finally:
            suffix = total.finish(structured)
        if suffix:
            yield ChatGenerationChunk(message=AIMessageChunk(content=suffix))

    # tools and structured output: the inner model's own, re-aimed at this wrapper ---------
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:
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
            raise ConfigError(f"cannot route {type(runnable).__name__} from {type(self.inner).__name__} "
                              "through vt.middleware: the inner model is not part of it")
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
        return node.model_copy(update={"runnable": _replace(node.runnable, old, new, found),
                                       "fallbacks": [_replace(f, old, new, found) for f in node.fallbacks]})
    return node


class _Total:
    """Chunks of one streamed call summed; recorded once when the stream ends or fails."""

    __slots__ = ("call", "done", "total")

    def __init__(self, call: Optional[ChatCall]) -> None:
        self.call, self.total, self.done = call, None, call is None

    def add(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        if not self.done:
            self.total = chunk.message if self.total is None else self.total + chunk.message
        return chunk

    def failed(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            fail_call(self.call, error)

    def finish(self, structured: bool) -> str:
        if self.done:
            return ""
        self.done = True
        return finish_stream(self.call, self.total if self.total is not None else AIMessageChunk(content=""),
                             structured)


def middleware(chat_model: Any, function_name: Optional[str] = None) -> VTChatModel:
    """A chat model around ``chat_model`` that applies the active hooks and routing and
    captures each call."""
    if not isinstance(chat_model, BaseChatModel):
        raise ConfigError("vt.middleware expects a LangChain chat model (a BaseChatModel Runnable such as "
                          f"ChatOpenAI), got {type(chat_model).__name__}")
    return VTChatModel(inner=chat_model, function_name=function_name)
