"""The management API: ``create_app()`` (FastAPI; OpenAPI schema at ``/openapi.json``).

Every route calls a function of :mod:`.service` or :mod:`.runs`, the same ones the
dashboards and the CLI use. Authentication: ``Authorization: Bearer <VT_API_TOKEN>`` on
every state-changing route, and on all routes when ``protect_reads`` (``vt api`` sets it
for a non-loopback address). Errors: ``{"detail": message, "field": name|null}`` with 400
(bad value), 401/403 (token), 404 (unknown id), 409 (a run in progress), 422 (bad shape).
"""

from __future__ import annotations

import hmac
import os
from typing import Any, Dict, List, Literal, Optional

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, DataError, NotFoundError, VTError
from . import service
from .runs import BusyError, RunManager, RunOptions

TOKEN_ENV = "VT_API_TOKEN"
ID = r"^[A-Za-z0-9._:-]{1,128}$"
VERSION = r"^v\d{4,8}$"
RUN_ID = r"^run-[A-Za-z0-9-]{1,64}$"
Limit = Query(50, ge=1, le=1000, description="Page size.")
Offset = Query(0, ge=0, le=10**9, description="Rows to skip.")
FunctionName = Query(None, min_length=1, max_length=200, description="Only calls of this function.")
_bearer = HTTPBearer(auto_error=False, description=f"The server's {TOKEN_ENV}.")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeedbackCreate(_Body):
    fixed_output: str = Field(max_length=200_000, description="What the model should have said.")
    run_id: Optional[str] = Field(None, pattern=ID, description="The captured call this corrects.")
    input_prompt: Optional[str] = Field(None, max_length=200_000)
    bad_output: Optional[str] = Field(None, max_length=200_000)
    context: Optional[Dict[str, Any]] = None
    comment: Optional[str] = Field(None, max_length=10_000)


class FeedbackUpdate(_Body):
    input_prompt: Optional[str] = Field(None, max_length=200_000)
    bad_output: Optional[str] = Field(None, max_length=200_000)
    fixed_output: Optional[str] = Field(None, max_length=200_000)
    context: Optional[Dict[str, Any]] = None
    run_id: Optional[str] = Field(None, pattern=ID)


class RunRequest(_Body):
    function_name: str = Field(min_length=1, max_length=200)
    backend: Literal["none", "local", "openai"] = "none"
    base_model: Optional[str] = Field(None, min_length=1, max_length=200)
    base_url: Optional[str] = Field(None, pattern=r"^https?://[^\s]{1,500}$")
    max_budget_usd: Optional[float] = Field(None, ge=0, le=1e6)
    epochs: int = Field(3, ge=1, le=50)
    max_steps: Optional[int] = Field(None, ge=1, le=100_000)
    epsilon: float = Field(0.3, gt=0, lt=2)
    top_k: int = Field(50, ge=1, le=10_000)
    min_group_size: int = Field(2, ge=1, le=10_000)
    gate_items: int = Field(16, ge=1, le=10_000)
    gate_max_tokens: int = Field(64, ge=1, le=4096)


class HookRollback(_Body):
    to: Optional[str] = Field(None, pattern=VERSION, description="Version to go back to (default: the previous).")
    reason: str = Field("api rollback", max_length=500)


class PromotionRollback(_Body):
    reason: str = Field("api rollback", max_length=500)


def _error(status: int, message: str, field: Optional[str] = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message, "field": field})


