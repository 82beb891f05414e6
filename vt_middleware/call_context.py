"""Per-call context: capture suppression, the enclosing tracked function, the last run id."""

from __future__ import annotations

import contextvars
import os
import random
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

_suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar("vt_capture_suppressed", default=False)
# (function_name, run_id) of the innermost @vt.track call, if any
_current: contextvars.ContextVar[Optional[Tuple[str, str]]] = contextvars.ContextVar(
    "vt_current_function", default=None
)
_last_run_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("vt_last_run_id", default=None)

# uuid4 bit layout: version 4 in bits 76-79, RFC 4122 variant in bits 62-63
_UUID4_CLEAR = ~(0xC000 << 48) & ~(0xF000 << 64)
_UUID4_SET = (0x8000 << 48) | (4 << 76)
RUN_ID_POOL_TARGET = 1024
# Ids made ahead by the capture worker: taking one costs the caller a list pop, where making
# one right after an HTTP round trip (cold caches) cost it ~8 us of the ~50 us it spends.
_run_id_pool: List[str] = []


def _make_run_id() -> str:
    """A random uuid4 string, about 3x cheaper than ``str(uuid.uuid4())`` (no syscall):
    run ids need uniqueness, not unpredictability. ``random`` is reseeded in forked children."""
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_run_id() -> str:
    """A fresh run id: from the pool the worker keeps filled, else made here."""
    try:
        return _run_id_pool.pop()
    except IndexError:
        return _make_run_id()


def refill_run_ids() -> None:
    """Top the pool up (the capture worker calls this between batches)."""
    missing = RUN_ID_POOL_TARGET - len(_run_id_pool)
    if missing > RUN_ID_POOL_TARGET // 2:
        _run_id_pool.extend([_make_run_id() for _ in range(missing)])


def _forget_run_ids() -> None:
    _run_id_pool.clear()  # a forked child must not hand out its parent's ids


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_run_ids)


@contextmanager
def suppress_capture() -> Iterator[None]:
    """Calls made inside this block are not captured (the evolver's own LLM calls)."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


# hot-path reads and writes (every captured call): bound methods, no Python frame
capture_suppressed: Callable[[], bool] = _suppressed.get


# ``(function_name, run_id)`` of the innermost ``@vt.track`` call, if any
tracked_call: Callable[[], Optional[Tuple[str, str]]] = _current.get


def current_function_name() -> Optional[str]:
    """Name of the innermost ``@vt.track`` function running in this context."""
    current = _current.get()
    return current[0] if current else None


def current_run_id() -> Optional[str]:
    """run_id of the innermost ``@vt.track`` call (parent of nested captured calls)."""
    current = _current.get()
    return current[1] if current else None


def enter_tracked(function_name: str, run_id: str) -> contextvars.Token[Optional[Tuple[str, str]]]:
    """Make ``(function_name, run_id)`` the enclosing tracked call; undo with :func:`exit_tracked`."""
    return _current.set((function_name, run_id))


def exit_tracked(token: contextvars.Token[Optional[Tuple[str, str]]]) -> None:
    _current.reset(token)


class RunScope:
    """A cell shared by every context copied from the one that opened it. Frameworks that
    run steps in copied contexts (LangChain, LangGraph) report the run ids captured inside
    through it, so the opener's context sees the last one, also when the run's end event
    arrives in another context. The first id set in a context after the scope closed ends
    the scope there."""

    __slots__ = ("closed", "last_run_id", "root_run_id")

    def __init__(self, root_run_id: Optional[str] = None) -> None:
        self.last_run_id: Optional[str] = None
        self.root_run_id = root_run_id
        self.closed = False


_scope: contextvars.ContextVar[Optional[RunScope]] = contextvars.ContextVar("vt_run_scope", default=None)


def current_scope() -> Optional[RunScope]:
    """The open run scope of this context, if any."""
    scope = _scope.get()
    return scope if scope is not None and not scope.closed else None


def set_last_run_id(run_id: str) -> None:
    """Make ``run_id`` this context's last run id (and the open run scope's)."""
    _last_run_id.set(run_id)
    scope = _scope.get()
    if scope is not None:
        if scope.closed:
            _scope.set(None)
        else:
            scope.last_run_id = run_id


def open_scope(root_run_id: Optional[str] = None) -> Tuple[RunScope, contextvars.Token[Optional[RunScope]]]:
    """Open a run scope in this context; end it with :func:`close_scope`."""
    scope = RunScope(root_run_id)
    return scope, _scope.set(scope)


def close_scope(scope: RunScope, token: contextvars.Token[Optional[RunScope]]) -> None:
    """Close ``scope``. From the context that opened it, the last run id captured inside
    becomes that context's; from another one, the opener still reads it (:func:`last_run_id`)."""
    scope.closed = True
    try:
        _scope.reset(token)
    except ValueError:  # the end event runs in a copied context (an asyncio task)
        return
    if scope.last_run_id is not None:
        set_last_run_id(scope.last_run_id)


def last_run_id() -> Optional[str]:
    """run_id of the last call captured in this context, failed ones included, also inside
    LangChain runs this context started (pass it to ``vt.feedback``)."""
    scope = _scope.get()
    if scope is not None and scope.last_run_id is not None:
        return scope.last_run_id
    return _last_run_id.get()
