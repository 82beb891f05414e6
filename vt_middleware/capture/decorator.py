"""``@vt.track``: capture an app function's calls (sync and async)."""
from __future__ import annotations

import functools
import inspect
from time import perf_counter
from typing import Any, Callable, Dict, Optional, TypeVar, Union, overload

from ..config import get_config
from ..errors import ConfigError
from ..health import fail_open
from ..call_context import (capture_suppressed, current_run_id, enter_tracked, exit_tracked, new_run_id,
                      set_last_run_id)
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


class _TrackedCall:
    """One call of a tracked function, as a ``with`` block around it: nested captured
    calls see it as their parent; leaving the block by an exception records the error,
    :meth:`done` records the result. Inert when capture is off or suppressed."""

    __slots__ = ("name", "inputs", "run_id", "parent", "started", "token", "recorded")

    def __init__(self, name: str, signature: Optional[inspect.Signature], args: tuple, kwargs: dict) -> None:
        self.name = name
        self.token: Any = None
        self.recorded = capture_suppressed() or not get_config().capture_enabled
        if self.recorded:
            return
        self.run_id, self.parent, self.started = new_run_id(), current_run_id(), perf_counter()
        self.inputs: Dict[str, Any] = {}
        with fail_open(_COMPONENT):
            self.inputs = _inputs(signature, args, kwargs)

    def __enter__(self) -> "_TrackedCall":
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
        if not self.recorded:
            self._record(result, None)
        return result

    def _record(self, result: Any, error: Optional[BaseException]) -> None:
        self.recorded = True
        with fail_open(_COMPONENT):
            limit = get_config().max_field_chars
            submit(RawCall(None if error is not None else to_jsonable(result, limit), None, {
                "function_name": self.name, "inputs": to_jsonable(self.inputs, limit), "kind": "function",
                "latency_ms": (perf_counter() - self.started) * 1000.0,
                "params": {"return_type": type(result).__name__} if error is None else {},
                "run_id": self.run_id, "parent_run_id": self.parent,
            }, error))
        set_last_run_id(self.run_id)


@overload
def track(function_name: F) -> F: ...
@overload
def track(function_name: Optional[str] = None) -> Callable[[F], F]: ...


def track(function_name: Union[str, Callable[..., Any], None] = None) -> Any:
    """Decorate a function so each call is captured: inputs by parameter name, return
    value, status, error type and duration. Exceptions are re-raised unchanged.
    Usable as ``@vt.track`` or ``@vt.track("name")`` / ``@vt.track(function_name="name")``."""
    if callable(function_name):
        return track()(function_name)
    if function_name is not None and (not isinstance(function_name, str) or not function_name):
        raise ConfigError(f"track(function_name=...) must be a non-empty string, got {function_name!r}")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"@vt.track decorates functions, got {type(fn).__name__}")
        name = function_name or getattr(fn, "__qualname__", None) or repr(fn)
        try:
            signature: Optional[inspect.Signature] = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _TrackedCall(name, signature, args, kwargs) as call:
                    return call.done(await fn(*args, **kwargs))

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _TrackedCall(name, signature, args, kwargs) as call:
                return call.done(fn(*args, **kwargs))

        return wrapper  # type: ignore[return-value]

    return decorate
