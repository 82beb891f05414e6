"""Loading a generated hook module and calling it safely.

Each version is imported from its file under a fresh module name
(``vt_hooks_<version>_<n>``); nothing is ever reloaded in place, so a call that
holds the old module keeps running the old code.
"""

from __future__ import annotations

import importlib.util
import itertools
import queue
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Protocol

from ..errors import HookError
from ..health import record_internal_error

_load_counter = itertools.count(1)


def import_hook_file(path: Path, version: str) -> ModuleType:
    """Import ``path`` as a new module; raise HookError if it lacks the two hooks."""
    safe = "".join(ch if ch.isalnum() else "_" for ch in version)
    name = f"vt_hooks_{safe}_{next(_load_counter)}"
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise HookError(f"cannot import hook module from {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise HookError(f"hook module {path} failed to import: {type(exc).__name__}: {exc}") from exc
    for fn in ("intercept_prompt", "intercept_output"):
        if not callable(getattr(module, fn, None)):
            raise HookError(f"hook module {path} has no callable {fn}()")
    # Registered only so tracebacks and pickling can find it; never re-imported.
    sys.modules[name] = module
    return module


class LoadedHooks:
    """One loaded hook version. Calls fail open: on error the input passes through unchanged.

    After ``rollback_after`` consecutive failures ``on_repeated_failure`` is called
    once (the runtime uses it to roll back to the previous version).
    """

    def __init__(
        self,
        module: ModuleType,
        version: str,
        path: Optional[Path] = None,
        rollback_after: int = 5,
        on_repeated_failure: Optional[Callable[[LoadedHooks], None]] = None,
        timeout_s: Optional[float] = None,
    ) -> None:
        from ..config import get_config

        self.module = module
        # Opt-in (``hook_timeout_s``): calls run in a helper thread and past the timeout the
        # text passes through. A Python thread cannot be killed, so a timed-out version is
        # disabled at once (a loop must not pile up threads) and the rollback is triggered.
        self.timeout_s = timeout_s if timeout_s is not None else get_config().hook_timeout_s
        self.disabled = False
        self.version = version
        self.path = path
        self.rollback_after = rollback_after
        self.on_repeated_failure = on_repeated_failure
        self.calls = 0
        self.failures = 0
        self._consecutive = 0
        self._tripped = False
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, version: str, **kwargs: Any) -> LoadedHooks:
        return cls(import_hook_file(Path(path), version), version, Path(path), **kwargs)

    def apply_prompt(self, text: str, context: Dict[str, Any]) -> str:
        return self._call("intercept_prompt", text, context)

    def apply_output(self, text: str, context: Dict[str, Any]) -> str:
        return self._call("intercept_output", text, context)

    def apply_json_output(self, text: str, context: Dict[str, Any]) -> str:
        """Schema-constrained JSON (structured outputs) is hooked only by a module that
        defines ``intercept_json_output``; otherwise it passes through untouched."""
        if not callable(getattr(self.module, "intercept_json_output", None)):
            return text
        return self._call("intercept_json_output", text, context)

    def output_stream(self, context: Dict[str, Any], structured: bool = False) -> StreamProcessor:
        """A processor for one streamed answer: ``feed(piece) -> str`` per chunk, ``finish() -> str``
        at the end; the concatenation of what they return is ``intercept_output`` of the whole text.
        The module's own ``intercept_output_stream(context)`` (bounded look-ahead) when it has one,
        else the whole text is held and hooked at the end. Fails open: on an error the text held
        back and everything after it passes through unchanged, and the error is counted.
        ``structured`` (schema-constrained JSON): held to the end for ``intercept_json_output``,
        or passed through when the module has none."""
        if self.disabled or (structured and not callable(getattr(self.module, "intercept_json_output", None))):
            return _PassThrough()
        if structured:
            return _HoldToEnd(self.apply_json_output, context)
        factory = getattr(self.module, "intercept_output_stream", None)
        if factory is None:
            return _HoldToEnd(self.apply_output, context)
        self.calls += 1
        try:
            inner = factory(context)
            if not callable(getattr(inner, "feed", None)) or not callable(getattr(inner, "finish", None)):
                raise HookError(
                    f"intercept_output_stream returned {type(inner).__name__}, "
                    "expected an object with feed() and finish()"
                )
        except Exception as exc:  # noqa: BLE001
            self._failed()
            record_internal_error("hooks.intercept_output_stream", exc)
            return _PassThrough()
        if self.timeout_s is not None:
            inner = _TimedStream(self, inner, self.timeout_s)
        return _GuardedStream(self, inner)

    def _timed_out(self, what: str) -> HookError:
        """Disable this version (its stuck thread cannot be stopped) and trip the rollback now."""
        self.disabled = True
        self._consecutive = max(self._consecutive, self.rollback_after - 1)
        return HookError(f"{what} of hook version {self.version} ran past {self.timeout_s}s; version disabled")

    def _call(self, fn_name: str, text: str, context: Dict[str, Any]) -> str:
        self.calls += 1
        if self.disabled:
            return text
        try:
            fn = getattr(self.module, fn_name)
            result = fn(text, context) if self.timeout_s is None else self._call_guarded(fn, fn_name, text, context)
            if not isinstance(result, str):
                raise HookError(f"{fn_name} returned {type(result).__name__}, expected str")
        except Exception as exc:  # noqa: BLE001 - user-facing calls must not fail
            self._failed()
            record_internal_error(f"hooks.{fn_name}", exc)
            return text
        self._consecutive = 0
        return result

    def _call_guarded(self, fn: Callable[..., Any], fn_name: str, text: str, context: Dict[str, Any]) -> Any:
        """``fn(text, context)`` in a daemon thread, waited for ``timeout_s`` at most."""
        box: Dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = fn(text, context)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"vt-hook-{self.version}", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            raise self._timed_out(fn_name)
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1
            self._consecutive += 1
            trip = self._consecutive >= self.rollback_after and not self._tripped
            if trip:
                self._tripped = True
        if trip and self.on_repeated_failure is not None:
            self.on_repeated_failure(self)


