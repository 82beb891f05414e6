"""``vt.wrap(client)``: a drop-in proxy for ``openai.OpenAI`` / ``AsyncOpenAI``.

Intercepted (routed through the runtime's model routes, prompt/output hooked, captured):
``chat.completions.create`` / ``parse`` / ``stream`` and ``responses.create`` / ``parse`` /
``stream``, plain and streamed, and the same methods under ``with_raw_response`` and
``with_streaming_response``. Schema-constrained JSON (``response_format`` / ``text.format``
json_schema, the ``parse`` APIs) and tool-call messages are not touched by output hooks
(only a hook module's ``intercept_json_output`` sees JSON). Every other attribute is the
client's own; one that produces model output logs one warning naming it. Provider errors
are re-raised unchanged and recorded as ERROR rows; our own failures never reach the call.
"""

from __future__ import annotations

import logging
from time import perf_counter_ns
from typing import Any, Callable, Dict, List, Optional, Tuple

from openai import NotGiven, Omit

from ..call_context import capture_suppressed, tracked_call
from ..config import get_config
from ..errors import ConfigError
from ..health import fail_open, record_internal_error
from ..runtime.active import get_runtime
from . import openai_responses as responses_api
from .openai_streams import AsyncRecordingStream, ChatStreamState, RecordingStream, ResponseStreamState, _Proxy
from .record import (
    LEAF_TYPES,
    STR_ONLY,
    ChatCall,
    PromptHookResult,
    apply_prompt_hook,
    assistant_output,
    to_jsonable,
    tool_call_dicts,
)

DEFAULT_FUNCTION = "openai.chat.completions"
_COMPONENT = "capture.openai"
_RAW_HEADER = "X-Stainless-Raw-Response"  # how the SDK's with_raw_response / with_streaming_response mark a call
_OMITTED = (Omit, NotGiven)
_CHAT_PARAM_KEYS = frozenset(
    (
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "top_p",
        "n",
        "seed",
        "stop",
        "stream",
        "response_format",
        "tools",
        "tool_choice",
    )
)
_JSON_FORMATS = ("json_schema", "json_object")
log = logging.getLogger("vt_middleware.capture.openai")

# Benchmarks set this to a list to collect the wrapper's own time per call (ns,
# excluding the provider call). None in normal use: one attribute check per call.
overhead_probe: Optional[List[int]] = None
_NO_PROMPT_HOOK = PromptHookResult([], None, None)  # no hooks: nothing changed (shared, read only)

# Attributes that produce model output but are not intercepted: named once in a warning.
_UNINTERCEPTED = {
    "completions": "client.completions (legacy text completions)",
    "beta": "client.beta (assistants, threads, beta chat helpers)",
    "realtime": "client.realtime",
    "live": "client.live",
    "audio": "client.audio",
    "images": "client.images",
    "videos": "client.videos",
    "with_raw_response": "client.with_raw_response (use client.chat.completions.with_raw_response)",
    "with_streaming_response": "client.with_streaming_response (use client.chat.completions.with_streaming_response)",
    "compact": "client.responses.compact",
    "connect": "client.responses.connect (websocket)",
}
_warned: set = set()


def _warn_unintercepted(name: str) -> None:
    if name not in _warned:
        _warned.add(name)
        log.warning(
            "vt_middleware: %s is not intercepted: its calls are passed through unrouted, unhooked and not captured",
            _UNINTERCEPTED[name],
        )


class _Api:
    """One API family (chat completions, Responses): how its input becomes messages, how a
    result is hooked and read, which state follows its streams."""

    def __init__(
        self,
        default_name: str,
        param_keys: frozenset,
        messages: Optional[Callable[[Dict[str, Any]], List[Any]]],
        put_messages: Optional[Callable[[Dict[str, Any], Dict[str, Any], List[Any], List[Any]], None]],
        structured: Optional[Callable[[Dict[str, Any]], bool]],
        read: Any,
        hook: Any,
        stream_state: Any,
    ) -> None:
        self.default_name, self.param_keys, self.messages, self.put_messages = (
            default_name,
            param_keys,
            messages,
            put_messages,
        )
        self.structured, self.read, self.hook, self.stream_state = structured, read, hook, stream_state


