"""The local OpenAI-compatible server app: chat + models, responses, files and
fine-tuning jobs (``files.py``, ``fine_tuning.py``). Errors use OpenAI's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .aliases import install_aliases
from .backends import ChatBackend
from .chat import APIError
from .chat import router as chat_router
from .limits import LimitsMiddleware, ServerLimits


def _error(
    status: int, message: str, type_: str = "invalid_request_error", param: Any = None, code: Any = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def create_app(backend: ChatBackend, data_dir: Union[str, Path], limits: Optional[ServerLimits] = None) -> FastAPI:
    """A FastAPI app serving ``backend``; files and jobs live under ``data_dir``; every route
    goes through ``limits`` (body size, token/choice caps, types, generation time)."""
    from . import files, fine_tuning, responses

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="vt_middleware local OpenAI-compatible server", version=__version__)
    app.state.backend = backend
    app.state.data_dir = data_dir
    app.include_router(chat_router)
    app.include_router(responses.router)
    app.include_router(files.router)
    app.include_router(fine_tuning.router)
    install_aliases(backend)  # OpenAI base ids the fine-tuning endpoint accepts are served too
    window = getattr(backend, "context_window", None)
    app.state.limits = limits = limits or ServerLimits()
    app.add_middleware(
        LimitsMiddleware, limits=limits, context_window=window if callable(window) else (lambda model: None)
    )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return _error(
            400, f"invalid request: {first.get('msg', 'bad body')}" + (f" at {where}" if where else ""), param=where
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(
            exc.status_code, str(exc.detail), type_="invalid_request_error" if exc.status_code < 500 else "server_error"
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal server error: {type(exc).__name__}: {exc}", type_="server_error")

    return app
