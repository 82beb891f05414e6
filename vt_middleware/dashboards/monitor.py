"""PipelineMonitor: the callbacks a pipeline run reports through.

Stages, in order: extract, synthesize, prepare, train, evaluate, promote.
The base class ignores everything; dashboards override what they show.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Union

STAGES = ("extract", "synthesize", "prepare", "train", "evaluate", "promote")


class PipelineMonitor:
    """Receives a pipeline's progress. Subclass and override what you need."""

    def on_stage_start(self, stage: str, total: Optional[int] = None) -> None:
        """``stage`` began; ``total`` is the number of steps when known."""

    def on_stage_progress(
        self,
        stage: str,
        completed: int,
        total: Optional[int] = None,
        message: str = "",
        metrics: Optional[Dict[str, Any]] = None,
    ) -> None:
        """``completed`` of ``total`` steps done; ``metrics`` e.g. ``{"train_loss": 0.8}``."""

    def on_stage_complete(self, stage: str, result: Optional[Dict[str, Any]] = None) -> None:
        """``stage`` finished; ``result`` is a small JSON-able summary."""

    def on_stage_error(self, stage: str, error: Union[BaseException, str]) -> None:
        """``stage`` failed."""

    def on_log(self, message: str, level: str = "info") -> None:
        """A free-form line (cost estimate, gate decision, ...)."""
