"""Request limits and validation shared by every route of the local server (ASGI middleware).

Before a route runs: the body is read up to ``max_body_bytes`` (413 past it); a JSON body must
be an object; ``stream`` must be a boolean; ``max_tokens`` / ``max_completion_tokens`` /
``max_output_tokens`` integers from 1 to the model's context (``max_tokens`` at most); ``n``
from 1 to ``max_n``; ``temperature`` / ``top_p`` numbers (400 naming the field). While it
runs: a :class:`Cancel` (read by generation through :func:`current_cancel`) is set when the
client disconnects, when ``max_generation_s`` is over, or when the server shuts down, so
generation stops instead of running on for nobody.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True)
class ServerLimits:
    """Configurable limits (``vt serve --max-body-bytes ...``)."""

    max_body_bytes: int = 1 << 20  # JSON requests
    max_upload_bytes: int = 512 << 20  # multipart uploads (/v1/files), streamed through, not buffered
    max_tokens: int = 4096
    max_n: int = 8
    max_generation_s: float = 120.0


class Cancel:
    """Set when a request's generation should stop; also stops at its deadline."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline = time.monotonic() + deadline_s
        self.event = threading.Event()
        self.reason: Optional[str] = None

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def is_set(self) -> bool:
        if not self.event.is_set() and time.monotonic() >= self.deadline:
            self.set("generation time limit")
        return self.event.is_set()


_current: contextvars.ContextVar[Optional[Cancel]] = contextvars.ContextVar("vt_server_cancel", default=None)
_active: weakref.WeakSet[Cancel] = weakref.WeakSet()
_active_lock = threading.Lock()


def current_cancel() -> Optional[Cancel]:
    """The running request's :class:`Cancel` (None outside a request)."""
    return _current.get()


def cancel_all(reason: str = "server shutting down") -> int:
    """Stop every running generation (on SIGTERM). Returns how many were running."""
    with _active_lock:
        running = list(_active)
    for cancel in running:
        cancel.set(reason)
    return len(running)


class LimitsMiddleware:
    """Pure ASGI middleware applying :class:`ServerLimits` to every HTTP request."""

    def __init__(self, app: ASGIApp, limits: ServerLimits, context_window: Callable[[str], Optional[int]]) -> None:
        self.app = app
        self.limits = limits
        self.context_window = context_window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        upload = headers.get("content-type", "").startswith("multipart/")
        limit = self.limits.max_upload_bytes if upload else self.limits.max_body_bytes
        if declared.isdigit() and int(declared) > limit:
            await _error(send, 413, f"request body of {declared} bytes is over the limit of {limit} bytes", "body")
            return
        if upload:
            await self.app(scope, _counting(receive, limit), send)
            return
        chunks: List[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                await _error(send, 413, f"request body is over the limit of {self.limits.max_body_bytes} bytes", "body")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and "json" in headers.get("content-type", "json") and scope.get("method") == "POST":
            problem = self.check_json(body)
            if problem is not None:
                await _error(send, 400, problem[0], problem[1])
                return
        await self._run(scope, receive, send, body)

    async def _run(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        cancel = Cancel(self.limits.max_generation_s)
        with _active_lock:
            _active.add(cancel)
        disconnected = asyncio.Event()
        delivered = False

        async def app_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    cancel.set("client disconnected")
                    disconnected.set()
                    return

        watcher = asyncio.ensure_future(watch())
        token = _current.set(cancel)
        try:
            await self.app(scope, app_receive, send)
        finally:
            _current.reset(token)
            watcher.cancel()
            disconnected.set()
            cancel.set("request finished")
            with _active_lock:
                _active.discard(cancel)

    def check_json(self, body: bytes) -> Optional[tuple]:
        """(message, param) for a JSON body that breaks a shared rule, else None."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return f"request body is not valid JSON: {exc}", None
        if not isinstance(data, dict):
            return f"request body must be a JSON object, got {type(data).__name__}", None
        return validate_common(data, self.limits, self.context_window)


def validate_common(
    data: Dict[str, Any], limits: ServerLimits, context_window: Callable[[str], Optional[int]]
) -> Optional[tuple]:
    """The field rules every generating route shares."""
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return f"stream must be a boolean, got {json.dumps(stream)[:40]}", "stream"
    model = data.get("model")
    window = context_window(model) if isinstance(model, str) else None
    cap = min(limits.max_tokens, window) if window else limits.max_tokens
    for name in _TOKEN_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if not _is_int(value) or value < 1:
            return f"{name} must be an integer >= 1, got {json.dumps(value)[:40]}", name
        if value > cap:
            return (
                f"{name}={value} is over this server's limit of {cap} tokens"
                + (f" (the context of {model})" if window and window <= limits.max_tokens else "")
            ), name
    n = data.get("n")
    if n is not None and (not _is_int(n) or not 1 <= n <= limits.max_n):
        return f"n must be an integer from 1 to {limits.max_n}, got {json.dumps(n)[:40]}", "n"
    for name in ("temperature", "top_p"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{name} must be a number, got {json.dumps(value)[:40]}", name
    return None


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that ends the request (as a disconnect) once more than ``limit`` bytes came."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        return {"type": "http.disconnect"} if seen > limit else message

    return counted


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def _error(send: Send, status: int, message: str, param: Optional[str]) -> None:
    payload = json.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": "request_too_large" if status == 413 else None,
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
