"""OpenAITrainer: fine-tuning through the ``openai`` SDK (api.openai.com or any compatible
server, such as vt_middleware's local one via ``base_url``).

The cost guard runs before any request: the JSONL is validated and priced locally, and
:class:`BudgetExceededError` is raised when the estimate is over ``max_budget_usd``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ..chatml import ValidationReport, validate_chat_jsonl
from ..errors import ConfigError, DataError, TrainingError
from .base import BaseTrainer
from .cost import CostEstimate, check_budget, estimate_from_counts, resolve_epochs

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"


class OpenAITrainer(BaseTrainer):
    """Upload, start, poll and cancel fine-tuning jobs with the real ``openai`` SDK."""

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        max_budget_usd: Optional[float] = None,
        n_epochs: Union[int, str] = "auto",
        model: str = DEFAULT_MODEL,
        client: Any = None,
        monitor: Any = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        if max_budget_usd is not None and max_budget_usd < 0:
            raise ConfigError(f"max_budget_usd must be >= 0 or None, got {max_budget_usd}")
        resolve_epochs(n_epochs, 1)  # rejects a bad value now, not at the first job
        self.max_budget_usd = max_budget_usd
        self.n_epochs = n_epochs
        self.model = model
        self.monitor = monitor
        self.last_estimate: Optional[CostEstimate] = None
        self._reports: Dict[str, ValidationReport] = {}
        if client is None:
            key = api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                raise ConfigError(
                    "no OpenAI API key: pass OpenAITrainer(api_key=...) or set the OPENAI_API_KEY environment variable"
                )
            from openai import OpenAI

            client = OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self.client = client

    # --- cost guard -----------------------------------------------------------------
    def estimate(
        self, report: ValidationReport, model: str, n_epochs: Union[int, str, None] = None
    ) -> Optional[CostEstimate]:
        """Price a validated file for ``model``; logs the estimate and enforces the budget.
        With no budget an unknown model only skips the estimate."""
        epochs = self.n_epochs if n_epochs is None else n_epochs
        try:
            estimate = estimate_from_counts(model, report.n_examples, report.n_tokens, epochs)
        except ConfigError:
            if self.max_budget_usd is not None:
                raise
            self._log(f"no price known for {model!r}; cost estimate skipped (no budget set)", level="warning")
            return None
        self.last_estimate = estimate
        self._log(estimate.summary())
        check_budget(estimate, self.max_budget_usd)
        return estimate

    # --- BaseTrainer ----------------------------------------------------------------
    def prepare_data(self, jsonl_path: Union[str, Path], model: Optional[str] = None) -> str:
        """Validate and price ``jsonl_path`` locally, then upload it (purpose ``fine-tune``)."""
        report = validate_chat_jsonl(jsonl_path, model=model or self.model).raise_if_invalid()
        self.estimate(report, model or self.model)
        with open(jsonl_path, "rb") as handle:
            uploaded = self._call(
                "upload the training file",
                self.client.files.create,
                file=(Path(jsonl_path).name, handle),
                purpose="fine-tune",
            )
        self._reports[uploaded.id] = report
        self._log(f"uploaded {jsonl_path} as {uploaded.id} ({report.n_examples} examples)")
        return uploaded.id

    def start_training(
        self,
        file_id: str,
        model: Optional[str] = None,
        hyperparameters: Optional[Dict[str, Any]] = None,
        suffix: Optional[str] = None,
        validation_file: Optional[str] = None,
        seed: Optional[int] = None,
    ) -> str:
        """Create a fine-tuning job; the budget is checked again for this model and epochs."""
        model = model or self.model
        hyper = dict(hyperparameters or {})
        hyper.setdefault("n_epochs", self.n_epochs)
        report = self._reports.get(file_id)
        if report is None and self.max_budget_usd is not None:
            report = self._report_of_remote_file(file_id, model)
        if report is not None:
            self.estimate(report, model, hyper["n_epochs"])
        kwargs: Dict[str, Any] = {"model": model, "training_file": file_id, "hyperparameters": hyper}
        if suffix:
            kwargs["suffix"] = suffix
        if validation_file:
            kwargs["validation_file"] = validation_file
        if seed is not None:
            kwargs["seed"] = seed
        job = self._call("create the fine-tuning job", self.client.fine_tuning.jobs.create, **kwargs)
        self._log(f"fine-tuning job {job.id} created for {model} on {file_id}")
        return job.id

    def get_status(self, job_id: str) -> Dict[str, Any]:
        job = self._call("read the fine-tuning job", self.client.fine_tuning.jobs.retrieve, job_id)
        return self._status(job)

    def list_events(self, job_id: str, limit: int = 100) -> List[Dict[str, Any]]:
        """The latest ``limit`` events, oldest first."""
        page = self._call("list the job's events", self.client.fine_tuning.jobs.list_events, job_id, limit=limit)
        events = [e.model_dump() if hasattr(e, "model_dump") else dict(e) for e in page.data]
        return list(reversed(events))  # the API answers newest first

    def cancel(self, job_id: str) -> Dict[str, Any]:
        job = self._call("cancel the fine-tuning job", self.client.fine_tuning.jobs.cancel, job_id)
        self._log(f"fine-tuning job {job_id} cancel requested")
        return self._status(job)

    # --- internals --------------------------------------------------------------------
    @staticmethod
    def _status(job: Any) -> Dict[str, Any]:
        error = getattr(job, "error", None)
        error_dict = error.model_dump() if hasattr(error, "model_dump") else error
        if isinstance(error_dict, dict) and not error_dict.get("message") and not error_dict.get("code"):
            error_dict = None  # OpenAI sends an empty error object for healthy jobs
        hyper = getattr(job, "hyperparameters", None)
        return {
            "job_id": job.id,
            "status": job.status,
            "model": job.model,
            "fine_tuned_model": job.fine_tuned_model,
            "trained_tokens": job.trained_tokens,
            "error": error_dict,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "estimated_finish": getattr(job, "estimated_finish", None),
            "training_file": job.training_file,
            "result_files": list(getattr(job, "result_files", None) or []),
            "hyperparameters": hyper.model_dump() if hasattr(hyper, "model_dump") else hyper,
        }

    def _report_of_remote_file(self, file_id: str, model: str) -> ValidationReport:
        """Download a file uploaded elsewhere and count its tokens (reading is free)."""
        import tempfile

        content = self._call("download the training file", self.client.files.content, file_id)
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as handle:
            handle.write(content.read())
        try:
            return validate_chat_jsonl(handle.name, model=model).raise_if_invalid()
        finally:
            os.unlink(handle.name)

    def _call(self, action: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the SDK, turning its exceptions into vt_middleware errors that say what failed."""
        import openai

        base_url = str(getattr(self.client, "base_url", "") or "the OpenAI API")
        try:
            return method(*args, **kwargs)
        except openai.APIConnectionError as exc:
            raise TrainingError(
                f"could not {action}: the fine-tuning server at {base_url} is unreachable ({exc.__cause__ or exc})"
            ) from exc
        except openai.AuthenticationError as exc:
            raise ConfigError(
                f"could not {action}: the server at {base_url} rejected the API key "
                f"(check OPENAI_API_KEY): {_message(exc)}"
            ) from exc
        except openai.NotFoundError as exc:
            raise TrainingError(f"could not {action}: not found: {_message(exc)}") from exc
        except openai.BadRequestError as exc:
            error = DataError if "file" in _message(exc).lower() else TrainingError
            raise error(f"could not {action}: {_message(exc)}") from exc
        except openai.APIStatusError as exc:
            raise TrainingError(f"could not {action}: HTTP {exc.status_code}: {_message(exc)}") from exc


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc)
