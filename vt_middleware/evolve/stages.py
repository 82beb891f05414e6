"""The stages of one evolution run, as functions over a :class:`RunContext`.

Each stage reads what earlier stages put in the context, adds its own outputs, and returns a
small JSON summary for the run record and the monitor; ``StageSkipped`` marks a stage with
nothing to do (the reason is recorded). The context is made fresh for every run, so two runs
never share state through the pipeline object.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError, DataError
from ..runtime.hooks import LoadedHooks
from ..types import FeedbackPair
from .gate import Contender, GateDecision, request_messages
from .protocols import AnswerCache, Extractor, Gate, JSONDict, Monitor, Promoter, Trainer
from .run_records import RunRecorder

logger = logging.getLogger("vt_middleware.evolve")

GOLDEN_FILE = "golden_data.jsonl"
TRAIN_FILE = "golden_train.jsonl"
HOLDOUT_FILE = "golden_holdout.jsonl"
CHAT_ROLES = ("system", "user", "assistant")


class StageSkipped(Exception):
    """Raised by a stage with nothing to do; the message is the reason."""


@dataclass(frozen=True)
class PipelineParts:
    """The collaborators and settings of a pipeline, as one run sees them."""

    extractor: Extractor
    gate: Gate
    promoter: Promoter
    hooks_dir: Path
    trainer: Optional[Trainer] = None
    monitor: Optional[Monitor] = None
    base_model: Optional[str] = None
    hyperparameters: Dict[str, Any] = field(default_factory=dict)
    synthesis_options: Dict[str, Any] = field(default_factory=dict)
    auto_promote: bool = True
    min_train_examples: int = 1
    correction_repeats: int = 1
    train_timeout: Optional[float] = 3600.0
    poll_interval: float = 1.0


@dataclass
class RunContext:
    """Everything one run knows; stages read and extend it."""

    parts: PipelineParts
    function_name: str
    output_dir: Path
    record: RunRecorder
    result: JSONDict
    feedback_train: List[FeedbackPair] = field(default_factory=list)
    feedback_holdout: List[FeedbackPair] = field(default_factory=list)
    golden_train: List[JSONDict] = field(default_factory=list)
    golden_holdout: List[JSONDict] = field(default_factory=list)
    hooks: Optional[LoadedHooks] = None  # the candidate hook version, loaded
    file_id: Optional[str] = None
    fine_tuned_model: Optional[str] = None  # the model the gate judged (None: no new model)
    decision: Optional[GateDecision] = None
    answers: AnswerCache = field(default_factory=dict)  # generations reused across gate passes

    def notify(self, method: str, *args: Any) -> None:
        if self.parts.monitor is None:
            return
        from ..health import fail_open

        with fail_open("evolve.monitor"):
            getattr(self.parts.monitor, method)(*args)

    def log(self, message: str, level: str = "info") -> None:
        logger.log(logging.WARNING if level in ("warning", "error") else logging.INFO, message)
        self.notify("on_log", message, level)


# --- files ---------------------------------------------------------------------------------
def read_jsonl(path: Path) -> List[JSONDict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: Sequence[JSONDict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _chat(messages: Sequence[JSONDict]) -> List[JSONDict]:
    return [
        {"role": m["role"], "content": m["content"]}
        for m in messages
        if m.get("role") in CHAT_ROLES and isinstance(m.get("content"), str) and m["content"].strip()
    ]


def _prompt_key(messages: Sequence[JSONDict]) -> str:
    return json.dumps(_chat(messages), sort_keys=True, ensure_ascii=False)


def training_rows(
    golden: Sequence[JSONDict], corrections: Sequence[FeedbackPair], held_out: Sequence[FeedbackPair], repeats: int = 1
) -> List[JSONDict]:
    """The fine-tuning set: golden rows plus each training correction of a captured call
    ``repeats`` times (the call's messages with the fixed answer, replacing a golden row of the
    same request). Golden rows asking a held-out correction's request are left out, so the
    gate judges unseen requests."""
    held = {_prompt_key(request_messages(p)) for p in held_out}
    fixed = {}
    for pair in corrections if repeats > 0 else ():
        if not isinstance(pair.context.get("messages"), list):
            continue  # no captured request: the real input is unknown, so it does not train
        messages = _chat(request_messages(pair))
        if any(m["role"] == "user" for m in messages) and pair.fixed_output.strip():
            answer = {"role": "assistant", "content": pair.fixed_output}
            fixed[_prompt_key(messages)] = {"messages": [*messages, answer]}
    rows = [r for r in golden if _prompt_key(list(r.get("messages") or [])[:-1]) not in held | set(fixed)]
    return rows + [row for row in fixed.values() for _ in range(repeats)]


# --- stages --------------------------------------------------------------------------------
def extract(ctx: RunContext) -> JSONDict:
    """Golden data of the function, split into train / held-out (the held-out rows never train)."""
    from .gate import golden_key, split_holdout

    golden = _golden(ctx)
    train, holdout = split_holdout(golden, ctx.parts.gate.config.holdout_fraction, golden_key)
    ctx.golden_holdout = holdout
    ctx.golden_train = training_rows(train, ctx.feedback_train, ctx.feedback_holdout, ctx.parts.correction_repeats)
    write_jsonl(ctx.output_dir / TRAIN_FILE, ctx.golden_train)
    write_jsonl(ctx.output_dir / HOLDOUT_FILE, holdout)
    result = ctx.result
    result.update(golden_examples=len(golden), train_examples=len(ctx.golden_train), holdout_examples=len(holdout))
    return {
        "steady": result["steady"],
        "anomalies": result["anomalies"],
        "golden_examples": len(golden),
        "train": len(ctx.golden_train),
        "holdout": len(holdout),
        "path": result["golden_data_path"],
    }


def _golden(ctx: RunContext) -> List[JSONDict]:
    """Golden examples (ChatML rows); [] when the function has no usable logs."""
    path = ctx.output_dir / GOLDEN_FILE
    extractor, name = ctx.parts.extractor, ctx.function_name
    try:
        steady = extractor.select_steady_state(name)
        anomalies = extractor.select_anomalies(name)
        written = extractor.extract_golden_data(name, str(path))
    except DataError as exc:  # no logs / unusable logs: a defined result, not a failure
        ctx.result["skipped"]["extract"] = str(exc)
        ctx.log(f"no golden data for {name}: {exc}", "warning")
        write_jsonl(path, [])
        ctx.result["golden_data_path"] = str(path)
        return []
    if isinstance(written, (str, os.PathLike)):
        path = Path(written)
    ctx.result.update(steady=len(steady or []), anomalies=len(anomalies or []), golden_data_path=str(path))
    return read_jsonl(path)


def synthesize(ctx: RunContext) -> JSONDict:
    """A candidate hook version from the training corrections."""
    pairs = ctx.feedback_train
    if not pairs:
        raise StageSkipped(
            "no feedback pairs to synthesise hooks from"
            if not ctx.feedback_holdout
            else "all feedback pairs are held out for evaluation (need at least 2)"
        )
    ctx.hooks = synthesize_hooks(ctx, pairs)
    result = ctx.result
    return {"hook_version": result["hook_version"], "rules": len(result["rules"]), "path": result["hook_script_path"]}


def synthesize_hooks(ctx: RunContext, pairs: Sequence[FeedbackPair], **overrides: Any) -> LoadedHooks:
    """Synthesise, validate and load a hook version; ``StageSkipped`` when nothing generalised."""
    from ..synthesize import pipeline as synthesis

    options = {"negatives": negatives(ctx), **ctx.parts.synthesis_options, **overrides}
    made = synthesis.synthesize_version(pairs, ctx.parts.hooks_dir, activate=False, **options)
    ctx.result.update(
        hook_script_path=made.hook_path,
        hook_version=made.version,
        rules=[r.to_dict() for r in made.rules],
        hook_estimate=made.estimate,
    )
    if not made.rules:
        raise StageSkipped(
            f"no rule generalised from {len(pairs)} feedback pair(s); "
            f"hook version {made.version} is a pass-through and is not a candidate"
        )
    if not made.validation.get("ok", True):
        raise StageSkipped(f"hook version {made.version} failed validation: {made.validation}")
    return LoadedHooks.from_file(Path(made.hook_path), made.version)


def negatives(ctx: RunContext) -> List[Tuple[str, JSONDict]]:
    """The training answers (accepted or corrected) as (output, context): a rule must leave them be."""
    seen, out = set(), []
    for row in ctx.golden_train:
        messages = list(row.get("messages") or [])
        if not messages or messages[-1].get("role") != "assistant" or not isinstance(messages[-1].get("content"), str):
            continue
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append((messages[-1]["content"], {"function_name": ctx.function_name, "messages": messages[:-1]}))
    return out


def training_skip_reason(ctx: RunContext) -> Optional[str]:
    """Why there is no fine-tuning in this run, or None."""
    if ctx.parts.trainer is None:
        return "no trainer configured"
    n = ctx.result["train_examples"]
    if n < ctx.parts.min_train_examples:
        reason = (
            f"empty golden set: {n} training example(s), need at least {ctx.parts.min_train_examples}; training skipped"
        )
        extract_skip = ctx.result["skipped"].get("extract")
        return f"{reason} ({extract_skip})" if extract_skip else reason
    return None


def prepare(ctx: RunContext) -> JSONDict:
    """Stage the training file with the trainer and show the cost estimate."""
    reason = training_skip_reason(ctx)
    trainer = ctx.parts.trainer
    if reason or trainer is None:
        ctx.result["train"] = {"status": "skipped", "fine_tuned_model": None, "reason": reason}
        raise StageSkipped(reason)
    path = ctx.output_dir / TRAIN_FILE
    base = ctx.parts.base_model
    if base and "model" in inspect.signature(trainer.prepare_data).parameters:
        ctx.file_id = trainer.prepare_data(str(path), model=base)  # type: ignore[call-arg]  # priced per model
    else:
        ctx.file_id = trainer.prepare_data(str(path))
    cost = ctx.result["cost"] = _cost(trainer, path, base)
    if cost and cost.get("summary"):
        ctx.log(cost["summary"])
    return {"file_id": ctx.file_id, "cost": cost}


def _cost(trainer: Trainer, path: Path, base_model: Optional[str]) -> Optional[JSONDict]:
    """The estimate shown before upload (the trainer's, else priced here)."""
    estimate = getattr(trainer, "last_estimate", None)  # trainers that price their uploads keep it
    if estimate is None and base_model:
        from ..train.cost import estimate_cost

        try:
            estimate = estimate_cost(path, base_model)
        except ConfigError as exc:
            return {"model": base_model, "usd": None, "note": str(exc)}
    if estimate is None:
        return None
    return {**estimate.to_dict(), "summary": estimate.summary()}


def train(ctx: RunContext) -> JSONDict:
    """Fine-tune on the staged file and wait for the new model."""
    reason = training_skip_reason(ctx)
    trainer = ctx.parts.trainer
    if reason or trainer is None or ctx.file_id is None:
        raise StageSkipped(reason or "no training file was staged")
    parts = ctx.parts
    job_id = trainer.start_training(
        ctx.file_id, model=parts.base_model or "", hyperparameters=parts.hyperparameters or None
    )
    ctx.result["train"] = {"status": "running", "job_id": job_id, "fine_tuned_model": None}
    ctx.record.stage_update("train", {"job_id": job_id})
    outcome = trainer.wait(job_id, poll_interval=parts.poll_interval, timeout=parts.train_timeout)
    ctx.result["train"] = outcome
    ctx.fine_tuned_model = outcome.get("fine_tuned_model")
    return {
        "job_id": job_id,
        "fine_tuned_model": ctx.fine_tuned_model,
        "metrics": {k: v for k, v in (outcome.get("metrics") or {}).items() if k != "train_loss_curve"},
    }


def evaluate(ctx: RunContext) -> JSONDict:
    """The gate's ablation and decision (a second pass without prompt rules when they derail the model)."""
    decision = _judge(ctx, ctx.hooks)
    if (
        not decision.promote_hooks
        and decision.metrics.get("model_evaluated")
        and any(rule.get("kind") == "prompt" for rule in ctx.result["rules"])
    ):
        decision = _retry_without_prompt_rules(ctx, decision)
    ctx.decision = decision
    ctx.result["gate"] = decision.to_dict()
    estimate = _hooks_self_estimate(ctx.result.get("hook_estimate"))
    if estimate is not None:  # the synthesiser's own k-fold figures, beside what the gate measured
        ctx.result["gate"]["hooks_self_estimate"] = estimate
        ctx.log(
            f"gate: hooks' k-fold self-estimate ({estimate['folds']} folds): fix {estimate['fix_rate']}, "
            f"harm {estimate['harm_rate']}, harm on uncorrected calls {estimate['negative_harm_rate']}"
        )
    ctx.record.decide(False, decision.reason, {**decision.metrics, "hooks_self_estimate": estimate})
    verdict = f"promote {' + '.join(decision.parts)}" if decision.promote else "keep incumbent"
    ctx.log(f"gate: {verdict}: {decision.reason}")
    return {"promote": decision.promote, "parts": decision.parts, "reason": decision.reason}


def _hooks_self_estimate(estimate: Optional[JSONDict]) -> Optional[JSONDict]:
    """The overall figures of a synthesis estimate, or None when it held nothing out."""
    if not estimate or not estimate.get("folds"):
        return None
    return {key: estimate.get(key) for key in ("folds", "fix_rate", "harm_rate", "negative_harm_rate")}


def _judge(ctx: RunContext, hooks: Optional[LoadedHooks]) -> GateDecision:
    from ..runtime.active import get_runtime

    gate, base = ctx.parts.gate, ctx.parts.base_model
    live = get_runtime().current()
    incumbent_model = live.route(base) if gate.client is not None and base else None
    if ctx.fine_tuned_model and gate.client is None:
        ctx.result["skipped"]["model_promotion"] = "no client to evaluate the fine-tuned model; not promoted"
        ctx.fine_tuned_model = None
    candidate = Contender("candidate", ctx.fine_tuned_model or incumbent_model, hooks or live.hooks)
    return gate.evaluate(
        candidate,
        Contender("incumbent", incumbent_model, live.hooks),
        ctx.golden_holdout,
        ctx.feedback_holdout,
        ctx.answers,
        function_name=ctx.function_name,
    )


def _retry_without_prompt_rules(ctx: RunContext, decision: GateDecision) -> GateDecision:
    """Prompt rules can derail a small model: judge the output rules alone. Keeps the first
    candidate (and its decision) unless the output-only hooks pass."""
    kept = {k: ctx.result.get(k) for k in ("hook_script_path", "hook_version", "rules", "hook_estimate")}
    ctx.log(f"gate: {decision.reason}; trying the candidate without prompt rules")
    try:
        fallback: Optional[LoadedHooks] = synthesize_hooks(ctx, ctx.feedback_train, prompt_rules=False)
    except StageSkipped:
        fallback = None
    retry = _judge(ctx, fallback) if fallback is not None else None
    if retry is None or not retry.promote_hooks:
        ctx.result.update(kept)
        return decision
    retry.metrics["without_prompt_rules"] = {
        "first_decision": decision.reason,
        "first_hook_version": kept["hook_version"],
    }
    ctx.hooks = fallback
    return retry


def promote(ctx: RunContext) -> JSONDict:
    """Make the parts the gate passed live, in one swap."""
    decision = ctx.decision
    if decision is None or not decision.promote:
        raise StageSkipped(decision.reason if decision else "not evaluated")
    parts = ctx.parts
    if not parts.auto_promote:
        raise StageSkipped("auto_promote is off; the candidate passed the gate but was not promoted")
    model = ctx.fine_tuned_model if decision.promote_model else None
    hooks = ctx.hooks if decision.promote_hooks else None
    run_id = ctx.record.run_id
    row = parts.promoter.promote(
        parts.base_model,
        model,
        ctx.result["hook_version"] if hooks else None,
        hooks=hooks,
        hooks_dir=parts.hooks_dir,
        run_id=run_id,
        reason=f"run {run_id}: {decision.reason}",
    )
    ctx.result.update(promoted=True, promoted_parts=decision.parts, promotion=row)
    ctx.record.decide(True, decision.reason, decision.metrics, decision.parts)
    return {
        "promotion_id": row.get("promotion_id"),
        "parts": decision.parts,
        "routes": row.get("routes"),
        "hook_version": row.get("hook_version"),
    }
