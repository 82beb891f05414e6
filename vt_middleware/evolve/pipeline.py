"""TrainingPipeline: extract -> synthesize -> prepare -> train (+wait) -> evaluate -> promote.

Each stage (a function of :mod:`.stages` over the run's :class:`~.stages.RunContext`) is
reported to the monitor (``evolve.monitor.PipelineMonitor`` callbacks, stage names from
``STAGES``) and to the run record (``run_records.py``). A failing stage is recorded, reported
and re-raised with its own clear message; a stage with nothing to do (no golden data, no
feedback, no trainer) is marked ``skipped`` with the reason.

Held-out data: a deterministic share of the golden examples and of the feedback pairs is kept
out of training and synthesis and used only by the evaluation gate, which scores four rows
(incumbent, new hooks only, new model only, both) and says which parts to promote. The
fine-tuning set is the golden training rows plus the training corrections (request -> fixed
answer, ``correction_repeats`` times each). When the gate rejects hooks that include prompt
rules, the output rules alone are synthesised as a new hook version and judged once more
(the model's earlier answers are reused): added guidance can derail a small model while the
output fixes still help.

One pipeline object runs one cycle at a time: a second ``run`` while one is in progress
raises :class:`PipelineBusyError` (use one pipeline per concurrent job).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence

from ..errors import DataError, VTError
from ..types import FeedbackPair
from . import stages
from .gate import EvaluationGate, feedback_key, split_holdout
from .protocols import Extractor, Gate, JSONDict, Monitor, Promoter, Trainer
from .run_records import RunRecorder, error_text
from .stages import PipelineParts, RunContext, StageSkipped

if TYPE_CHECKING:
    from openai import OpenAI

GOLDEN_FILE, TRAIN_FILE, HOLDOUT_FILE = stages.GOLDEN_FILE, stages.TRAIN_FILE, stages.HOLDOUT_FILE
StageFunction = Callable[[RunContext], JSONDict]


class PipelineBusyError(VTError):
    """``run`` was called while the same pipeline object was running."""


def _redacted(pair: FeedbackPair) -> FeedbackPair:
    from ..redaction import redact_value

    return FeedbackPair.from_dict(redact_value(pair.to_dict()))


class TrainingPipeline:
    """One evolution cycle for one function (seed API: ``TrainingPipeline(...).run(...)``)."""

    def __init__(
        self,
        extractor: Extractor,
        synthesizer_output_dir: Optional[str | os.PathLike[str]] = None,
        trainer: Optional[Trainer] = None,
        monitor: Optional[Monitor] = None,
        gate: Optional[Gate] = None,
        *,
        base_model: Optional[str] = None,
        hyperparameters: Optional[Dict[str, Any]] = None,
        eval_client: Optional[OpenAI] = None,
        promoter: Optional[Promoter] = None,
        auto_promote: bool = True,
        min_train_examples: int = 1,
        correction_repeats: int = 1,
        train_timeout: Optional[float] = 3600.0,
        poll_interval: float = 1.0,
        synthesis_options: Optional[Dict[str, Any]] = None,
        state_dir: Optional[str | os.PathLike[str]] = None,
    ) -> None:
        self.extractor = extractor
        self.synthesizer_output_dir = synthesizer_output_dir
        self.trainer = trainer
        self.monitor = monitor
        gate = gate if gate is not None else EvaluationGate()
        if isinstance(gate, EvaluationGate) and gate.client is None:  # OpenAITrainer's client can judge its model
            gate.client = eval_client if eval_client is not None else getattr(trainer, "client", None)
        self.gate = gate
        self.base_model = base_model or getattr(trainer, "model", None) or getattr(trainer, "base_model", None)
        self.hyperparameters = dict(hyperparameters or {})
        self._promoter = promoter
        self.auto_promote = auto_promote
        self.min_train_examples = min_train_examples
        if correction_repeats < 0:
            raise DataError(f"correction_repeats must be >= 0, got {correction_repeats}")
        self.correction_repeats = correction_repeats
        self.train_timeout = train_timeout
        self.poll_interval = poll_interval
        self.synthesis_options = dict(synthesis_options or {})
        self.state_dir = state_dir
        self.last_run_id: Optional[str] = None
        self.last_result: Optional[JSONDict] = None
        self._busy = threading.Lock()
        if trainer is not None and monitor is not None and getattr(trainer, "monitor", None) is None:
            trainer.monitor = monitor  # training progress and the cost estimate reach the dashboard

    @property
    def promoter(self) -> Promoter:
        if self._promoter is None:
            from .swap import get_promoter

            return get_promoter()
        return self._promoter

    @property
    def hooks_dir(self) -> Path:
        if self.synthesizer_output_dir is None:
            from ..config import get_config

            return Path(get_config().hooks_dir)
        return Path(self.synthesizer_output_dir)

    def parts(self) -> PipelineParts:
        """This pipeline's collaborators and settings, as a run sees them."""
        return PipelineParts(
            extractor=self.extractor,
            gate=self.gate,
            promoter=self.promoter,
            hooks_dir=self.hooks_dir,
            trainer=self.trainer,
            monitor=self.monitor,
            base_model=self.base_model,
            hyperparameters=dict(self.hyperparameters),
            synthesis_options=dict(self.synthesis_options),
            auto_promote=self.auto_promote,
            min_train_examples=self.min_train_examples,
            correction_repeats=self.correction_repeats,
            train_timeout=self.train_timeout,
            poll_interval=self.poll_interval,
        )

    # --- the run -------------------------------------------------------------------------
    def run(
        self,
        function_name: str,
        feedback_pairs: Optional[Sequence[FeedbackPair]] = None,
        output_dir: str | os.PathLike[str] = "./output",
        trigger: str = "manual",
    ) -> JSONDict:
        """Run every stage; return the seed's result keys plus counts, rules, cost, gate, promoted.
        A failing stage is recorded in the run record and its error re-raised."""
        if not isinstance(function_name, str) or not function_name:
            raise DataError(f"function_name must be a non-empty string, got {function_name!r}")
        if not self._busy.acquire(blocking=False):
            raise PipelineBusyError(
                f"this TrainingPipeline is already running {self.last_run_id}; "
                f"runs of one pipeline object do not overlap (wait for it, or use "
                f"another TrainingPipeline)"
            )
        try:
            return self._run(function_name, feedback_pairs, Path(output_dir), trigger)
        finally:
            self._busy.release()

    def _run(
        self, function_name: str, feedback_pairs: Optional[Sequence[FeedbackPair]], out: Path, trigger: str
    ) -> JSONDict:
        record = RunRecorder(function_name, self.state_dir, trigger=trigger)
        self.last_run_id = record.run_id
        out.mkdir(parents=True, exist_ok=True)
        result: JSONDict = {
            "run_id": record.run_id,
            "function_name": function_name,
            "status": "running",
            "train": {"status": "skipped", "fine_tuned_model": None},
            "golden_data_path": None,
            "hook_script_path": None,
            "hook_version": None,
            "hook_estimate": None,
            "steady": 0,
            "anomalies": 0,
            "golden_examples": 0,
            "train_examples": 0,
            "holdout_examples": 0,
            "feedback_pairs": 0,
            "rules": [],
            "cost": None,
            "gate": None,
            "promoted": False,
            "promoted_parts": [],
            "skipped": {},
            "run_dir": str(record.folder),
        }
        ctx = RunContext(self.parts(), function_name, out, record, result)
        try:
            self._stages(ctx, feedback_pairs)
        except BaseException as exc:
            result["status"] = "failed"
            result["error"] = error_text(exc)
            record.finish("failed", result)
            ctx.log(f"run {record.run_id} failed: {error_text(exc)}", "error")
            self.last_result = result
            raise
        result["status"] = "succeeded"
        record.finish("succeeded", result)
        self.last_result = result
        return result

    def _stages(self, ctx: RunContext, feedback_pairs: Optional[Sequence[FeedbackPair]]) -> None:
        pairs = list(feedback_pairs) if feedback_pairs is not None else self._stored_feedback(ctx.function_name)
        pairs = [_redacted(p) for p in pairs]  # secrets never become hook literals or run records
        ctx.feedback_train, ctx.feedback_holdout = split_holdout(pairs, self.gate.config.holdout_fraction, feedback_key)
        ctx.result["feedback_pairs"] = len(pairs)
        for name, stage, total in (
            ("extract", stages.extract, None),
            ("synthesize", stages.synthesize, None),
            ("prepare", stages.prepare, 1),
            ("train", stages.train, None),
            ("evaluate", stages.evaluate, None),
            ("promote", stages.promote, None),
        ):
            self._stage(ctx, name, stage, total)

    @staticmethod
    def _stored_feedback(function_name: str) -> list[FeedbackPair]:
        from ..store.executions import get_store

        return get_store().list_feedback(function_name)

    @staticmethod
    def _stage(ctx: RunContext, name: str, stage: StageFunction, total: Optional[int]) -> None:
        """Run one stage with its record and monitor events."""
        ctx.record.stage_start(name)
        ctx.notify("on_stage_start", name, total)
        try:
            summary = stage(ctx)
        except StageSkipped as skip:
            ctx.result["skipped"][name] = str(skip)
            ctx.record.stage_end(name, "skipped", {"skipped": True, "reason": str(skip)})
            ctx.notify("on_stage_complete", name, {"skipped": True, "reason": str(skip)})
            return
        except BaseException as exc:
            ctx.record.stage_end(name, "failed", error=exc)
            ctx.notify("on_stage_error", name, exc)
            raise
        ctx.record.stage_end(name, "succeeded", summary)
        ctx.notify("on_stage_complete", name, summary)
