"""``@vt.track``: capture an app function's calls (sync and async); with ``hooks=True`` the
active hooks also apply to the function's prompt argument and its text return value."""

from __future__ import annotations

import functools
import inspect
from time import perf_counter
from typing import Any, Callable, Dict, Optional, TypeVar, Union, overload

from ..call_context import capture_suppressed, current_run_id, enter_tracked, exit_tracked, new_run_id, set_last_run_id
from ..config import get_config
from ..errors import ConfigError
from ..health import fail_open
from ..runtime.active import get_runtime
from ..types import input_text
from .record import RawCall, to_jsonable
from .worker import submit

F = TypeVar("F", bound=Callable[..., Any])
_COMPONENT = "capture.track"


def _inputs(signature: Optional[inspect.Signature], args: tuple, kwargs: dict) -> Dict[str, Any]:
    """Arguments by parameter name (positional ones too); ``*args``/``**kwargs`` kept as such."""
    if signature is None:
        return {"args": {"args": list(args), **kwargs}}
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:  # the call itself is wrong; the function will raise it
        return {"args": {"args": list(args), **kwargs}}
    return {"args": dict(bound.arguments)}


class _HookSpec:
    """Which argument of a hooked function is its prompt (None: the first str argument)."""

    __slots__ = ("prompt_arg",)

    def __init__(self, prompt_arg: Optional[str]) -> None:
        self.prompt_arg = prompt_arg


class _TrackedCall:
    """One call of a tracked function, as a ``with`` block around it: nested captured
    calls see it as their parent; leaving the block by an exception records the error,
    :meth:`done` records the result. Inert when capture is suppressed; when capture is off
    only the hooks apply. With hooks, :attr:`args`/:attr:`kwargs` are the (hooked)
    arguments to call the function with."""

    __slots__ = (
        "args",
        "context",
        "hook_version",
        "inputs",
        "kwargs",
        "name",
        "pair",
        "parent",
        "prompt_after",
        "raw_output",
        "recorded",
        "run_id",
        "started",
        "token",
    )

    def __init__(
        self,
        name: str,
        signature: Optional[inspect.Signature],
        args: tuple,
        kwargs: dict,
        hooks: Optional[_HookSpec] = None,
    ) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs
        self.token: Any = None
        self.pair: Any = None
        self.prompt_after: Optional[str] = None
        self.raw_output: Optional[str] = None
        suppressed = capture_suppressed()
        self.recorded = suppressed or not get_config().capture_enabled
        self.run_id = new_run_id()
        if not self.recorded:
            self.parent, self.started = current_run_id(), perf_counter()
        self.inputs: Dict[str, Any] = {}
        with fail_open(_COMPONENT):
            if not self.recorded or hooks is not None:
                self.inputs = _inputs(signature, args, kwargs)
            if hooks is not None and not suppressed:
                self._hook_prompt(hooks, signature)

    def _hook_prompt(self, hooks: _HookSpec, signature: Optional[inspect.Signature]) -> None:
        pair = get_runtime().current()
        if pair.hooks is None:
            return
        self.pair = pair
        args = self.inputs.get("args") or {}
        # the input rules read: the arguments flattened as at learning time (feedback, export)
        self.context = {
            "function_name": self.name,
            "run_id": self.run_id,
            "user_input": input_text({"args": to_jsonable(args, get_config().max_field_chars)}),
        }
        name = hooks.prompt_arg or next((k for k, v in args.items() if isinstance(v, str)), None)
        if name is None or not isinstance(args.get(name), str) or signature is None:
            return
        hooked = pair.hooks.apply_prompt(args[name], self.context)
        if hooked == args[name]:
            return
        bound = signature.bind(*self.args, **self.kwargs)
        bound.arguments[name] = hooked
        self.args, self.kwargs, self.prompt_after = bound.args, bound.kwargs, hooked

    def __enter__(self) -> _TrackedCall:
        if not self.recorded:
            self.token = enter_tracked(self.name, self.run_id)
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        if self.token is not None:
            exit_tracked(self.token)
            self.token = None
        if exc is not None and not self.recorded:
            self._record(None, exc)
        return False  # the user's exception propagates unchanged

    def done(self, result: Any) -> Any:
        if self.pair is not None and isinstance(result, str):
            with fail_open(_COMPONENT):
                hooked = self.pair.hooks.apply_output(result, self.context)
                if hooked != result:
                    self.raw_output, result = result, hooked
        if not self.recorded:
            self._record(result, None)
        return result

    def _record(self, result: Any, error: Optional[BaseException]) -> None:
        self.recorded = True
        with fail_open(_COMPONENT):
            limit = get_config().max_field_chars
            params: Dict[str, Any] = {"return_type": type(result).__name__} if error is None else {}
            if self.prompt_after is not None:
                params["prompt_after_hook"] = self.prompt_after
            fields: Dict[str, Any] = {
                "function_name": self.name,
                "inputs": to_jsonable(self.inputs, limit),
                "kind": "function",
                "latency_ms": (perf_counter() - self.started) * 1000.0,
                "params": params,
                "run_id": self.run_id,
                "parent_run_id": self.parent,
            }
            if self.pair is not None:
                fields["hook_version"] = self.pair.hook_version
                fields["raw_output"] = self.raw_output
            submit(RawCall(None if error is not None else to_jsonable(result, limit), None, fields, error))
        set_last_run_id(self.run_id)


@overload
def track(function_name: F) -> F: ...
@overload
def track(
    function_name: Optional[str] = None, *, hooks: bool = False, prompt_arg: Optional[str] = None
) -> Callable[[F], F]: ...


def track(
    function_name: Union[str, Callable[..., Any], None] = None, *, hooks: bool = False, prompt_arg: Optional[str] = None
) -> Any:
    """Decorate a function so each call is captured: inputs by parameter name, return
    value, status, error type and duration. Exceptions are re-raised unchanged.
    Usable as ``@vt.track`` or ``@vt.track("name")`` / ``@vt.track(function_name="name")``.

    ``hooks=True``: the active hooks apply to this function like to a wrapped client: the
    prompt hook to the argument ``prompt_arg`` (default: the first str argument), the output
    hook to a str return value (the caller gets the hooked text; the record keeps both).
    Rules read the arguments flattened as ``name: value`` lines, as they did when learned."""
    if callable(function_name):
        return track()(function_name)
    if function_name is not None and (not isinstance(function_name, str) or not function_name):
        raise ConfigError(f"track(function_name=...) must be a non-empty string, got {function_name!r}")
    if prompt_arg is not None and not hooks:
        raise ConfigError("track(prompt_arg=...) names the argument hooks apply to; it needs hooks=True")
    spec = _HookSpec(prompt_arg) if hooks else None

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"@vt.track decorates functions, got {type(fn).__name__}")
        name = function_name or getattr(fn, "__qualname__", None) or repr(fn)
        try:
            signature: Optional[inspect.Signature] = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None
        if prompt_arg is not None and signature is not None and prompt_arg not in signature.parameters:
            raise ConfigError(
                f"@vt.track(prompt_arg={prompt_arg!r}): {name} has no such parameter "
                f"(it has {', '.join(signature.parameters) or 'none'})"
            )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _TrackedCall(name, signature, args, kwargs, spec) as call:
                    return call.done(await fn(*call.args, **call.kwargs))

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _TrackedCall(name, signature, args, kwargs, spec) as call:
                return call.done(fn(*call.args, **call.kwargs))

        return wrapper  # type: ignore[return-value]

    return decorate
