"""``vt.wrap(client)``: a drop-in proxy for ``openai.OpenAI`` / ``AsyncOpenAI``.

Only ``chat.completions.create`` is intercepted (routing, prompt/output hooks, capture);
every other attribute is the client's own. Provider errors are re-raised unchanged and
recorded as ERROR rows; our own failures never reach the call (fail open).
"""
from __future__ import annotations

from contextlib import contextmanager
from time import perf_counter_ns
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..config import get_config
from ..errors import ConfigError
from ..health import fail_open, record_internal_error
from ..runtime.active import get_runtime
from ..call_context import capture_suppressed, tracked_call
from .record import (LEAF_TYPES, STR_ONLY, ChatCall, PromptHookResult, apply_prompt_hook, output_text,
                     to_jsonable)

DEFAULT_FUNCTION = "openai.chat.completions"
_COMPONENT = "capture.openai"
_PARAM_KEYS = frozenset(("temperature", "max_tokens", "max_completion_tokens", "top_p", "n", "seed", "stop",
                         "stream", "response_format", "tools", "tool_choice"))

# Benchmarks set this to a list to collect the wrapper's own time per call (ns,
# excluding the provider call). None in normal use: one attribute check per call.
overhead_probe: Optional[List[int]] = None
_NO_PROMPT_HOOK = PromptHookResult([], None, None)  # no hooks: nothing changed (shared, read only)


