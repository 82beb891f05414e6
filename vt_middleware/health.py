"""Fail-open bookkeeping: internal errors are counted and logged once, never raised
into the user's call -- unless the config says ``strict=True`` (tests)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from types import TracebackType
from typing import Dict, Optional, Tuple

from .config import get_config

logger = logging.getLogger("vt_middleware")

_lock = threading.Lock()
_errors: Counter[Tuple[str, str]] = Counter()
_logged: set[Tuple[str, str]] = set()


def record_internal_error(component: str, exc: BaseException) -> None:
    """Count ``exc`` against ``component``; log the first of each kind; raise if strict."""
    key: Tuple[str, str] = (component, type(exc).__name__)
    with _lock:
        _errors[key] += 1
        first = key not in _logged
        _logged.add(key)
    if first:
        logger.warning("vt_middleware %s failed open: %s: %s", component, type(exc).__name__, _safe_message(exc))
    if get_config().strict:
        raise exc


def record_thread_error(component: str, exc: BaseException) -> None:
    """:func:`record_internal_error` for a background thread of ours: counted and logged, never
    raised (in strict mode too), so the thread lives on."""
    try:
        record_internal_error(component, exc)
    except Exception:  # noqa: BLE001 - strict mode raises; the count is taken
        pass


def _safe_message(exc: BaseException) -> str:
    """The exception's text with secrets redacted: provider errors can quote an API key."""
    try:
        from .redaction import redact

        return redact(str(exc))
    except Exception:  # noqa: BLE001 - never let logging itself fail the call
        return "<unprintable error>"


class fail_open:  # a class used like a function: ``with fail_open(component):``
    """Run the block; on an internal error count it and continue (or raise when strict).

    A class rather than a ``@contextmanager`` generator: it is entered several times on every
    captured call, and this form costs a fraction of a generator's set-up."""

    __slots__ = ("component",)

    def __init__(self, component: str) -> None:
        self.component = component

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> bool:
        if exc is None or not isinstance(exc, Exception):  # the point is to contain everything
            return False
        record_internal_error(self.component, exc)
        return True


def error_counts() -> Dict[str, int]:
    """``{"component:ErrorType": count}`` of internal errors since start (or reset)."""
    with _lock:
        return {f"{c}:{e}": n for (c, e), n in _errors.items()}


def reset_error_counts() -> None:
    with _lock:
        _errors.clear()
        _logged.clear()
