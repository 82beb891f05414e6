"""Per-call context: capture suppression and the enclosing tracked function."""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

_suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar("vt_capture_suppressed", default=False)
# (function_name, run_id) of the innermost @vt.track call, if any
_current: contextvars.ContextVar[Optional[Tuple[str, str]]] = contextvars.ContextVar(
    "vt_current_function", default=None
)


@contextmanager
def suppress_capture() -> Iterator[None]:
    """Calls made inside this block are not captured (the evolver's own LLM calls)."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def capture_suppressed() -> bool:
    return _suppressed.get()


def current_function_name() -> Optional[str]:
    """Name of the innermost ``@vt.track`` function running in this context."""
    current = _current.get()
    return current[0] if current else None


def current_run_id() -> Optional[str]:
    """run_id of the innermost ``@vt.track`` call (parent of nested captured calls)."""
    current = _current.get()
    return current[1] if current else None


@contextmanager
def tracked_call(function_name: str, run_id: str) -> Iterator[None]:
    token = _current.set((function_name, run_id))
    try:
        yield
    finally:
        _current.reset(token)


_last_run_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("vt_last_run_id", default=None)


def set_last_run_id(run_id: str) -> None:
    _last_run_id.set(run_id)


def last_run_id() -> Optional[str]:
    """run_id of the last call captured in this context (pass it to ``vt.feedback``)."""
    return _last_run_id.get()