class _Proxy:
    """Attribute access falls through to the wrapped object."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_vt_target", target)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_vt_target"), name)

    def __dir__(self) -> List[str]:
        return sorted(set(dir(self._vt_target)) | set(super().__dir__()))

    def __repr__(self) -> str:
        return f"vt.wrap({self._vt_target!r})"


class WrappedClient(_Proxy):
    """What ``vt.wrap`` returns: the client, with chat completions captured."""

    def __init__(self, client: Any, function_name: Optional[str], is_async: bool) -> None:
        super().__init__(client)
        completions_cls = _AsyncCompletions if is_async else _SyncCompletions
        completions = completions_cls(client.chat.completions, function_name)
        object.__setattr__(self, "chat", _ChatProxy(client.chat, completions))
        object.__setattr__(self, "vt_function_name", function_name)

    def with_options(self, **options: Any) -> "WrappedClient":
        return wrap(self._vt_target.with_options(**options), self.vt_function_name)

    def unwrap(self) -> Any:
        """The original client."""
        return self._vt_target


class _ChatProxy(_Proxy):
    def __init__(self, chat: Any, completions: Any) -> None:
        super().__init__(chat)
        object.__setattr__(self, "completions", completions)


def wrap(client: Any, function_name: Optional[str] = None) -> Any:
    """Return ``client`` with ``chat.completions.create`` logged, hooked and routed."""
    if isinstance(client, WrappedClient):
        return client if function_name in (None, client.vt_function_name) else wrap(client.unwrap(), function_name)
    completions = getattr(getattr(client, "chat", None), "completions", None)
    if completions is None or not callable(getattr(completions, "create", None)):
        raise ConfigError(
            f"vt.wrap expects an openai.OpenAI or openai.AsyncOpenAI client, got {type(client).__name__}"
        )
    if function_name is not None and (not isinstance(function_name, str) or not function_name):
        raise ConfigError(f"function_name must be a non-empty string, got {function_name!r}")
    import openai

    return WrappedClient(client, function_name, isinstance(client, openai.AsyncOpenAI))


def _begin(function_name: Optional[str], kwargs: Dict[str, Any], config: Any) -> Tuple[ChatCall, Dict[str, Any]]:
    """Route the model, hook the prompt, start the record; returns the kwargs to send.
    Runs on every call, so helpers are inlined (each call costs microseconds once the
    caches are cold after the HTTP round trip)."""
    pair = get_runtime().current()
    messages = list(kwargs.get("messages") or [])
    model = kwargs.get("model")
    routed = None if model is None else pair.routes.get(model, model)
    tracked = tracked_call()
    name = function_name or (tracked[0] if tracked else DEFAULT_FUNCTION)
    if pair.hooks is None:
        prompt, sent = _NO_PROMPT_HOOK, messages
    else:
        prompt = apply_prompt_hook(pair, messages, {"function_name": name, "model": routed, "messages": messages})
        sent = prompt.messages
    limit = config.max_field_chars
    params = {}  # loops, not comprehensions: no frame each
    for key, value in kwargs.items():
        if key in _PARAM_KEYS:  # mutable values (tools, stop lists) copied to JSON
            params[key] = value if type(value) in LEAF_TYPES else to_jsonable(value, limit)
    recorded = []  # what the record keeps: a copy the caller's later mutation cannot reach
    for message in messages:
        flat = type(message) is dict and {*map(type, message.values())} <= STR_ONLY
        recorded.append(message.copy() if flat else to_jsonable(message, limit))
    call = ChatCall(pair, name, "openai", messages, model, routed, prompt, params,
                    tracked[1] if tracked else None, recorded)
    send = {**kwargs, "messages": sent}  # a list even when the caller passed an iterator
    if "model" in kwargs:
        send["model"] = routed
    return call, send


def _read_completion(result: Any) -> Tuple[Optional[str], Optional[str], Optional[str], Any, Dict[str, Any]]:
    """(output, raw_output, model_used, usage, extra) of a ``ChatCompletion`` (worker thread;
    the SDK's response objects are not mutated after they are returned)."""
    choices = getattr(result, "choices", None) or []
    first = choices[0] if choices else None
    message = getattr(first, "message", None)
    content = getattr(message, "content", None)
    output: Optional[str] = None
    if isinstance(content, str):
        output = content
    elif message is not None:  # tool calls / refusals: recorded as JSON, not hooked
        tool_calls = getattr(message, "tool_calls", None)
        refusal = getattr(message, "refusal", None)
        output = output_text(tool_calls, get_config().max_field_chars) if tool_calls else refusal
    extra = {"finish_reason": getattr(first, "finish_reason", None),
             "response_id": getattr(result, "id", None), "choices": len(choices)}
    return output, output, getattr(result, "model", None), getattr(result, "usage", None), extra


def _finish_completion(call: ChatCall, result: Any) -> Any:
    """Hook each choice's text in place (``call`` has hooks) and submit the record of
    choice 0 (read from the response on the worker thread)."""
    hooked_first: Optional[Tuple[str, str]] = None
    for index, choice in enumerate(getattr(result, "choices", None) or []):
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if isinstance(content, str):
            hooked = call.apply_output(content)
            if hooked != content:
                message.content = hooked
            if index == 0:
                hooked_first = (hooked, content)
    if hooked_first is None:
        call.finish(response=result, read=_read_completion)
    else:
        call.finish(output=hooked_first[0], raw_output=hooked_first[1], response=result, read=_read_completion)
    return result


class _Attempt:
    """One ``create`` call: routed and hooked on entry (:func:`_begin`); :meth:`failed`
    records a provider error; :meth:`settle` hooks and records the result. Inert for
    positional arguments and inside ``suppress_capture()``; with ``capture_enabled=False``
    calls are still routed and hooked, and nothing is recorded (``submit`` drops them)."""

    __slots__ = ("call", "send", "t_enter", "t_call")

    def __init__(self, function_name: Optional[str], args: tuple, kwargs: Dict[str, Any]) -> None:
        self.t_enter = perf_counter_ns()
        self.call: Optional[ChatCall] = None
        self.send = kwargs
        config = get_config()
        if not args and not capture_suppressed():
            try:  # fail open, inline: this runs on every call
                self.call, self.send = _begin(function_name, kwargs, config)
            except Exception as exc:  # noqa: BLE001
                record_internal_error(_COMPONENT, exc)
        self.t_call = perf_counter_ns()

    def failed(self, exc: Exception) -> None:
        """Record the provider's error (the caller re-raises it unchanged)."""
        if self.call is not None:
            with fail_open(_COMPONENT):
                self.call.finish(output=None, error=exc)

    def settle(self, result: Any, stream_cls: type) -> Any:
        t_back = perf_counter_ns()
        call = self.call
        if call is None:
            return result
        try:
            if self.send.get("stream"):
                result = stream_cls(result, call)
            elif call.pair.hooks is None:  # the common case, inline
                call.finish(response=result, read=_read_completion)
            else:
                _finish_completion(call, result)
        except Exception as exc:  # noqa: BLE001
            record_internal_error(_COMPONENT, exc)
        if overhead_probe is not None:
            overhead_probe.append((self.t_call - self.t_enter) + (perf_counter_ns() - t_back))
        return result


class _SyncCompletions(_Proxy):
    def __init__(self, completions: Any, function_name: Optional[str]) -> None:
        super().__init__(completions)
        object.__setattr__(self, "_vt_function", function_name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        attempt = _Attempt(self._vt_function, args, kwargs)
        try:  # not a ``with`` block: two calls fewer on the hot path
            result = self._vt_target.create(*args, **attempt.send)
        except Exception as exc:
            attempt.failed(exc)
            raise
        return attempt.settle(result, RecordingStream)


class _AsyncCompletions(_SyncCompletions):
    async def create(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        attempt = _Attempt(self._vt_function, args, kwargs)
        try:
            result = await self._vt_target.create(*args, **attempt.send)
        except Exception as exc:
            attempt.failed(exc)
            raise
        return attempt.settle(result, AsyncRecordingStream)


class _StreamState:
    """Assembles a streamed answer and submits its record once."""

    def __init__(self, call: ChatCall) -> None:
        self.call = call
        self.parts: List[str] = []
        self.usage: Any = None
        self.model: Optional[str] = None
        self.finish_reason: Optional[str] = None
        self.chunks = 0

    def observe(self, chunk: Any) -> Any:
        """Note ``chunk``'s text and metadata; returns ``chunk``."""
        with fail_open(_COMPONENT):
            self.chunks += 1
            self.model = getattr(chunk, "model", None) or self.model
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                self.usage = usage
            for choice in getattr(chunk, "choices", None) or []:
                if getattr(choice, "index", 0) != 0:
                    continue
                content = getattr(getattr(choice, "delta", None), "content", None)
                if content:
                    self.parts.append(content)
                if getattr(choice, "finish_reason", None):
                    self.finish_reason = choice.finish_reason
        return chunk

    def finish(self, error: Optional[BaseException] = None, closed_early: bool = False) -> None:
        if self.call.finished:
            return
        with fail_open(_COMPONENT):
            raw = "".join(self.parts)
            output = self.call.apply_output(raw) if error is None else raw
            self.call.finish(
                output=output, raw_output=raw, model_used=self.model, usage=self.usage, error=error,
                extra={"finish_reason": self.finish_reason, "chunks": self.chunks,
                       "closed_early": closed_early},
            )

    # ``with state:`` around fetching a chunk: the stream's end or error is recorded
    def __enter__(self) -> "_StreamState":
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        if isinstance(exc, (StopIteration, StopAsyncIteration)):
            self.finish()
        elif isinstance(exc, Exception):
            self.finish(error=exc)
        return False

    @contextmanager
    def closing(self) -> Iterator[None]:
        """Around closing the stream: the record is written however the close goes."""
        try:
            yield
        finally:
            self.finish(closed_early=True)


class _RecordingProxy(_Proxy):
    """A stream proxy with its :class:`_StreamState`; a stream dropped unfinished is
    recorded as closed early."""

    def __init__(self, stream: Any, call: ChatCall) -> None:
        super().__init__(stream)
        object.__setattr__(self, "_vt_state", _StreamState(call))

    def __del__(self) -> None:
        state = self.__dict__.get("_vt_state")
        if state is not None and not state.call.finished:
            state.finish(closed_early=True)


class RecordingStream(_RecordingProxy):
    """An ``openai.Stream`` passed through chunk by chunk; recorded when it ends or closes."""

    def __iter__(self) -> "RecordingStream":
        return self

    def __next__(self) -> Any:
        with self._vt_state:
            chunk = next(self._vt_target)
        return self._vt_state.observe(chunk)

    def close(self) -> None:
        with self._vt_state.closing():
            self._vt_target.close()

    def __enter__(self) -> "RecordingStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncRecordingStream(_RecordingProxy):
    """An ``openai.AsyncStream`` passed through chunk by chunk; recorded when it ends or closes."""

    def __aiter__(self) -> "AsyncRecordingStream":
        return self

    async def __anext__(self) -> Any:
        with self._vt_state:
            chunk = await self._vt_target.__anext__()
        return self._vt_state.observe(chunk)

    async def close(self) -> None:
        with self._vt_state.closing():
            await self._vt_target.close()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> "AsyncRecordingStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