class StreamProcessor(Protocol):
    """Hooks one streamed answer piece by piece (see :meth:`LoadedHooks.output_stream`)."""

    def feed(self, text: str) -> str: ...

    def finish(self) -> str: ...


class _PassThrough:
    def feed(self, text: str) -> str:
        return text

    def finish(self) -> str:
        return ""


class _HoldToEnd:
    """No stream processor: the whole text is hooked (``apply``, fail-open) when the stream ends."""

    __slots__ = ("apply", "context", "parts")

    def __init__(self, apply: Callable[[str, Dict[str, Any]], str], context: Dict[str, Any]) -> None:
        self.apply, self.context, self.parts = apply, context, []

    def feed(self, text: str) -> str:
        self.parts.append(text)
        return ""

    def finish(self) -> str:
        text = "".join(self.parts)
        self.parts = []
        return self.apply(text, self.context)


class _TimedStream:
    """A module's stream processor under ``hook_timeout_s``: its ``feed``/``finish`` run, one at
    a time, on a helper thread of this stream's (started at the first piece), each waited for
    ``timeout_s`` at most; past it :class:`_GuardedStream` releases the raw text."""

    __slots__ = ("hooks", "inner", "jobs", "results", "thread", "timeout_s")

    def __init__(self, hooks: LoadedHooks, inner: Any, timeout_s: float) -> None:
        self.hooks, self.inner, self.timeout_s = hooks, inner, timeout_s
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: Optional[threading.Thread] = None

    def _run(self, what: str, method: Callable[..., Any], arg: Optional[str]) -> Any:
        if self.thread is None:
            self.thread = threading.Thread(
                target=_serve, args=(self.jobs, self.results), name=f"vt-hook-{self.hooks.version}", daemon=True
            )
            self.thread.start()
        self.jobs.put((method, arg))
        try:
            ok, value = self.results.get(timeout=self.timeout_s)
        except queue.Empty:
            raise self.hooks._timed_out(f"intercept_output_stream {what}") from None
        if not ok:
            raise value
        return value

    def feed(self, text: str) -> Any:
        return self._run("feed()", self.inner.feed, text)

    def finish(self) -> Any:
        try:
            return self._run("finish()", self.inner.finish, None)
        finally:
            self.close()

    def close(self) -> None:
        """End the helper thread (a stuck one ends when its call returns)."""
        if self.thread is not None:
            self.thread = None
            self.jobs.put(None)

    def __del__(self) -> None:  # a stream the caller stopped reading never reaches finish()
        self.close()


def _serve(jobs: queue.SimpleQueue, results: queue.SimpleQueue) -> None:
    """A :class:`_TimedStream`'s helper thread (holding only the queues, so an abandoned
    stream can be collected and its ``close`` end the thread)."""
    while True:
        job = jobs.get()
        if job is None:
            return
        method, arg = job
        try:
            results.put((True, method(arg) if arg is not None else method()))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the stream's thread
            results.put((False, exc))


class _GuardedStream:
    """The module's processor, fail-open: after an error the raw text not yet emitted is
    released (when what was emitted is a prefix of the raw text) and the rest passes through."""

    __slots__ = ("broken", "emitted", "fed", "hooks", "inner")

    def __init__(self, hooks: LoadedHooks, inner: Any) -> None:
        self.hooks, self.inner = hooks, inner
        self.fed: List[str] = []
        self.emitted: List[str] = []
        self.broken = False

    def feed(self, text: str) -> str:
        if self.broken:
            return text
        self.fed.append(text)
        try:
            out = self.inner.feed(text)
            if type(out) is not str:
                raise HookError(f"intercept_output_stream feed() returned {type(out).__name__}, expected str")
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc, text)
        self.emitted.append(out)
        return out

    def finish(self) -> str:
        if self.broken:
            return ""
        try:
            out = self.inner.finish()
            if type(out) is not str:
                raise HookError(f"intercept_output_stream finish() returned {type(out).__name__}, expected str")
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc, "")
        self.hooks._consecutive = 0
        return out

    def _fail(self, exc: Exception, current: str) -> str:
        """What to emit after a failure: the held-back raw text, else just ``current``."""
        self.broken = True
        raw, done = "".join(self.fed), "".join(self.emitted)
        self.hooks._failed()
        record_internal_error("hooks.intercept_output_stream", exc)
        return raw[len(done) :] if raw.startswith(done) else current
