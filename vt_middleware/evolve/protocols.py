"""What the evolution pipeline needs from its collaborators, as structural types.

Any object with these methods fits: the seed-compatible ``DensityBasedExtractor``, the
trainers of ``vt_middleware.train``, ``evolve.monitor.PipelineMonitor`` and its
dashboards, :class:`~.swap.Promoter` and :class:`~.gate.EvaluationGate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Protocol, Sequence, Tuple, Union

from ..runtime.hooks import LoadedHooks
from ..types import FeedbackPair

if TYPE_CHECKING:  # the gate module imports this one
    from openai import OpenAI

    from .gate import Contender, GateConfig, GateDecision

JSONDict = Dict[str, Any]
AnswerCache = Dict[Tuple[str, str], str]  # (model, messages as JSON) -> answer


class Monitor(Protocol):
    """Receives a run's progress (stage names: ``evolve.monitor.STAGES``)."""

    def on_stage_start(self, stage: str, total: Optional[int] = None) -> None: ...

    def on_stage_progress(
        self,
        stage: str,
        completed: int,
        total: Optional[int] = None,
        message: str = "",
        metrics: Optional[JSONDict] = None,
    ) -> None: ...

    def on_stage_complete(self, stage: str, result: Optional[JSONDict] = None) -> None: ...

    def on_stage_error(self, stage: str, error: Union[BaseException, str]) -> None: ...

    def on_log(self, message: str, level: str = "info") -> None: ...


class Extractor(Protocol):
    """Selects one function's golden data from its captured calls (the seed's extractor)."""

    def select_steady_state(self, function_name: str) -> Sequence[Any]: ...

    def select_anomalies(self, function_name: str) -> Sequence[Any]: ...

    def extract_golden_data(self, function_name: str, output_path: str) -> Optional[str]: ...


class Trainer(Protocol):
    """A fine-tuning backend: stage a ChatML file, start a job, wait for its result."""

    monitor: Any

    def prepare_data(self, jsonl_path: str) -> str: ...

    def start_training(self, file_id: str, model: str, hyperparameters: Optional[JSONDict] = None) -> str: ...

    def wait(self, job_id: str, poll_interval: float = 2.0, timeout: Optional[float] = 3600.0) -> JSONDict: ...


class Promoter(Protocol):
    """Makes (model route, hook version) live in one step and records the promotion."""

    def promote(
        self,
        base_model: Optional[str],
        fine_tuned_model: Optional[str],
        hook_version: Optional[str],
        *,
        hooks: Optional[LoadedHooks] = None,
        hooks_dir: Optional[Union[str, Path]] = None,
        run_id: Optional[str] = None,
        reason: str = "promote",
    ) -> JSONDict: ...


class Gate(Protocol):
    """Scores a candidate against the incumbent on held-out data and decides what to promote."""

    @property
    def config(self) -> GateConfig: ...

    @property
    def client(self) -> Optional[OpenAI]: ...

    def evaluate(
        self,
        candidate: Contender,
        incumbent: Contender,
        golden_holdout: Sequence[JSONDict] = (),
        feedback_holdout: Sequence[FeedbackPair] = (),
        cache: Optional[AnswerCache] = None,
        *,
        function_name: str = "",
    ) -> GateDecision: ...
