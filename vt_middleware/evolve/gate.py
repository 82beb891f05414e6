"""Evaluation gate: is the candidate (new model and/or new hooks) better than the incumbent?

Both are scored on held-out data the candidate never trained or synthesised on:

- **model side** (when an OpenAI-compatible ``client`` is given): each held-out golden input and
  each held-out feedback prompt goes through the contender's pair -- prompt hook, its model,
  output hook -- and the answer's embedding is compared with the reference output
  (``similarity``, mean cosine).
- **hook side** on held-out feedback pairs: the contender's output hook applied to the bad
  output; ``exact_rate`` (became exactly the fix), ``fix_rate`` (moved closer to the fix) and
  ``hook_similarity``; plus ``preserve_rate``: share of held-out golden (good) outputs the hook
  leaves unchanged, a guard against rules that damage good answers.

``score`` is the mean of ``similarity`` and ``hook_similarity`` (those measured). The candidate
is promoted only if its score beats the incumbent's by ``margin`` and its preserve rate is at
least ``min_preserve_rate``; the decision always says why. All LLM calls run inside
``suppress_capture()`` so the evolver never logs its own calls.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from ..errors import VTError
from ..runtime.active import ActivePair
from ..runtime.hooks import LoadedHooks
from ..types import FeedbackPair

T = TypeVar("T")


class GateError(VTError):
    """The gate could not evaluate (e.g. the model server is unreachable)."""


@dataclass
class GateConfig:
    """Knobs of the evaluation gate."""

    margin: float = 0.01  # candidate score must exceed the incumbent's by this much
    holdout_fraction: float = 0.25
    min_preserve_rate: float = 0.9
    max_eval_items: int = 16  # per source (golden, feedback), keeps a gate run short
    max_tokens: int = 64
    temperature: float = 0.0


@dataclass
class Contender:
    """One side of the comparison: a model id (None: no model evaluation) and hooks."""

    name: str
    model: Optional[str] = None
    hooks: Optional[LoadedHooks] = None

    @property
    def hook_version(self) -> Optional[str]:
        return self.hooks.version if self.hooks is not None else None


@dataclass
class GateDecision:
    promote: bool
    reason: str
    metrics: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class EvalItem:
    messages: List[Dict[str, Any]]
    reference: str
    source: str  # "golden" | "feedback"


def split_holdout(items: Sequence[T], fraction: float, key: Callable[[T], str]) -> Tuple[List[T], List[T]]:
    """Deterministic (hash of ``key``) split into (train, held-out). With 2+ items at least one
    is held out and at least one kept, so a gate always has something unseen to judge on."""
    items = list(items)
    if fraction <= 0 or len(items) < 2:
        return items, []
    ranked = sorted(items, key=lambda item: hashlib.sha1(key(item).encode("utf-8")).hexdigest())
    n_holdout = min(len(items) - 1, max(1, round(len(items) * fraction)))
    held = {id(item) for item in ranked[:n_holdout]}
    return [i for i in items if id(i) not in held], [i for i in items if id(i) in held]


def golden_key(example: Dict[str, Any]) -> str:
    return json.dumps(example.get("messages", example), sort_keys=True, ensure_ascii=False)


def feedback_key(pair: FeedbackPair) -> str:
    return f"{pair.input_prompt}\x00{pair.bad_output}\x00{pair.fixed_output}"


def golden_items(examples: Sequence[Dict[str, Any]]) -> List[EvalItem]:
    """ChatML examples -> (prompt messages, last assistant reference)."""
    items = []
    for example in examples:
        messages = list(example.get("messages") or [])
        if messages and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
            items.append(EvalItem(messages[:-1], messages[-1]["content"], "golden"))
    return items


def feedback_items(pairs: Sequence[FeedbackPair]) -> List[EvalItem]:
    return [EvalItem([{"role": "user", "content": p.input_prompt}], p.fixed_output, "feedback") for p in pairs]


class EvaluationGate:
    """Scores candidate vs incumbent on held-out data and decides promotion."""

    def __init__(self, client: Any = None, config: Optional[GateConfig] = None, embedder: Any = None,
                 function_name: str = "") -> None:
        self.client = client
        self.config = config or GateConfig()
        self._embedder = embedder
        self.function_name = function_name

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from ..config import get_config
            from ..store.embedding import get_embedder

            self._embedder = get_embedder(get_config().embedding_model)
        return self._embedder

    def evaluate(self, candidate: Contender, incumbent: Contender,
                 golden_holdout: Sequence[Dict[str, Any]] = (),
                 feedback_holdout: Sequence[FeedbackPair] = (),
                 cache: Optional[Dict[Tuple[str, str], str]] = None) -> GateDecision:
        """Score both contenders and decide. Raises :class:`GateError` if the model server fails.
        ``cache`` ((model, messages) -> answer) lets a second evaluation reuse the answers of a
        first one (generation is deterministic at temperature 0)."""
        cfg = self.config
        golden = golden_items(golden_holdout)[: cfg.max_eval_items]
        feedback = list(feedback_holdout)[: cfg.max_eval_items]
        model_items = golden + feedback_items(feedback)
        if candidate.model == incumbent.model and candidate.hooks is incumbent.hooks:
            return GateDecision(False, "candidate is the incumbent (no new model or hooks)", {})
        if not model_items:
            return GateDecision(False, "no held-out data to evaluate on; keeping the incumbent", {})
        use_model = self.client is not None and (candidate.model or incumbent.model) is not None
        cache = {} if cache is None else cache
        scores = {}
        for contender in (incumbent, candidate):
            metrics: Dict[str, Any] = {"model": contender.model, "hook_version": contender.hook_version}
            if use_model and model_items:
                metrics["similarity"] = self._model_similarity(contender, model_items, cache)
            if feedback:
                metrics.update(self._hook_metrics(contender, feedback))
            metrics["preserve_rate"] = self._preserve_rate(contender, golden)
            measured = [metrics[k] for k in ("similarity", "hook_similarity") if k in metrics]
            metrics["score"] = float(np.mean(measured)) if measured else None
            scores[contender.name] = metrics
        cand, inc = scores[candidate.name], scores[incumbent.name]
        summary = {"candidate": cand, "incumbent": inc, "margin": cfg.margin,
                   "n_golden": len(golden), "n_feedback": len(feedback), "model_evaluated": use_model}
        if cand["score"] is None:
            return GateDecision(False, "nothing measurable: no model client and no held-out feedback", summary)
        delta = cand["score"] - inc["score"]
        summary["delta"] = round(delta, 6)
        if cand["preserve_rate"] < cfg.min_preserve_rate:
            return GateDecision(False, f"candidate hooks change {1 - cand['preserve_rate']:.0%} of held-out good "
                                       f"outputs (allowed {1 - cfg.min_preserve_rate:.0%}); keeping the incumbent",
                                summary)
        if delta < cfg.margin:
            return GateDecision(False, f"candidate score {cand['score']:.4f} is not better than the incumbent's "
                                       f"{inc['score']:.4f} by the margin {cfg.margin} (delta {delta:+.4f}); "
                                       f"keeping the incumbent", summary)
        return GateDecision(True, f"candidate score {cand['score']:.4f} beats the incumbent's {inc['score']:.4f} "
                                  f"by {delta:+.4f} (margin {cfg.margin})", summary)

    # --- metrics -----------------------------------------------------------------------
    def _context(self, contender: Contender, messages: List[Dict[str, Any]],
                 function_name: Optional[str] = None) -> Dict[str, Any]:
        return {"function_name": function_name or self.function_name, "model": contender.model,
                "messages": messages}

    def _similarities(self, outputs: Sequence[str], references: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.embed(list(outputs) + list(references))
        n = len(outputs)
        return np.sum(vectors[:n] * vectors[n:], axis=1)  # rows are L2-normalised

    def _model_similarity(self, contender: Contender, items: Sequence[EvalItem],
                          cache: Dict[Tuple[str, str], str]) -> float:
        from ..call_context import suppress_capture
        from ..capture.record import apply_prompt_hook

        pair = ActivePair(hooks=contender.hooks)
        outputs = []
        with suppress_capture():
            for item in items:
                context = self._context(contender, item.messages)
                messages = apply_prompt_hook(pair, item.messages, context).messages
                model = contender.model or ""
                key = (model, json.dumps(messages, sort_keys=True, ensure_ascii=False))
                if key not in cache:
                    cache[key] = self._generate(model, messages)
                text = cache[key]
                outputs.append(contender.hooks.apply_output(text, context) if contender.hooks else text)
        return round(float(np.mean(self._similarities(outputs, [i.reference for i in items]))), 6)

    def _generate(self, model: str, messages: List[Dict[str, Any]]) -> str:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=model, messages=messages, max_tokens=self.config.max_tokens,
                temperature=self.config.temperature)
        except openai.APIConnectionError as exc:
            where = getattr(self.client, "base_url", "the model server")
            raise GateError(f"evaluation failed: the model server at {where} is unreachable "
                            f"({exc.__cause__ or exc})") from exc
        except openai.APIStatusError as exc:
            raise GateError(f"evaluation failed: generating with {model!r} answered HTTP "
                            f"{exc.status_code}: {exc.message}") from exc
        return response.choices[0].message.content or ""

    def _hook_metrics(self, contender: Contender, pairs: Sequence[FeedbackPair]) -> Dict[str, float]:
        hooked = []
        for pair in pairs:
            text = pair.bad_output
            if contender.hooks is not None:
                messages = [{"role": "user", "content": pair.input_prompt}]
                scope = pair.context.get("function_name") or pair.context.get("function")
                text = contender.hooks.apply_output(text, self._context(contender, messages, scope))
            hooked.append(text)
        fixed = [p.fixed_output for p in pairs]
        after = self._similarities(hooked, fixed)
        before = self._similarities([p.bad_output for p in pairs], fixed)
        exact = [h.strip() == f.strip() for h, f in zip(hooked, fixed)]
        improved = [e or a > b + 1e-6 for e, a, b in zip(exact, after, before)]
        return {"exact_rate": round(float(np.mean(exact)), 6), "fix_rate": round(float(np.mean(improved)), 6),
                "hook_similarity": round(float(np.mean(after)), 6)}

    def _preserve_rate(self, contender: Contender, golden: Sequence[EvalItem]) -> float:
        if contender.hooks is None or not golden:
            return 1.0
        kept = [contender.hooks.apply_output(i.reference, self._context(contender, i.messages)) == i.reference
                for i in golden]
        return round(float(np.mean(kept)), 6)