def _begin(
    api: _Api, function_name: Optional[str], kwargs: Dict[str, Any], config: Any, structured: bool
) -> Tuple[ChatCall, Dict[str, Any]]:
    """Route the model, hook the prompt, start the record; returns the kwargs to send.
    Runs on every call, so helpers are inlined (each call costs microseconds once the
    caches are cold after the HTTP round trip)."""
    pair = get_runtime().current()
    chat = api is CHAT  # the common case: its helpers inlined
    messages = list(kwargs.get("messages") or []) if chat else api.messages(kwargs)
    model = kwargs.get("model")
    routed = None if model is None else pair.routes.get(model, model)
    tracked = tracked_call()
    name = function_name or (tracked[0] if tracked else api.default_name)
    if pair.hooks is None:
        prompt, sent = _NO_PROMPT_HOOK, messages
    else:
        prompt = apply_prompt_hook(pair, messages, {"function_name": name, "model": routed, "messages": messages})
        sent = prompt.messages
    limit = config.max_field_chars
    params = {}  # loops, not comprehensions: no frame each
    keys = api.param_keys
    for key, value in kwargs.items():
        if key in keys:  # mutable values (tools, stop lists) copied to JSON; the SDK's omit markers skipped
            if type(value) in LEAF_TYPES:
                params[key] = value
            elif not isinstance(value, _OMITTED):
                params[key] = to_jsonable(value, limit)
    recorded = []  # what the record keeps: a copy the caller's later mutation cannot reach
    for message in messages:
        flat = type(message) is dict and {*map(type, message.values())} <= STR_ONLY
        recorded.append(message.copy() if flat else to_jsonable(message, limit))
    if chat:
        fmt = kwargs.get("response_format")
        structured = structured or (type(fmt) is dict and fmt.get("type") in _JSON_FORMATS)
        send = {**kwargs, "messages": sent}  # a list even when the caller passed an iterator
    else:
        structured = structured or api.structured(kwargs)
        send = {**kwargs}
        api.put_messages(send, kwargs, messages, sent)
    call = ChatCall(
        pair,
        name,
        "openai",
        messages,
        model,
        routed,
        prompt,
        params,
        tracked[1] if tracked else None,
        recorded,
        structured=structured,
    )
    if "model" in kwargs:
        send["model"] = routed
    return call, send


# -- chat completions ---------------------------------------------------------------------
def _read_completion(result: Any) -> Tuple[Optional[str], Optional[str], Optional[str], Any, Dict[str, Any]]:
    """(output, raw_output, model_used, usage, extra) of a ``ChatCompletion`` (worker thread;
    the SDK's response objects are not mutated after they are returned). Tool calls are kept
    structured; with several choices each one is in ``extra["choices"]``."""
    choices = getattr(result, "choices", None) or []
    entries = []
    for choice in choices:
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        entry: Dict[str, Any] = {
            "index": getattr(choice, "index", len(entries)),
            "finish_reason": getattr(choice, "finish_reason", None),
        }
        text = content if isinstance(content, str) else getattr(message, "refusal", None)
        entry["output"] = assistant_output(text, tool_call_dicts(getattr(message, "tool_calls", None)), entry)
        entries.append(entry)
    first = entries[0] if entries else {"output": None}
    extra = {
        "finish_reason": first.get("finish_reason"),
        "response_id": getattr(result, "id", None),
        "n_choices": len(choices),
    }
    extra.update({k: v for k, v in first.items() if k in ("tool_calls", "output_is_tool_calls")})
    if len(entries) > 1:
        extra["choices"] = entries
    return first["output"], first["output"], getattr(result, "model", None), getattr(result, "usage", None), extra


