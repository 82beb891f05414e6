"""TrainingPipeline: extract -> synthesize -> prepare -> train (+wait) -> evaluate -> promote.

Each stage is reported to the monitor (``dashboards.monitor.PipelineMonitor`` callbacks,
stage names from ``STAGES``) and to the run record (``run_records.py``). A failing stage is
recorded, reported and re-raised with its own clear message; a stage with nothing to do
(no golden data, no feedback, no trainer) is marked ``skipped`` with the reason.

Held-out data: a deterministic share of the golden examples and of the feedback pairs is
kept out of training and synthesis and used only by the evaluation gate. When the gate rejects
a candidate whose hooks include prompt rules, the output rules alone are synthesised as a new
hook version and judged once more (the model's earlier answers are reused): added guidance can
derail a small model while the output fixes still help.
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import DataError
from ..runtime.hooks import LoadedHooks
from ..types import FeedbackPair
from .gate import Contender, EvaluationGate, GateDecision, feedback_key, golden_key, split_holdout
from .run_records import RunRecorder, error_text

logger = logging.getLogger("vt_middleware.evolve")

GOLDEN_FILE = "golden_data.jsonl"
TRAIN_FILE = "golden_train.jsonl"
HOLDOUT_FILE = "golden_holdout.jsonl"


class _Skip(Exception):
    """Raised inside a stage block to mark it skipped (with the reason)."""


def _read_jsonl(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: Sequence[Dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _redacted(pair: FeedbackPair) -> FeedbackPair:
    from ..redaction import redact_value

    return FeedbackPair.from_dict(redact_value(pair.to_dict()))


class TrainingPipeline:
    """One evolution cycle for one function (seed API: ``TrainingPipeline(...).run(...)``)."""

    def __init__(self, extractor: Any, synthesizer_output_dir: Optional[str | os.PathLike] = None,
                 trainer: Any = None, monitor: Any = None, gate: Optional[EvaluationGate] = None, *,
                 base_model: Optional[str] = None, hyperparameters: Optional[Dict[str, Any]] = None,
                 eval_client: Any = None, promoter: Any = None, auto_promote: bool = True,
                 min_train_examples: int = 1, train_timeout: Optional[float] = 3600.0,
                 poll_interval: float = 1.0, synthesis_options: Optional[Dict[str, Any]] = None,
                 state_dir: Optional[str | os.PathLike] = None) -> None:
        self.extractor = extractor
        self.synthesizer_output_dir = synthesizer_output_dir
        self.trainer = trainer
        self.monitor = monitor
        self.gate = gate or EvaluationGate()
        if self.gate.client is None:
            self.gate.client = eval_client if eval_client is not None else getattr(trainer, "client", None)
        self.base_model = base_model or getattr(trainer, "model", None) or getattr(trainer, "base_model", None)
        self.hyperparameters = dict(hyperparameters or {})
        self._promoter = promoter
        self.auto_promote = auto_promote
        self.min_train_examples = min_train_examples
        self.train_timeout = train_timeout
        self.poll_interval = poll_interval
        self.synthesis_options = dict(synthesis_options or {})
        self.state_dir = state_dir
        self.last_run_id: Optional[str] = None
        self.last_result: Optional[Dict[str, Any]] = None
        if trainer is not None and monitor is not None and getattr(trainer, "monitor", None) is None:
            trainer.monitor = monitor  # training progress and the cost estimate reach the dashboard

    @property
    def promoter(self) -> Any:
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

    # --- the run -------------------------------------------------------------------------
    def run(self, function_name: str, feedback_pairs: Optional[Sequence[FeedbackPair]] = None,
            output_dir: str | os.PathLike = "./output", trigger: str = "manual") -> Dict[str, Any]:
        """Run every stage; return the seed's result keys plus counts, rules, cost, gate, promoted.
        A failing stage is recorded in the run record and its error re-raised."""
        if not isinstance(function_name, str) or not function_name:
            raise DataError(f"function_name must be a non-empty string, got {function_name!r}")
        record = RunRecorder(function_name, self.state_dir, trigger=trigger)
        self.last_run_id = record.run_id
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        result: Dict[str, Any] = {
            "run_id": record.run_id, "function_name": function_name, "status": "running",
            "train": {"status": "skipped", "fine_tuned_model": None}, "golden_data_path": None,
            "hook_script_path": None, "hook_version": None, "steady": 0, "anomalies": 0,
            "golden_examples": 0, "train_examples": 0, "holdout_examples": 0, "feedback_pairs": 0,
            "rules": [], "cost": None, "gate": None, "promoted": False, "skipped": {},
            "run_dir": str(record.folder),
        }
        self._result, self._record = result, record
        try:
            self._run_stages(function_name, feedback_pairs, out)
        except BaseException as exc:
            result["status"] = "failed"
            result["error"] = error_text(exc)
            record.finish("failed", result)
            self._log(f"run {record.run_id} failed: {error_text(exc)}", "error")
            self.last_result = result
            raise
        result["status"] = "succeeded"
        record.finish("succeeded", result)
        self.last_result = result
        return result

    def _run_stages(self, function_name: str, feedback_pairs: Optional[Sequence[FeedbackPair]], out: Path) -> None:
        result = self._result
        pairs = list(feedback_pairs) if feedback_pairs is not None else self._stored_feedback(function_name)
        pairs = [_redacted(p) for p in pairs]  # secrets never become hook literals or run records
        holdout_fraction = self.gate.config.holdout_fraction
        pairs_train, pairs_holdout = split_holdout(pairs, holdout_fraction, feedback_key)
        result["feedback_pairs"] = len(pairs)

        with self._stage("extract"):
            golden = self._extract(function_name, out)
            train_rows, holdout_rows = split_holdout(golden, holdout_fraction, golden_key)
            _write_jsonl(out / TRAIN_FILE, train_rows)
            _write_jsonl(out / HOLDOUT_FILE, holdout_rows)
            result.update(golden_examples=len(golden), train_examples=len(train_rows),
                          holdout_examples=len(holdout_rows))
            self._stage_result = {"steady": result["steady"], "anomalies": result["anomalies"],
                                  "golden_examples": len(golden), "train": len(train_rows),
                                  "holdout": len(holdout_rows), "path": result["golden_data_path"]}

        candidate_hooks: Optional[LoadedHooks] = None
        with self._stage("synthesize"):
            if not pairs_train:
                raise _Skip("no feedback pairs to synthesise hooks from" if not pairs else
                            "all feedback pairs are held out for evaluation (need at least 2)")
            candidate_hooks = self._synthesize(pairs_train)
            self._stage_result = {"hook_version": result["hook_version"], "rules": len(result["rules"]),
                                  "path": result["hook_script_path"]}

        fine_tuned = self._prepare_and_train(out)
        self._fine_tuned_for_promotion: Optional[str] = None

        with self._stage("evaluate"):
            cache: Dict[Tuple[str, str], str] = {}
            decision = self._evaluate(fine_tuned, candidate_hooks, holdout_rows, pairs_holdout, cache)
            if not decision.promote and self._has_prompt_rules() and decision.metrics.get("model_evaluated"):
                decision, candidate_hooks = self._retry_without_prompt_rules(
                    decision, candidate_hooks, pairs_train, fine_tuned, holdout_rows, pairs_holdout, cache)
            result["gate"] = decision.to_dict()
            self._record.decide(False, decision.reason, decision.metrics)
            self._log(f"gate: {'promote' if decision.promote else 'keep incumbent'}: {decision.reason}")
            self._stage_result = {"promote": decision.promote, "reason": decision.reason}

        with self._stage("promote"):
            if not decision.promote:
                raise _Skip(decision.reason)
            if not self.auto_promote:
                raise _Skip("auto_promote is off; the candidate passed the gate but was not promoted")
            row = self.promoter.promote(
                self.base_model, self._fine_tuned_for_promotion, result["hook_version"] if candidate_hooks else None,
                hooks=candidate_hooks, hooks_dir=self.hooks_dir, run_id=self._record.run_id,
                reason=f"run {self._record.run_id}: {decision.reason}")
            result["promoted"] = True
            result["promotion"] = row
            self._record.decide(True, decision.reason, decision.metrics)
            self._stage_result = {"promotion_id": row.get("promotion_id"), "routes": row.get("routes"),
                                  "hook_version": row.get("hook_version")}

    # --- stages ----------------------------------------------------------------------------
    def _stored_feedback(self, function_name: str) -> List[FeedbackPair]:
        from ..store.executions import get_store

        return get_store().list_feedback(function_name)

    def _extract(self, function_name: str, out: Path) -> List[Dict[str, Any]]:
        """Golden examples of ``function_name`` (ChatML rows); [] when there is nothing to use."""
        path = out / GOLDEN_FILE
        try:
            steady = self.extractor.select_steady_state(function_name)
            anomalies = self.extractor.select_anomalies(function_name)
            written = self.extractor.extract_golden_data(function_name, str(path))
        except DataError as exc:  # no logs / unusable logs: a defined result, not a failure
            self._result["skipped"]["extract"] = str(exc)
            self._log(f"no golden data for {function_name}: {exc}", "warning")
            _write_jsonl(path, [])
            self._result["golden_data_path"] = str(path)
            return []
        if isinstance(written, (str, os.PathLike)):
            path = Path(written)
        self._result.update(steady=len(steady or []), anomalies=len(anomalies or []), golden_data_path=str(path))
        return _read_jsonl(path)

    def _has_prompt_rules(self) -> bool:
        return any(rule.get("kind") == "prompt" for rule in self._result["rules"])

    def _retry_without_prompt_rules(self, decision: GateDecision, hooks: Optional[LoadedHooks],
                                    pairs: Sequence[FeedbackPair], fine_tuned: Optional[str],
                                    golden_holdout: Sequence[Dict[str, Any]],
                                    feedback_holdout: Sequence[FeedbackPair],
                                    cache: Dict[Tuple[str, str], str]) -> Tuple[GateDecision, Optional[LoadedHooks]]:
        """Prompt rules can derail a small model: judge the output rules alone before giving up.
        Keeps the first candidate (and its decision) unless the output-only one is promoted."""
        kept = {k: self._result[k] for k in ("hook_script_path", "hook_version", "rules")}
        self._log(f"gate: {decision.reason}; trying the candidate without prompt rules")
        try:
            fallback = self._synthesize(pairs, prompt_rules=False)
        except _Skip:
            fallback = None
        retry = self._evaluate(fine_tuned, fallback, golden_holdout, feedback_holdout, cache) if fallback else None
        if retry is None or not retry.promote:
            self._result.update(kept)
            return decision, hooks
        retry.metrics["without_prompt_rules"] = {"first_decision": decision.reason,
                                                 "first_hook_version": kept["hook_version"]}
        return retry, fallback

    def _synthesize(self, pairs: Sequence[FeedbackPair], **overrides: Any) -> Optional[LoadedHooks]:
        from ..synthesize.pipeline import synthesize_version

        options = {**self.synthesis_options, **overrides}
        synthesis = synthesize_version(pairs, self.hooks_dir, activate=False, **options)
        self._result.update(hook_script_path=synthesis.hook_path, hook_version=synthesis.version,
                            rules=[r.to_dict() for r in synthesis.rules])
        if not synthesis.rules:
            raise _Skip(f"no rule generalised from {len(pairs)} feedback pair(s); "
                        f"hook version {synthesis.version} is a pass-through and is not a candidate")
        if not synthesis.validation.get("ok", True):
            raise _Skip(f"hook version {synthesis.version} failed validation: {synthesis.validation}")
        return LoadedHooks.from_file(Path(synthesis.hook_path), synthesis.version)

    def _prepare_and_train(self, out: Path) -> Optional[str]:
        result = self._result
        reason = None
        if self.trainer is None:
            reason = "no trainer configured"
        elif result["train_examples"] < self.min_train_examples:
            reason = (f"empty golden set: {result['train_examples']} training example(s), "
                      f"need at least {self.min_train_examples}; training skipped")
            if result["skipped"].get("extract"):
                reason += f" ({result['skipped']['extract']})"
        file_id = None
        with self._stage("prepare", total=1):
            if reason:
                result["train"] = {"status": "skipped", "fine_tuned_model": None, "reason": reason}
                raise _Skip(reason)
            file_id = self._prepare_data(out / TRAIN_FILE)
            result["cost"] = self._cost(out / TRAIN_FILE)
            if result["cost"] and result["cost"].get("summary"):
                self._log(result["cost"]["summary"])
            self._stage_result = {"file_id": file_id, "cost": result["cost"]}
        with self._stage("train"):
            if reason:
                raise _Skip(reason)
            job_id = self.trainer.start_training(file_id, model=self.base_model,
                                                 hyperparameters=self.hyperparameters or None)
            result["train"] = {"status": "running", "job_id": job_id, "fine_tuned_model": None}
            self._record.data["stages"]["train"]["result"] = {"job_id": job_id}
            self._record.save()
            train = self.trainer.wait(job_id, poll_interval=self.poll_interval, timeout=self.train_timeout)
            result["train"] = train
            self._stage_result = {"job_id": job_id, "fine_tuned_model": train.get("fine_tuned_model"),
                                  "metrics": {k: v for k, v in (train.get("metrics") or {}).items()
                                              if k != "train_loss_curve"}}
            return train.get("fine_tuned_model")
        return None

    def _prepare_data(self, path: Path) -> str:
        """Upload/stage the training file, priced for the model that will be trained."""
        import inspect

        if self.base_model and "model" in inspect.signature(self.trainer.prepare_data).parameters:
            return self.trainer.prepare_data(str(path), model=self.base_model)
        return self.trainer.prepare_data(str(path))

    def _cost(self, path: Path) -> Optional[Dict[str, Any]]:
        """The estimate shown before upload (the trainer's, else priced here)."""
        estimate = getattr(self.trainer, "last_estimate", None)
        if estimate is None and self.base_model:
            from ..errors import ConfigError
            from ..train.cost import estimate_cost

            try:
                estimate = estimate_cost(path, self.base_model)
            except ConfigError as exc:
                return {"model": self.base_model, "usd": None, "note": str(exc)}
        if estimate is None:
            return None
        return {**estimate.to_dict(), "summary": estimate.summary()}

    def _evaluate(self, fine_tuned: Optional[str], candidate_hooks: Optional[LoadedHooks],
                  golden_holdout: Sequence[Dict[str, Any]], feedback_holdout: Sequence[FeedbackPair],
                  cache: Optional[Dict[Tuple[str, str], str]] = None) -> GateDecision:
        from ..runtime.active import get_runtime

        live = get_runtime().current()
        incumbent_model = live.route(self.base_model) if self.gate.client is not None else None
        candidate_model = fine_tuned or incumbent_model
        if fine_tuned and self.gate.client is None:
            self._result["skipped"]["model_promotion"] = "no client to evaluate the fine-tuned model; not promoted"
            candidate_model, fine_tuned = incumbent_model, None
        self._fine_tuned_for_promotion = fine_tuned
        self.gate.function_name = self._result["function_name"]
        incumbent = Contender("incumbent", incumbent_model, live.hooks)
        candidate = Contender("candidate", candidate_model, candidate_hooks or live.hooks)
        return self.gate.evaluate(candidate, incumbent, golden_holdout, feedback_holdout, cache)

    # --- reporting -------------------------------------------------------------------------
    @contextmanager
    def _stage(self, stage: str, total: Optional[int] = None) -> Iterator[None]:
        self._stage_result: Optional[Dict[str, Any]] = None
        self._record.stage_start(stage)
        self._notify("on_stage_start", stage, total)
        try:
            yield
        except _Skip as skip:
            self._result["skipped"][stage] = str(skip)
            self._record.stage_end(stage, "skipped", {"skipped": True, "reason": str(skip)})
            self._notify("on_stage_complete", stage, {"skipped": True, "reason": str(skip)})
            return
        except BaseException as exc:
            self._record.stage_end(stage, "failed", error=exc)
            self._notify("on_stage_error", stage, exc)
            raise
        self._record.stage_end(stage, "succeeded", self._stage_result)
        self._notify("on_stage_complete", stage, self._stage_result)

    def _notify(self, method: str, *args: Any) -> None:
        if self.monitor is None:
            return
        from ..health import fail_open

        with fail_open("evolve.monitor"):
            getattr(self.monitor, method)(*args)

    def _log(self, message: str, level: str = "info") -> None:
        logger.log(logging.WARNING if level in ("warning", "error") else logging.INFO, message)
        self._notify("on_log", message, level)
