"""``@vt.track``: capture an app function's calls (sync and async)."""
from __future__ import annotations

import functools
import inspect
from time import perf_counter
from typing import Any, Callable, Dict, Optional, TypeVar, Union, overload

from ..config import get_config
from ..errors import ConfigError
from ..health import fail_open
from ..types import STATUS_ERROR, STATUS_SUCCESS, CallRecord, new_id
from .context import capture_suppressed, set_last_run_id, tracked_call
from .record import output_text, sanitize
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


def _record(name: str, run_id: str, parent: Optional[str], inputs: Dict[str, Any], started: float,
            result: Any = None, error: Optional[BaseException] = None) -> None:
    config = get_config()
    record = CallRecord(
        function_name=name, inputs=inputs, output=None if error else output_text(result, config.max_field_chars),
        status=STATUS_ERROR if error else STATUS_SUCCESS, kind="function",
        error_type=type(error).__name__ if error else None,
        error_message=str(error) if error else None,
        latency_ms=(perf_counter() - started) * 1000.0,
        params={"return_type": type(result).__name__} if error is None else {},
        run_id=run_id, parent_run_id=parent,
    )
    submit(sanitize(record, config))


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

        from .context import current_run_id

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if capture_suppressed() or not get_config().capture_enabled:
                    return await fn(*args, **kwargs)
                run_id, parent, started = new_id(), current_run_id(), perf_counter()
                inputs: Dict[str, Any] = {}
                with fail_open(_COMPONENT):
                    inputs = _inputs(signature, args, kwargs)
                with tracked_call(name, run_id):
                    try:
                        result = await fn(*args, **kwargs)
                    except BaseException as exc:
                        with fail_open(_COMPONENT):
                            _record(name, run_id, parent, inputs, started, error=exc)
                        raise
                with fail_open(_COMPONENT):
                    _record(name, run_id, parent, inputs, started, result=result)
                set_last_run_id(run_id)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if capture_suppressed() or not get_config().capture_enabled:
                return fn(*args, **kwargs)
            run_id, parent, started = new_id(), current_run_id(), perf_counter()
            inputs: Dict[str, Any] = {}
            with fail_open(_COMPONENT):
                inputs = _inputs(signature, args, kwargs)
            with tracked_call(name, run_id):
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    with fail_open(_COMPONENT):
                        _record(name, run_id, parent, inputs, started, error=exc)
                    raise
            with fail_open(_COMPONENT):
                _record(name, run_id, parent, inputs, started, result=result)
            set_last_run_id(run_id)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
