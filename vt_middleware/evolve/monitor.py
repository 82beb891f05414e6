"""PipelineMonitor: the callbacks a pipeline run reports through, and the state they leave.

Stages, in order: extract, synthesize, prepare, train, evaluate, promote.
The base class keeps the seed's state (``current_stage``, ``stage_results``, ``logs``,
``summary()``); dashboards override what they show and call ``super()`` to keep it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Union

from ..types import utc_now_iso

STAGES = ("extract", "synthesize", "prepare", "train", "evaluate", "promote")


class PipelineMonitor:
    """Receives a pipeline's progress and remembers it. Subclass and override what you need.

    ``stage_results[stage]``: ``{"status": running|succeeded|skipped|failed, "result",
    "error", "started_at", "duration_s", "progress"}``; ``logs``: ``{"at", "level", "stage",
    "message"}`` dicts; ``current_stage``: the stage running now (None between stages).
    """

    def __init__(self) -> None:
        self._ensure_state()

    def _ensure_state(self) -> threading.RLock:
        if "_monitor_lock" not in self.__dict__:  # subclasses that skip __init__ still get state
            self._monitor_lock = threading.RLock()
            self.current_stage: Optional[str] = None
            self.stage_results: Dict[str, Dict[str, Any]] = {}
            self.logs: List[Dict[str, Any]] = []
            self._stage_t0: Dict[str, float] = {}
        return self._monitor_lock

    def on_stage_start(self, stage: str, total: Optional[int] = None) -> None:
        """``stage`` began; ``total`` is the number of steps when known."""
        with self._ensure_state():
            self.current_stage = stage
            self._stage_t0[stage] = time.monotonic()
            self.stage_results[stage] = {
                "status": "running",
                "result": None,
                "error": None,
                "started_at": utc_now_iso(),
                "duration_s": None,
                "progress": {"completed": 0, "total": total},
            }

    def on_stage_progress(
        self,
        stage: str,
        completed: int,
        total: Optional[int] = None,
        message: str = "",
        metrics: Optional[Dict[str, Any]] = None,
    ) -> None:
        """``completed`` of ``total`` steps done; ``metrics`` e.g. ``{"train_loss": 0.8}``."""
        with self._ensure_state():
            entry = self.stage_results.setdefault(
                stage,
                {
                    "status": "running",
                    "result": None,
                    "error": None,
                    "started_at": utc_now_iso(),
                    "duration_s": None,
                    "progress": {},
                },
            )
            progress = entry.setdefault("progress", {})
            progress.update(completed=completed, message=message)
            if total is not None:
                progress["total"] = total
            if metrics:
                progress["metrics"] = {**progress.get("metrics", {}), **metrics}

    def on_stage_complete(self, stage: str, result: Optional[Dict[str, Any]] = None) -> None:
        """``stage`` finished; ``result`` is a small JSON-able summary."""
        self._stage_end(stage, "skipped" if (result or {}).get("skipped") else "succeeded", result=result)

    def on_stage_error(self, stage: str, error: Union[BaseException, str]) -> None:
        """``stage`` failed."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._ensure_state():  # state only: subclasses print errors their own way
            self.logs.append(
                {"at": utc_now_iso(), "level": "error", "stage": stage, "message": f"{stage} failed: {text}"}
            )
        self._stage_end(stage, "failed", error=text)

    def on_log(self, message: str, level: str = "info") -> None:
        """A free-form line (cost estimate, gate decision, ...)."""
        with self._ensure_state():
            self.logs.append({"at": utc_now_iso(), "level": level, "stage": self.current_stage, "message": message})

    def summary(self) -> Dict[str, Any]:
        """The state as a dict: current stage, each stage's outcome, counts, errors and logs."""
        with self._ensure_state():
            results = {
                name: {**entry, "progress": dict(entry.get("progress") or {})}
                for name, entry in self.stage_results.items()
            }
            order = [s for s in STAGES if s in results] + [s for s in results if s not in STAGES]
            return {
                "current_stage": self.current_stage,
                "stages": order,
                "stage_results": {name: results[name] for name in order},
                "completed": [s for s in order if results[s]["status"] in ("succeeded", "skipped")],
                "failed": [s for s in order if results[s]["status"] == "failed"],
                "errors": {s: results[s]["error"] for s in order if results[s].get("error")},
                "total_duration_s": round(sum(r.get("duration_s") or 0.0 for r in results.values()), 4),
                "logs": [dict(line) for line in self.logs],
            }

    def _stage_end(
        self, stage: str, status: str, result: Optional[Dict[str, Any]] = None, error: Optional[str] = None
    ) -> None:
        with self._ensure_state():
            entry = self.stage_results.setdefault(stage, {"started_at": utc_now_iso(), "progress": {}})
            t0 = self._stage_t0.pop(stage, None)
            entry.update(
                status=status,
                result=result,
                error=error,
                duration_s=None if t0 is None else round(time.monotonic() - t0, 4),
            )
            if self.current_stage == stage:
                self.current_stage = None