def _hook_completion(call: ChatCall, result: Any, parse_as: Any = None) -> None:
    """Hook each choice's text in place (``call`` has hooks; tool-call messages untouched;
    a ``parse`` result's ``parsed`` re-read when a JSON hook changed it) and submit the record."""
    hooked_first: Optional[Tuple[str, str]] = None
    for index, choice in enumerate(getattr(result, "choices", None) or []):
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if isinstance(content, str) and not getattr(message, "tool_calls", None):
            hooked = call.apply_output(content)
            if hooked != content:
                if parse_as is not None and hasattr(message, "parsed"):
                    message.parsed = parse_as.model_validate_json(hooked)
                message.content = hooked
            if index == 0:
                hooked_first = (hooked, content)
    if hooked_first is None:
        call.finish(response=result, read=_read_completion)
    else:
        call.finish(output=hooked_first[0], raw_output=hooked_first[1], response=result, read=_read_completion)


def _hook_response(call: ChatCall, result: Any, parse_as: Any = None) -> None:
    output, raw = responses_api.hook_response(call, result, parse_as)
    call.finish(output=output, raw_output=raw, response=result, read=responses_api.read_response)


def _responses_put(send: Dict[str, Any], kwargs: Dict[str, Any], messages: List[Any], sent: List[Any]) -> None:
    if sent is not messages and "input" in kwargs:
        responses_api.send_input(send, kwargs, sent)


CHAT = _Api(
    DEFAULT_FUNCTION,
    _CHAT_PARAM_KEYS,
    None,
    None,
    None,  # inlined in _begin
    _read_completion,
    _hook_completion,
    ChatStreamState,
)
RESPONSES = _Api(
    responses_api.RESPONSES_FUNCTION,
    responses_api.RESPONSES_PARAM_KEYS,
    responses_api.input_messages,
    _responses_put,
    responses_api.is_structured,
    responses_api.read_response,
    _hook_response,
    lambda call: ResponseStreamState(call, responses_api.read_response),
)


# -- one call -------------------------------------------------------------------------------
class _Attempt:
    """One intercepted call: routed and hooked on entry (:func:`_begin`); :meth:`failed`
    records a provider error; :meth:`settle` hooks and records the result (a stream: wraps it;
    a raw response: hooks and records what its ``parse()`` returns). Inert for positional
    arguments and inside ``suppress_capture()``; with ``capture_enabled=False`` calls are
    still routed and hooked, and nothing is recorded (``submit`` drops them)."""

    __slots__ = ("api", "call", "parse_as", "raw", "send", "t_call", "t_enter")

    def __init__(
        self,
        api: _Api,
        function_name: Optional[str],
        args: tuple,
        kwargs: Dict[str, Any],
        parse_as: Any = None,
        structured: bool = False,
    ) -> None:
        self.t_enter = perf_counter_ns()
        self.api = api
        self.call: Optional[ChatCall] = None
        self.send = kwargs
        self.parse_as = parse_as
        headers = kwargs.get("extra_headers")
        self.raw = headers.get(_RAW_HEADER) if type(headers) is dict else None
        config = get_config()
        if not args and not capture_suppressed():
            try:  # fail open, inline: this runs on every call
                self.call, self.send = _begin(api, function_name, kwargs, config, structured)
            except Exception as exc:  # noqa: BLE001
                record_internal_error(_COMPONENT, exc)
        self.t_call = perf_counter_ns()

    def failed(self, exc: Exception) -> None:
        """Record the provider's error (the caller re-raises it unchanged)."""
        if self.call is not None:
            with fail_open(_COMPONENT):
                self.call.finish(output=None, error=exc)

    def settle(self, result: Any, is_async: bool) -> Any:
        t_back = perf_counter_ns()
        call = self.call
        if call is not None:
            if self.raw is None and call.pair.hooks is None and self.send.get("stream") is not True:
                try:  # the common case, inline
                    call.finish(response=result, read=self.api.read)
                except Exception as exc:  # noqa: BLE001
                    record_internal_error(_COMPONENT, exc)
            elif self.raw is not None:
                proxy = _AsyncRawResponse if is_async and self.raw == "stream" else _RawResponse
                result = proxy(result, self, is_async)
            else:
                result = self.complete(result, is_async)
        if overhead_probe is not None:
            overhead_probe.append((self.t_call - self.t_enter) + (perf_counter_ns() - t_back))
        return result

    def complete(self, result: Any, is_async: bool) -> Any:
        """Hook and record a parsed result; a stream is returned wrapped."""
        call = self.call
        try:
            if self.send.get("stream") is True:
                state = self.api.stream_state(call)
                return AsyncRecordingStream(result, state) if is_async else RecordingStream(result, state)
            if call.pair.hooks is None:
                call.finish(response=result, read=self.api.read)
            else:
                self.api.hook(call, result, self.parse_as)
        except Exception as exc:  # noqa: BLE001
            record_internal_error(_COMPONENT, exc)
        return result