def create_app(token: Optional[str] = None, protect_reads: bool = False) -> FastAPI:
    """The API app. ``token`` defaults to ``$VT_API_TOKEN``; without one, state-changing
    routes answer 403 and ``protect_reads`` is refused."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if protect_reads and not token:
        raise ConfigError(f"{TOKEN_ENV} must be set to serve the API on a non-loopback address")
    app = FastAPI(title="vt_middleware management API", version="1", description=__doc__)
    app.state.runs = RunManager()

    def check(credentials: Optional[HTTPAuthorizationCredentials]) -> None:
        if not token:
            raise _AuthError(403, f"state-changing routes are disabled: set {TOKEN_ENV} on the server")
        given = credentials.credentials if credentials is not None else ""
        if not given:
            raise _AuthError(401, "missing bearer token (Authorization: Bearer <VT_API_TOKEN>)")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise _AuthError(401, "wrong bearer token")

    def write_auth(credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> None:
        check(credentials)

    def read_auth(credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> None:
        if protect_reads:
            check(credentials)

    read, write = [Depends(read_auth)], [Depends(write_auth)]

    if protect_reads:  # every path, the schema and docs included

        @app.middleware("http")
        async def _all_routes_need_the_token(request: Request, call_next: Any) -> Any:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), str(token).encode()):
                response = _error(
                    401, "this server needs Authorization: Bearer <VT_API_TOKEN> on every route", "authorization"
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            return await call_next(request)

    @app.exception_handler(_AuthError)
    async def _auth_error(request: Request, exc: _AuthError) -> JSONResponse:
        response = _error(exc.status, exc.message, "authorization")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")) or None
        return _error(422, f"{field or 'request'}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(VTError)
    async def _vt_error(request: Request, exc: VTError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return _error(404, str(exc))
        if isinstance(exc, BusyError):
            return _error(409, str(exc))
        return _error(400 if isinstance(exc, (ConfigError, DataError)) else 409, str(exc))

    # --- feedback ---------------------------------------------------------------------------
    @app.get("/feedback", dependencies=read, tags=["feedback"])
    def list_feedback(
        function_name: Optional[str] = FunctionName,
        run_id: Optional[str] = Query(None, pattern=ID),
        limit: int = Limit,
        offset: int = Offset,
    ) -> Dict[str, Any]:
        """Feedback pairs, oldest first, paged."""
        return service.list_feedback_page(function_name, run_id, offset, limit)

    @app.post("/feedback", status_code=201, dependencies=write, tags=["feedback"])
    def create_feedback(body: FeedbackCreate) -> Dict[str, Any]:
        """Store a correction; with ``run_id`` it is linked to (and filled from) that captured call."""
        return service.create_feedback(
            body.fixed_output,
            run_id=body.run_id,
            input_prompt=body.input_prompt,
            bad_output=body.bad_output,
            context=body.context,
            comment=body.comment,
        ).to_dict()

    @app.get("/feedback/{pair_id}", dependencies=read, tags=["feedback"])
    def get_feedback(pair_id: str = Path(pattern=ID)) -> Dict[str, Any]:
        return service.get_feedback(pair_id).to_dict()

    @app.patch("/feedback/{pair_id}", dependencies=write, tags=["feedback"])
    def update_feedback(body: FeedbackUpdate, pair_id: str = Path(pattern=ID)) -> Dict[str, Any]:
        """Change fields of a pair (the stored pair is replaced in one write)."""
        changes = body.model_dump(exclude_unset=True)
        if not changes:
            raise ConfigError("nothing to update: give at least one of " + ", ".join(service.FEEDBACK_FIELDS))
        for name in ("input_prompt", "bad_output", "fixed_output"):
            if name in changes and changes[name] is None:
                raise ConfigError(f"{name} cannot be null")
        if "context" in changes and changes["context"] is None:
            changes["context"] = {}
        return service.update_feedback(pair_id, changes).to_dict()

    @app.delete("/feedback/{pair_id}", status_code=204, dependencies=write, tags=["feedback"])
    def delete_feedback(pair_id: str = Path(pattern=ID)) -> Response:
        service.delete_feedback(pair_id)
        return Response(status_code=204)

    # --- calls ------------------------------------------------------------------------------
    @app.get("/calls", dependencies=read, tags=["calls"])
    def list_calls(
        function_name: Optional[str] = FunctionName,
        limit: int = Limit,
        offset: int = Offset,
        order: Literal["newest", "oldest"] = "newest",
    ) -> Dict[str, Any]:
        """Captured calls, paged (newest first by default)."""
        return service.list_calls_page(function_name, offset, limit, newest_first=order == "newest")

    @app.get("/calls/{run_id}", dependencies=read, tags=["calls"])
    def get_call(run_id: str = Path(pattern=ID)) -> Dict[str, Any]:
        """One captured call with its feedback pairs."""
        return service.get_call(run_id)

    # --- the loop -----------------------------------------------------------------------------
    @app.post("/pipeline/run", status_code=202, dependencies=write, tags=["pipeline"])
    def run_pipeline(body: RunRequest) -> Dict[str, Any]:
        """Start one evolution cycle in the background (409 while one runs)."""
        from ..config import get_config

        options = RunOptions(**body.model_dump(), output_dir=str(get_config().state_dir / "evolve"))
        return app.state.runs.start(options)

    @app.get("/pipeline/status", dependencies=read, tags=["pipeline"])
    def pipeline_status() -> Dict[str, Any]:
        """The current or last background run: status, run id, stage state."""
        return app.state.runs.status()

    @app.get("/runs", dependencies=read, tags=["pipeline"])
    def list_runs(
        function_name: Optional[str] = FunctionName, limit: int = Query(50, ge=1, le=1000)
    ) -> List[Dict[str, Any]]:
        """Run records, newest first."""
        return service.runs(function_name, limit=limit)

    @app.get("/runs/{run_id}", dependencies=read, tags=["pipeline"])
    def get_run(run_id: str = Path(pattern=RUN_ID)) -> Dict[str, Any]:
        return service.get_run(run_id)

    @app.get("/stats", dependencies=read, tags=["pipeline"])
    def stats() -> Dict[str, Any]:
        return service.stats()

    # --- golden data, rules, hooks ------------------------------------------------------------
    @app.get("/golden", dependencies=read, tags=["golden"])
    def golden() -> List[Dict[str, Any]]:
        """Golden data sets written by runs, newest first."""
        return service.golden_sets()

    @app.get("/golden/{run_id}", dependencies=read, tags=["golden"])
    def golden_rows(run_id: str = Path(pattern=RUN_ID), limit: int = Limit, offset: int = Offset) -> Dict[str, Any]:
        rows = service.read_jsonl(service.golden_path(run_id))
        return service.page([{**service.chat_row_view(r), "messages": r.get("messages")} for r in rows], offset, limit)

    @app.get("/golden/{run_id}/download", dependencies=read, tags=["golden"], response_class=FileResponse)
    def golden_download(run_id: str = Path(pattern=RUN_ID)) -> FileResponse:
        """The run's golden data as ChatML JSONL."""
        return FileResponse(
            service.golden_path(run_id), media_type="application/jsonl", filename=f"{run_id}-golden.jsonl"
        )

    @app.get("/rules", dependencies=read, tags=["rules"])
    def rules(version: Optional[str] = Query(None, pattern=VERSION)) -> Dict[str, Any]:
        """Rules of a hook version (default: active) with the corrections and diffs behind them."""
        return service.rules_with_diffs(version)

    @app.get("/hooks/active", dependencies=read, tags=["hooks"])
    def active_hook() -> Dict[str, Any]:
        """The active hook version: manifest and generated source."""
        found = service.active_hook()
        if found is None:
            raise NotFoundError("no hook version is active")
        return found

    @app.get("/hooks/versions", dependencies=read, tags=["hooks"])
    def hook_versions() -> List[Dict[str, Any]]:
        return service.hook_versions()

    @app.get("/hooks/versions/{version}", dependencies=read, tags=["hooks"])
    def hook_version(version: str = Path(pattern=VERSION)) -> Dict[str, Any]:
        return service.hook_version_detail(version)

    @app.post("/hooks/rollback", dependencies=write, tags=["hooks"])
    def hooks_rollback(body: HookRollback) -> Dict[str, Any]:
        """Move the hooks' ACTIVE pointer back (or to ``to``)."""
        return service.rollback_hooks(body.to, reason=body.reason)

    @app.get("/promotions", dependencies=read, tags=["promotions"])
    def promotions() -> List[Dict[str, Any]]:
        """Model + hook promotions and rollbacks, oldest first."""
        return service.promotions()

    @app.post("/promotions/rollback", dependencies=write, tags=["promotions"])
    def promotions_rollback(body: PromotionRollback) -> Dict[str, Any]:
        """Restore the model routing and hooks live before the last promotion."""
        return service.rollback(reason=body.reason)

    @app.get("/cost/estimate", dependencies=read, tags=["cost"])
    def cost_estimate(
        run_id: Optional[str] = Query(None, pattern=RUN_ID),
        token_count: Optional[int] = Query(None, ge=0, le=10**12),
        model: str = Query("gpt-4o-mini-2024-07-18", min_length=1, max_length=200),
        n_epochs: int = Query(3, ge=1, le=50),
        max_budget_usd: Optional[float] = Query(None, ge=0, le=1e9),
    ) -> Dict[str, Any]:
        """Fine-tuning cost of a run's golden data or of a token count, with ``within_budget``."""
        return service.cost_estimate(run_id, token_count, model, n_epochs, max_budget_usd)

    @app.get("/health", dependencies=read, tags=["meta"])
    def health() -> Dict[str, Any]:
        return {"ok": True, "busy": app.state.runs.busy}

    return app


class _AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
