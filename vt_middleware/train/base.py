"""BaseTrainer: the strategy interface every fine-tuning backend implements.

prepare_data -> start_training -> get_status / get_result, plus cancel, events and
:meth:`BaseTrainer.wait` (polling with backoff, progress to a callback and the monitor).
Job statuses follow OpenAI: validating_files, queued, running, succeeded, failed, cancelled.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Optional

from ..errors import TrainingError

logger = logging.getLogger("vt_middleware.train")

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
ProgressCallback = Callable[[Dict[str, Any], List[Dict[str, Any]]], None]

_STEP_MESSAGE = re.compile(r"Step\s+(\d+)(?:/(\d+))?:\s*training loss\s*=\s*([0-9.eE+-]+)", re.IGNORECASE)


def step_metrics(event: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``{"step", "total_steps", "train_loss", ...}`` from a metrics event, else None.
    Reads the event's ``data`` (OpenAI's shape) and falls back to its message text."""
    data = event.get("data")
    if isinstance(data, dict) and "step" in data and ("train_loss" in data or "metrics" in data):
        metrics = dict(data.get("metrics") or {})
        metrics.update({k: v for k, v in data.items() if k != "metrics"})
        return metrics
    match = _STEP_MESSAGE.search(str(event.get("message") or ""))
    if match:
        step, total, loss = match.groups()
        return {"step": int(step), "total_steps": int(total) if total else None, "train_loss": float(loss)}
    return None


class BaseTrainer(ABC):
    """A fine-tuning backend (OpenAI API, local LoRA, ...). Seed-compatible names."""

    monitor: Any = None

    @abstractmethod
    def prepare_data(self, jsonl_path: str) -> str:
        """Validate and upload/stage a chat JSONL file; returns its file id."""

    @abstractmethod
    def start_training(
        self, file_id: str, model: str, hyperparameters: Optional[Dict[str, Any]] = None, suffix: Optional[str] = None
    ) -> str:
        """Start a fine-tuning job; returns its job id."""

    @abstractmethod
    def get_status(self, job_id: str) -> Dict[str, Any]:
        """``{"job_id", "status", "model", "fine_tuned_model", "trained_tokens", "error", ...}``."""

    @abstractmethod
    def cancel(self, job_id: str) -> Dict[str, Any]:
        """Ask the backend to cancel; returns the status after the request."""

    def list_events(self, job_id: str, limit: int = 100) -> List[Dict[str, Any]]:
        """The job's most recent events, oldest first (``id, created_at, level, message, type, data``)."""
        return []

    def get_result(self, job_id: str) -> Dict[str, Any]:
        """``{"job_id", "status", "fine_tuned_model", "metrics", ...}``; ``fine_tuned_model`` is None
        until the job succeeded. ``metrics`` holds the last step's values and the loss curve."""
        status = self.get_status(job_id)
        losses = [m for m in (step_metrics(e) for e in self.list_events(job_id)) if m and "train_loss" in m]
        metrics: Dict[str, Any] = {"steps": len(losses), "train_loss_curve": [m["train_loss"] for m in losses]}
        if losses:
            metrics["final_train_loss"] = losses[-1]["train_loss"]
            metrics["first_train_loss"] = losses[0]["train_loss"]
        return {**status, "metrics": metrics}

    # --- waiting ----------------------------------------------------------------
    def wait(
        self,
        job_id: str,
        poll_interval: float = 2.0,
        timeout: Optional[float] = 3600.0,
        on_progress: Optional[ProgressCallback] = None,
        max_poll_interval: float = 30.0,
        backoff: float = 1.5,
    ) -> Dict[str, Any]:
        """Poll until the job ends; return :meth:`get_result`. The interval grows by ``backoff``
        while nothing new happens and resets on new events. Raises :class:`TrainingError`
        when the job failed, was cancelled, or ``timeout`` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: set = set()
        interval = poll_interval
        while True:
            status = self.get_status(job_id)
            new_events = [e for e in self._safe_events(job_id) if e.get("id") not in seen]
            seen.update(e.get("id") for e in new_events)
            self._report(status, new_events)
            if on_progress is not None:
                on_progress(status, new_events)
            state = status.get("status")
            if state == "succeeded":
                return self.get_result(job_id)
            if state == "failed":
                error = status.get("error") or {}
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise TrainingError(f"fine-tuning job {job_id} failed: {message or 'no reason given'}")
            if state == "cancelled":
                raise TrainingError(f"fine-tuning job {job_id} was cancelled")
            if deadline is not None and time.monotonic() >= deadline:
                raise TrainingError(
                    f"fine-tuning job {job_id} still {state} after {timeout:.0f}s; "
                    f"keep waiting with wait() or stop it with cancel()"
                )
            interval = poll_interval if new_events else min(max_poll_interval, interval * backoff)
            sleep_for = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            time.sleep(sleep_for)

    def _safe_events(self, job_id: str) -> List[Dict[str, Any]]:
        try:
            return self.list_events(job_id)
        except TrainingError:
            raise
        except Exception as exc:  # noqa: BLE001 - events are progress only; the status poll decides
            logger.debug("listing events of %s failed: %s", job_id, exc)
            return []

    def _report(self, status: Dict[str, Any], events: List[Dict[str, Any]]) -> None:
        """Forward new step metrics and messages to the monitor (never raises into training)."""
        monitor = self.monitor
        if monitor is None:
            return
        try:
            for event in events:
                metrics = step_metrics(event)
                if metrics is not None:
                    monitor.on_stage_progress(
                        "train",
                        int(metrics["step"]),
                        metrics.get("total_steps"),
                        message=str(event.get("message") or ""),
                        metrics={k: v for k, v in metrics.items() if k not in ("step", "total_steps")},
                    )
                else:
                    monitor.on_log(str(event.get("message") or ""), level=str(event.get("level") or "info"))
        except Exception as exc:  # noqa: BLE001 - a dashboard bug must not stop training
            from ..health import record_internal_error

            record_internal_error("train.monitor", exc)

    def _log(self, message: str, level: str = "info") -> None:
        logger.log(logging.WARNING if level == "warning" else logging.INFO, message)
        if self.monitor is not None:
            try:
                self.monitor.on_log(message, level=level)
            except Exception as exc:  # noqa: BLE001
                from ..health import record_internal_error

                record_internal_error("train.monitor", exc)