class _RawResponse(_Proxy):
    """The SDK's raw response (``with_raw_response`` / ``with_streaming_response``): headers and
    bytes are the server's; ``parse()`` returns the hooked result (a stream: the wrapped
    stream), recorded once. A raw response never parsed is recorded without output."""

    def __init__(self, response: Any, attempt: _Attempt, is_async: bool) -> None:
        super().__init__(response)
        object.__setattr__(self, "_vt_attempt", attempt)
        object.__setattr__(self, "_vt_async", is_async)
        object.__setattr__(self, "_vt_parsed", None)

    def parse(self, *, to: Any = None) -> Any:
        if to is not None:
            return self._vt_target.parse(to=to)
        if self._vt_parsed is None:
            object.__setattr__(self, "_vt_parsed", self._vt_attempt.complete(self._vt_target.parse(), self._vt_async))
        return self._vt_parsed

    def __del__(self) -> None:
        attempt = self.__dict__.get("_vt_attempt")
        if attempt is not None and attempt.call is not None and not attempt.call.finished:
            with fail_open(_COMPONENT):
                attempt.call.finish(output=None, extra={"raw_response_not_parsed": True})


class _AsyncRawResponse(_RawResponse):
    async def parse(self, *, to: Any = None) -> Any:  # type: ignore[override]
        if to is not None:
            return await self._vt_target.parse(to=to)
        if self._vt_parsed is None:
            parsed = await self._vt_target.parse()
            object.__setattr__(self, "_vt_parsed", self._vt_attempt.complete(parsed, True))
        return self._vt_parsed


# -- the wrapped resources --------------------------------------------------------------------
def _raw_wrappers(is_async: bool) -> Tuple[Callable[..., Any], Callable[..., Any]]:
    """The SDK's own wrappers that turn a method into its with_raw_response / with_streaming_response form."""
    from openai import _legacy_response, _response

    if is_async:
        return _legacy_response.async_to_raw_response_wrapper, _response.async_to_streamed_response_wrapper
    return _legacy_response.to_raw_response_wrapper, _response.to_streamed_response_wrapper


class _Variant(_Proxy):
    """``resource.with_raw_response`` / ``.with_streaming_response``: the intercepted methods
    go through the wrapped resource; the rest are the SDK's own."""

    def __init__(self, target: Any, resource: _SyncResource, wrapper: Callable[..., Any]) -> None:
        super().__init__(target)
        object.__setattr__(self, "_vt_resource", resource)
        object.__setattr__(self, "_vt_wrapper", wrapper)

    def __getattr__(self, name: str) -> Any:
        if name in ("create", "parse"):
            return self._vt_wrapper(getattr(self._vt_resource, name))
        return getattr(self._vt_target, name)


