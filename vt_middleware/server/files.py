"""/v1/files of the local OpenAI-compatible server (owned by the train stage).

Files live under ``app.state.data_dir / "files"``: ``<id>.bin`` plus ``<id>.json`` (the
OpenAI file object). Fine-tune uploads are checked with the project's one JSONL validator.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from ..chatml import validate_chat_jsonl
from ..errors import DataError

router = APIRouter()

PURPOSES = (
    "assistants",
    "assistants_output",
    "batch",
    "batch_output",
    "fine-tune",
    "fine-tune-results",
    "vision",
    "user_data",
    "evals",
)


def openai_error(
    status: int,
    message: str,
    param: Optional[str] = None,
    code: Optional[str] = None,
    error_type: str = "invalid_request_error",
) -> JSONResponse:
    """An error body the openai SDK turns into the matching exception with ``message``."""
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


class FileStore:
    """Uploaded files on disk with their OpenAI file objects (thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def add(self, data: bytes, filename: str, purpose: str, status: str = "processed") -> Dict[str, Any]:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": status,
            "expires_at": None,
            "status_details": None,
        }
        with self._lock:
            self.path(file_id).write_bytes(data)
            (self.root / f"{file_id}.json").write_text(json.dumps(obj))
        return obj

    def path(self, file_id: str) -> Path:
        return self.root / f"{Path(file_id).name}.bin"

    def get(self, file_id: str) -> Optional[Dict[str, Any]]:
        meta = self.root / f"{Path(file_id).name}.json"
        return json.loads(meta.read_text()) if meta.exists() else None

    def list(self, purpose: Optional[str] = None) -> List[Dict[str, Any]]:
        objects = [json.loads(p.read_text()) for p in self.root.glob("file-*.json")]
        objects = [o for o in objects if purpose is None or o["purpose"] == purpose]
        return sorted(objects, key=lambda o: (o["created_at"], o["id"]))

    def delete(self, file_id: str) -> bool:
        with self._lock:
            found = self.get(file_id) is not None
            for path in (self.path(file_id), self.root / f"{Path(file_id).name}.json"):
                path.unlink(missing_ok=True)
        return found


def get_file_store(app: Any) -> FileStore:
    """The app's FileStore (created on first use under ``app.state.data_dir``)."""
    store = getattr(app.state, "vt_file_store", None)
    if store is None:
        data_dir = Path(getattr(app.state, "data_dir", None) or tempfile.mkdtemp(prefix="vt-server-"))
        store = FileStore(data_dir / "files")
        app.state.vt_file_store = store
    return store


def validate_fine_tune_bytes(data: bytes) -> Optional[str]:
    """None when ``data`` is valid chat fine-tuning JSONL, else the validator's message."""
    handle = tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False)  # noqa: SIM115 - written in chunks, then moved
    try:
        handle.write(data)
        handle.close()
        report = validate_chat_jsonl(handle.name)
        try:
            report.raise_if_invalid()
        except DataError as exc:
            return str(exc).replace(handle.name, "the uploaded file")
        return None
    finally:
        os.unlink(handle.name)


@router.post("/v1/files")
async def create_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...)) -> Any:
    if purpose not in PURPOSES:
        return openai_error(400, f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r}", param="purpose")
    data = await file.read()
    if purpose == "fine-tune":
        problem = validate_fine_tune_bytes(data)
        if problem is not None:
            return openai_error(
                400, f"Invalid file format for Fine-Tuning API: {problem}", param="file", code="invalid_file_format"
            )
    return get_file_store(request.app).add(data, file.filename or "upload.jsonl", purpose)


@router.get("/v1/files")
def list_files(
    request: Request,
    purpose: Optional[str] = None,
    limit: int = 10_000,
    order: str = "desc",
    after: Optional[str] = None,
) -> Dict[str, Any]:
    objects = get_file_store(request.app).list(purpose)
    if order == "desc":
        objects.reverse()
    if after is not None:
        ids = [o["id"] for o in objects]
        objects = objects[ids.index(after) + 1 :] if after in ids else []
    page = objects[:limit]
    return {
        "object": "list",
        "data": page,
        "has_more": len(objects) > len(page),
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


@router.get("/v1/files/{file_id}")
def retrieve_file(request: Request, file_id: str) -> Any:
    obj = get_file_store(request.app).get(file_id)
    return obj if obj is not None else openai_error(404, f"No such File object: {file_id}", param="id")


@router.get("/v1/files/{file_id}/content")
def file_content(request: Request, file_id: str) -> Any:
    store = get_file_store(request.app)
    if store.get(file_id) is None:
        return openai_error(404, f"No such File object: {file_id}", param="id")
    return Response(content=store.path(file_id).read_bytes(), media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}")
def delete_file(request: Request, file_id: str) -> Any:
    if not get_file_store(request.app).delete(file_id):
        return openai_error(404, f"No such File object: {file_id}", param="id")
    return {"id": file_id, "object": "file", "deleted": True}
