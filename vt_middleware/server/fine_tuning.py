"""/v1/fine_tuning/jobs of the local OpenAI-compatible server (owned by the train stage).

Jobs run in the background on a :class:`LocalTrainer` (LoRA on CPU). Statuses and
events follow OpenAI's; a succeeded job's model is registered with ``app.state.backend``
and so listed by /v1/models and served by /v1/chat/completions. A base model the server
does not have (``gpt-4o-mini-2024-07-18``) trains the server's default local model; the job
keeps the requested name in ``model`` and the trained one in ``base_model``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from ..errors import VTError
from ..train.local_models import BASE_MODEL_IDS, SMOLLM2_ID
from ..train.local_trainer import LocalJob, LocalTrainer
from .files import get_file_store, openai_error

router = APIRouter()
_service_lock = threading.Lock()


class CreateJobRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    training_file: str
    hyperparameters: Optional[Dict[str, Any]] = None
    method: Optional[Dict[str, Any]] = None
    suffix: Optional[str] = None
    validation_file: Optional[str] = None
    seed: Optional[int] = None
    metadata: Optional[Dict[str, str]] = None


def default_base_model(backend: Any) -> str:
    """The local model the server fine-tunes when asked for one it does not have."""
    for attribute in ("default_model", "base_model", "default_model_id"):
        value = getattr(backend, attribute, None)
        if isinstance(value, str) and value in BASE_MODEL_IDS:
            return value
    try:
        served = [
            m if isinstance(m, str) else (m.get("id") if isinstance(m, dict) else getattr(m, "id", None))
            for m in backend.list_models()
        ]
    except Exception:  # noqa: BLE001 - any backend without a list falls back to SmolLM2
        served = []
    for model_id in served:
        if model_id in BASE_MODEL_IDS:
            return model_id
    return SMOLLM2_ID


class FineTuningService:
    """The app's LocalTrainer, its job metadata and the files its results became."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.files = get_file_store(app)
        backend = getattr(app.state, "backend", None)
        options = dict(getattr(app.state, "train_options", None) or {})
        options.setdefault("base_model", default_base_model(backend))
        self.trainer = LocalTrainer(
            Path(self.files.root).parent / "fine_tuning", file_resolver=self.files.path, **options
        )
        if backend is not None and hasattr(backend, "register_model"):
            self.trainer.register_with(backend)
        self.metadata: Dict[str, Dict[str, Any]] = {}
        self.result_files: Dict[str, str] = {}
        self._lock = threading.Lock()

    def job_object(self, job: LocalJob) -> Dict[str, Any]:
        """The OpenAI ``fine_tuning.job`` object of ``job``."""
        status = job.status_dict()
        if status["status"] == "succeeded" and job.results_path is not None:
            with self._lock:
                if job.id not in self.result_files:
                    obj = self.files.add(job.results_path.read_bytes(), "step_metrics.csv", "fine-tune-results")
                    self.result_files[job.id] = obj["id"]
        hyper = status["hyperparameters"]
        return {
            "id": job.id,
            "object": "fine_tuning.job",
            "created_at": job.created_at,
            "error": status["error"],
            "fine_tuned_model": status["fine_tuned_model"],
            "finished_at": status["finished_at"],
            "hyperparameters": hyper,
            "model": job.model,
            "base_model": job.base_model,
            "organization_id": "org-vt-local",
            "result_files": [self.result_files[job.id]] if job.id in self.result_files else [],
            "seed": job.seed,
            "status": status["status"],
            "trained_tokens": status["trained_tokens"],
            "training_file": job.training_file,
            "validation_file": job.validation_file,
            "estimated_finish": None,
            "integrations": [],
            "metadata": self.metadata.get(job.id),
            "user_provided_suffix": job.suffix,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        }


def get_service(app: Any) -> FineTuningService:
    with _service_lock:
        service = getattr(app.state, "vt_fine_tuning", None)
        if service is None:
            service = FineTuningService(app)
            app.state.vt_fine_tuning = service
        return service


def _page(items: List[Dict[str, Any]], after: Optional[str], limit: int) -> Dict[str, Any]:
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[: max(1, limit)]
    return {"object": "list", "data": page, "has_more": len(items) > len(page)}


def _check_file(service: FineTuningService, file_id: str, param: str) -> Optional[Any]:
    obj = service.files.get(file_id)
    if obj is None:
        return openai_error(400, f"invalid {param}: no such file {file_id!r}", param=param, code="invalid_file")
    if obj["purpose"] != "fine-tune":
        return openai_error(
            400,
            f"invalid {param}: file {file_id} has purpose {obj['purpose']!r}, expected 'fine-tune'",
            param=param,
            code="invalid_file_purpose",
        )
    return None


@router.post("/v1/fine_tuning/jobs")
def create_job(request: Request, body: CreateJobRequest) -> Any:
    service = get_service(request.app)
    for file_id, param in ((body.training_file, "training_file"), (body.validation_file, "validation_file")):
        problem = _check_file(service, file_id, param) if file_id else None
        if problem is not None:
            return problem
    if body.suffix is not None and len(body.suffix) > 64:
        return openai_error(400, "suffix must be at most 64 characters", param="suffix")
    hyperparameters = dict(body.hyperparameters or {})
    supervised = ((body.method or {}).get("supervised") or {}).get("hyperparameters")
    hyperparameters.update(supervised or {})
    try:
        job_id = service.trainer.start_training(
            body.training_file,
            model=body.model,
            hyperparameters=hyperparameters,
            suffix=body.suffix,
            validation_file=body.validation_file,
            seed=body.seed,
        )
    except VTError as exc:
        return openai_error(400, str(exc), param="hyperparameters")
    service.metadata[job_id] = dict(body.metadata or {}) or None  # type: ignore[assignment]
    job = service.trainer.get_job(job_id)
    from .aliases import alias_job_model  # aliases imports this module

    alias_job_model(getattr(request.app.state, "backend", None), job.model, job.base_model)
    return service.job_object(job)


@router.get("/v1/fine_tuning/jobs")
def list_jobs(request: Request, after: Optional[str] = None, limit: int = 20) -> Dict[str, Any]:
    service = get_service(request.app)
    jobs = [service.job_object(job) for job in reversed(service.trainer.list_jobs())]
    return _page(jobs, after, limit)


def _find(request: Request, job_id: str) -> Tuple[FineTuningService, Any]:
    """The service and the job, or (service, the 404 response to return) when there is none."""
    service = get_service(request.app)
    try:
        return service, service.trainer.get_job(job_id)
    except VTError:
        return service, openai_error(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")


@router.get("/v1/fine_tuning/jobs/{job_id}")
def retrieve_job(request: Request, job_id: str) -> Any:
    service, job = _find(request, job_id)
    return service.job_object(job) if isinstance(job, LocalJob) else job


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
def list_events(request: Request, job_id: str, after: Optional[str] = None, limit: int = 20) -> Any:
    service, job = _find(request, job_id)
    if not isinstance(job, LocalJob):
        return job
    events = list(reversed(service.trainer.list_events(job_id, limit=100_000)))  # newest first, as OpenAI
    return _page(events, after, limit)


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: str) -> Any:
    service, job = _find(request, job_id)
    if not isinstance(job, LocalJob):
        return job
    if job.status in ("succeeded", "failed", "cancelled"):
        return openai_error(
            400, f"Job {job_id} is already {job.status}; it cannot be cancelled", param="fine_tuning_job_id"
        )
    service.trainer.cancel(job_id)
    return service.job_object(job)