class _SyncResource(_Proxy):
    """A wrapped ``chat.completions`` or ``responses`` resource (sync client)."""

    _vt_api: _Api = CHAT
    _vt_async = False
    _vt_parse_arg = "response_format"

    def __init__(self, target: Any, function_name: Optional[str]) -> None:
        super().__init__(target)
        object.__setattr__(self, "_vt_function", function_name)

    def __getattr__(self, name: str) -> Any:
        if name in _UNINTERCEPTED:
            _warn_unintercepted(name)
        return getattr(object.__getattribute__(self, "_vt_target"), name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        attempt = _Attempt(self._vt_api, self._vt_function, args, kwargs)
        try:  # not a ``with`` block: two calls fewer on the hot path
            result = self._vt_target.create(*args, **attempt.send)
        except Exception as exc:
            attempt.failed(exc)
            raise
        return attempt.settle(result, False)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        attempt = _Attempt(
            self._vt_api, self._vt_function, args, kwargs, _parse_as(kwargs.get(self._vt_parse_arg)), structured=True
        )
        try:
            result = self._vt_target.parse(*args, **attempt.send)
        except Exception as exc:
            attempt.failed(exc)
            raise
        return attempt.settle(result, False)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        """The SDK's own stream helper, run on this resource: it calls our ``create(stream=True)``."""
        return type(self._vt_target).stream(self, *args, **kwargs)

    @property
    def with_raw_response(self) -> Any:
        return _Variant(self._vt_target.with_raw_response, self, _raw_wrappers(self._vt_async)[0])

    @property
    def with_streaming_response(self) -> Any:
        return _Variant(self._vt_target.with_streaming_response, self, _raw_wrappers(self._vt_async)[1])


class _AsyncResource(_SyncResource):
    _vt_async = True

    async def create(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        attempt = _Attempt(self._vt_api, self._vt_function, args, kwargs)
        try:
            result = await self._vt_target.create(*args, **attempt.send)
        except Exception as exc:
            attempt.failed(exc)
            raise
        return attempt.settle(result, True)

    async def parse(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        attempt = _Attempt(
            self._vt_api, self._vt_function, args, kwargs, _parse_as(kwargs.get(self._vt_parse_arg)), structured=True
        )
        try:
            result = await self._vt_target.parse(*args, **attempt.send)
        except Exception as exc:
            attempt.failed(exc)
            raise
        return attempt.settle(result, True)


def _parse_as(value: Any) -> Any:
    """The pydantic class a ``parse`` call reads its JSON into (re-validated after a JSON hook)."""
    return value if isinstance(value, type) and hasattr(value, "model_validate_json") else None


class _SyncResponses(_SyncResource):
    _vt_api = RESPONSES
    _vt_parse_arg = "text_format"


class _AsyncResponses(_AsyncResource):
    _vt_api = RESPONSES
    _vt_parse_arg = "text_format"


# -- the client -----------------------------------------------------------------------------------
class WrappedClient(_Proxy):
    """What ``vt.wrap`` returns: the client, with chat completions and responses intercepted."""

    def __init__(self, client: Any, function_name: Optional[str], is_async: bool) -> None:
        super().__init__(client)
        completions = (_AsyncResource if is_async else _SyncResource)(client.chat.completions, function_name)
        object.__setattr__(self, "chat", _ChatProxy(client.chat, completions))
        responses = getattr(client, "responses", None)
        if responses is not None:
            object.__setattr__(
                self, "responses", (_AsyncResponses if is_async else _SyncResponses)(responses, function_name)
            )
        object.__setattr__(self, "vt_function_name", function_name)

    def __getattr__(self, name: str) -> Any:
        if name in _UNINTERCEPTED:
            _warn_unintercepted(name)
        return getattr(object.__getattribute__(self, "_vt_target"), name)

    def with_options(self, **options: Any) -> WrappedClient:
        return wrap(self._vt_target.with_options(**options), self.vt_function_name)

    def unwrap(self) -> Any:
        """The original client."""
        return self._vt_target


class _ChatProxy(_Proxy):
    def __init__(self, chat: Any, completions: Any) -> None:
        super().__init__(chat)
        object.__setattr__(self, "completions", completions)


def wrap(client: Any, function_name: Optional[str] = None) -> Any:
    """Return ``client`` with its chat completions and responses logged, hooked and routed."""
    if isinstance(client, WrappedClient):
        return client if function_name in (None, client.vt_function_name) else wrap(client.unwrap(), function_name)
    completions = getattr(getattr(client, "chat", None), "completions", None)
    if completions is None or not callable(getattr(completions, "create", None)):
        raise ConfigError(f"vt.wrap expects an openai.OpenAI or openai.AsyncOpenAI client, got {type(client).__name__}")
    if function_name is not None and (not isinstance(function_name, str) or not function_name):
        raise ConfigError(f"function_name must be a non-empty string, got {function_name!r}")
    import openai

    return WrappedClient(client, function_name, isinstance(client, openai.AsyncOpenAI))
