"""SIGTERM/SIGINT: journal what capture holds, then run the app's handler or the default.

Our handler is chained in front of whatever was installed (never replacing it): it asks
capture to journal everything queued (bounded by ``signal_flush_timeout_s``), then calls
the previous Python handler, or, where that was the default action, restores it and
re-raises the signal; an ignored signal stays ignored. Installing is only possible from
the main thread; it is idempotent and, called again after the app installed a handler
of its own, chains in front of that one too.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable, Optional

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None)) if s is not None)
_ATTR = "_vt_chained_previous"


def _chained(journal_now: Callable[[], Any], previous: Any) -> Callable[[int, Any], Any]:
    def handler(signum: int, frame: Any) -> Any:
        try:
            journal_now()
        except Exception:  # noqa: BLE001 - the app's handler must run whatever happened here
            pass
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_IGN:
            return None
        signal.signal(signum, signal.SIG_DFL)  # the default action, as if we were not here
        os.kill(os.getpid(), signum)
        return None

    setattr(handler, _ATTR, previous)
    return handler


def install(journal_now: Callable[[], Any]) -> bool:
    """Chain our handler in front of the current SIGTERM and SIGINT handlers (main thread
    only; a handler set outside Python is left alone). True when ours is in place."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current is None or hasattr(current, _ATTR):
                continue
            signal.signal(signum, _chained(journal_now, current))
    except (ValueError, OSError):  # an embedded interpreter without signal support
        return False
    return True


def uninstall() -> None:
    """Put the handlers we replaced back where ours is still the current one."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        previous: Optional[Any] = getattr(current, _ATTR, None)
        if previous is not None:
            signal.signal(signum, previous)
