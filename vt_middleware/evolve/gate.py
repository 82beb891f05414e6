"""Evaluation gate: which parts of a candidate (new model, new hooks) beat the incumbent?

Everything is scored on held-out data the candidate never trained or synthesised on, in four
rows (an ablation): ``incumbent`` (live model, live hooks), ``hooks`` (live model, new hooks),
``model`` (new model, live hooks) and ``both``. Rows a candidate does not change are left out.
Per row:

- **model side** (when an OpenAI-compatible ``client`` is given): each held-out request goes
  through the row's pair -- prompt hook, its model, output hook -- and the answer's embedding is
  compared with the reference: ``similarity_corrected`` on held-out corrections (the reference
  is the human's fix), ``similarity_accepted`` on held-out golden answers (the answer the app
  gave and nobody corrected), ``similarity`` over both.
- **hook side** on held-out feedback pairs: the row's output hook applied to the bad output;
  ``exact_rate`` (became exactly the fix), ``fix_rate`` (moved closer to the fix) and
  ``hook_similarity``; plus ``preserve_rate``: share of held-out good answers (golden answers
  and the fixes themselves) the hook leaves unchanged, a guard against rules that damage them.

``score`` is the mean of the measured ``similarity_corrected``, ``similarity_accepted`` and
``hook_similarity``. New hooks are promoted when their row beats the incumbent by ``margin``
with a preserve rate of at least ``min_preserve_rate``. A new model is promoted only if it
beats the incumbent on its own, or adds at least ``margin`` to the new hooks; of the rows that
qualify, the best is promoted (ties: fewer parts). The decision always says why. All LLM calls
run inside ``suppress_capture()`` so the evolver never logs its own calls.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from ..errors import VTError
from ..runtime.active import ActivePair
from ..runtime.hooks import LoadedHooks
from ..types import FeedbackPair
from .protocols import AnswerCache, JSONDict

if TYPE_CHECKING:
    from openai import OpenAI

    from ..store.embedding import Embedder

T = TypeVar("T")
ROWS = ("incumbent", "hooks", "model", "both")
ROW_LABELS = {
    "incumbent": "incumbent",
    "hooks": "new hooks only",
    "model": "new model only",
    "both": "new model + new hooks",
}
_PARTS = {"hooks": ("hooks",), "model": ("model",), "both": ("model", "hooks")}


class GateError(VTError):
    """The gate could not evaluate (e.g. the model server is unreachable)."""


@dataclass
class GateConfig:
    """Knobs of the evaluation gate."""

    margin: float = 0.01  # a promoted row's score must exceed the one it replaces by this much
    holdout_fraction: float = 0.25
    min_preserve_rate: float = 0.9
    max_eval_items: int = 16  # per source (golden, feedback), keeps a gate run short
    max_tokens: int = 64
    temperature: float = 0.0
    seed: Optional[int] = None  # sent with each generation (a sampled model answers reproducibly)


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
    """What to promote and why; ``metrics["rows"]`` holds the ablation."""

    promote: bool
    reason: str
    metrics: JSONDict = field(default_factory=dict)
    promote_model: bool = False
    promote_hooks: bool = False

    @property
    def parts(self) -> List[str]:
        """The promoted parts, in promotion order: ``[]``, ``["model"]``, ``["hooks"]`` or both."""
        return [name for name, on in (("model", self.promote_model), ("hooks", self.promote_hooks)) if on]

    def to_dict(self) -> JSONDict:
        return {**asdict(self), "parts": self.parts}


@dataclass
class EvalItem:
    messages: List[JSONDict]
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


def golden_key(example: JSONDict) -> str:
    return json.dumps(example.get("messages", example), sort_keys=True, ensure_ascii=False)


def feedback_key(pair: FeedbackPair) -> str:
    return f"{pair.input_prompt}\x00{pair.bad_output}\x00{pair.fixed_output}"


def request_messages(pair: FeedbackPair) -> List[JSONDict]:
    """The request a correction answers: the captured call's messages, else its prompt."""
    messages = pair.context.get("messages") if isinstance(pair.context, dict) else None
    if isinstance(messages, list) and any(isinstance(m, dict) and m.get("role") == "user" for m in messages):
        return [dict(m) for m in messages if isinstance(m, dict)]
    return [{"role": "user", "content": pair.input_prompt}]


def golden_items(examples: Sequence[JSONDict]) -> List[EvalItem]:
    """ChatML examples -> (prompt messages, last assistant reference)."""
    items = []
    for example in examples:
        messages = list(example.get("messages") or [])
        if messages and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
            items.append(EvalItem(messages[:-1], messages[-1]["content"], "golden"))
    return items


def feedback_items(pairs: Sequence[FeedbackPair]) -> List[EvalItem]:
    return [EvalItem(request_messages(p), p.fixed_output, "feedback") for p in pairs]


def ablation(candidate: Contender, incumbent: Contender) -> Dict[str, Contender]:
    """The rows to score: incumbent, and whichever of hooks / model / both the candidate changes."""
    new_hooks = candidate.hooks is not incumbent.hooks
    new_model = candidate.model != incumbent.model
    rows = {"incumbent": Contender("incumbent", incumbent.model, incumbent.hooks)}
    if new_hooks:
        rows["hooks"] = Contender("hooks", incumbent.model, candidate.hooks)
    if new_model:
        rows["model"] = Contender("model", candidate.model, incumbent.hooks)
    if new_hooks and new_model:
        rows["both"] = Contender("both", candidate.model, candidate.hooks)
    return rows


def decide(rows: Dict[str, JSONDict], config: GateConfig) -> Tuple[Optional[str], str]:
    """The row to promote (``"hooks"``, ``"model"``, ``"both"`` or None) and why, from scored rows."""
    inc = rows["incumbent"]["score"]
    margin = config.margin
    verdicts: List[str] = []
    qualified: Dict[str, float] = {}
    for name in ("hooks", "model", "both"):
        row = rows.get(name)
        if row is None:
            continue
        label, score = ROW_LABELS[name], row["score"]
        delta = score - inc
        if "hooks" in _PARTS[name] and row["preserve_rate"] < config.min_preserve_rate:
            verdicts.append(
                f"{label}: change {1 - row['preserve_rate']:.0%} of held-out good outputs "
                f"(allowed {1 - config.min_preserve_rate:.0%})"
            )
            continue
        if delta < margin:
            verdicts.append(
                f"{label}: score {score:.4f} is not better than the incumbent's {inc:.4f} "
                f"by the margin {margin} (delta {delta:+.4f})"
            )
            continue
        if name == "both" and "model" not in qualified:
            added = score - rows["hooks"]["score"]
            if "hooks" not in qualified or added < margin:
                verdicts.append(
                    f"{label}: the new model adds {added:+.4f} to the new hooks (margin {margin}) "
                    f"and does not beat the incumbent on its own"
                )
                continue
        verdicts.append(f"{label}: score {score:.4f} beats the incumbent's {inc:.4f} by {delta:+.4f} (margin {margin})")
        qualified[name] = score
    if not qualified:
        return None, "; ".join(verdicts) + "; keeping the incumbent"
    best = max(qualified, key=lambda n: (round(qualified[n], 6), -len(_PARTS[n])))
    return best, f"promote {' + '.join(_PARTS[best])}: " + "; ".join(verdicts)


class EvaluationGate:
    """Scores the ablation rows of a candidate on held-out data and decides what to promote."""

    def __init__(
        self, client: Optional[OpenAI] = None, config: Optional[GateConfig] = None, embedder: Optional[Embedder] = None
    ) -> None:
        self.client = client
        self.config = config or GateConfig()
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from ..config import get_config
            from ..store.embedding import get_embedder

            self._embedder = get_embedder(get_config().embedding_model)
        return self._embedder

    def evaluate(
        self,
        candidate: Contender,
        incumbent: Contender,
        golden_holdout: Sequence[JSONDict] = (),
        feedback_holdout: Sequence[FeedbackPair] = (),
        cache: Optional[AnswerCache] = None,
        *,
        function_name: str = "",
    ) -> GateDecision:
        """Score the ablation rows and decide. Raises :class:`GateError` if the model server fails.
        ``cache`` ((model, messages) -> answer) lets a second evaluation reuse the answers of a
        first one (generation is deterministic at temperature 0); ``function_name`` is the
        context the hooks see (their rules are scoped by it)."""
        cfg = self.config
        golden = golden_items(golden_holdout)[: cfg.max_eval_items]
        feedback = list(feedback_holdout)[: cfg.max_eval_items]
        if candidate.model == incumbent.model and candidate.hooks is incumbent.hooks:
            return GateDecision(False, "candidate is the incumbent (no new model or hooks)", {})
        if not golden and not feedback:
            return GateDecision(False, "no held-out data to evaluate on; keeping the incumbent", {})
        contenders = ablation(candidate, incumbent)
        use_model = self.client is not None and (candidate.model or incumbent.model) is not None
        cache = {} if cache is None else cache
        rows = {
            name: self.score(c, golden, feedback, cache, function_name, use_model) for name, c in contenders.items()
        }
        top = "both" if "both" in rows else next(n for n in rows if n != "incumbent")
        summary: JSONDict = {
            "rows": rows,
            "candidate": rows[top],
            "incumbent": rows["incumbent"],
            "margin": cfg.margin,
            "n_golden": len(golden),
            "n_feedback": len(feedback),
            "model_evaluated": use_model,
        }
        if rows[top]["score"] is None:
            return GateDecision(False, "nothing measurable: no model client and no held-out feedback", summary)
        chosen, reason = decide(rows, cfg)
        summary["chosen"] = chosen
        if chosen is None:
            summary["delta"] = round(rows[top]["score"] - rows["incumbent"]["score"], 6)
            return GateDecision(False, reason, summary)
        summary["candidate"] = rows[chosen]
        summary["delta"] = round(rows[chosen]["score"] - rows["incumbent"]["score"], 6)
        return GateDecision(
            True, reason, summary, promote_model="model" in _PARTS[chosen], promote_hooks="hooks" in _PARTS[chosen]
        )

    # --- rows -------------------------------------------------------------------------
    def score(
        self,
        contender: Contender,
        golden: Sequence[EvalItem],
        feedback: Sequence[FeedbackPair],
        cache: AnswerCache,
        function_name: str = "",
        use_model: bool = True,
    ) -> JSONDict:
        """One row's metrics (see the module docstring)."""
        metrics: JSONDict = {"model": contender.model, "hook_version": contender.hook_version}
        corrected = feedback_items(feedback)
        if use_model and self.client is not None and contender.model is not None:
            sims = {}
            for key, items in (("similarity_corrected", corrected), ("similarity_accepted", list(golden))):
                if items:
                    outputs = self.answers(contender, items, cache, function_name)
                    sims[key] = self._similarities(outputs, [i.reference for i in items])
                    metrics[key] = round(float(np.mean(sims[key])), 6)
            metrics["similarity"] = round(float(np.mean(np.concatenate(list(sims.values())))), 6)
        if feedback:
            metrics.update(self._hook_metrics(contender, feedback, function_name))
        good = list(golden) + corrected
        metrics["preserve_rate"] = self._preserve_rate(contender, good, function_name)
        measured = [
            metrics[k] for k in ("similarity_corrected", "similarity_accepted", "hook_similarity") if k in metrics
        ]
        metrics["score"] = round(float(np.mean(measured)), 6) if measured else None
        return metrics

    def answers(
        self, contender: Contender, items: Sequence[EvalItem], cache: AnswerCache, function_name: str = ""
    ) -> List[str]:
        """The answers the contender's pair gives: prompt hook, its model, output hook."""
        from ..call_context import suppress_capture
        from ..capture.record import apply_prompt_hook

        pair = ActivePair(hooks=contender.hooks)
        outputs = []
        with suppress_capture():
            for item in items:
                context = _context(contender, item.messages, function_name)
                messages = apply_prompt_hook(pair, item.messages, context).messages
                model = contender.model or ""
                key = (model, json.dumps(messages, sort_keys=True, ensure_ascii=False))
                if key not in cache:
                    cache[key] = self._generate(model, messages)
                text = cache[key]
                outputs.append(contender.hooks.apply_output(text, context) if contender.hooks else text)
        return outputs

    def _similarities(self, outputs: Sequence[str], references: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.embed(list(outputs) + list(references))
        n = len(outputs)
        return np.sum(vectors[:n] * vectors[n:], axis=1)  # rows are L2-normalised

    def _generate(self, model: str, messages: List[JSONDict]) -> str:
        import openai

        if self.client is None:
            raise GateError("evaluation needs a client to generate answers")
        seed = openai.omit if self.config.seed is None else self.config.seed
        try:
            response = self.client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]  # plain role/content dicts
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
                seed=seed,
            )
        except openai.APIConnectionError as exc:
            where = getattr(self.client, "base_url", "the model server")
            raise GateError(
                f"evaluation failed: the model server at {where} is unreachable ({exc.__cause__ or exc})"
            ) from exc
        except openai.APIStatusError as exc:
            raise GateError(
                f"evaluation failed: generating with {model!r} answered HTTP {exc.status_code}: {exc.message}"
            ) from exc
        return response.choices[0].message.content or ""

    def _hook_metrics(self, contender: Contender, pairs: Sequence[FeedbackPair], function_name: str) -> JSONDict:
        hooked = []
        for pair in pairs:
            text = pair.bad_output
            if contender.hooks is not None:
                scope = pair.context.get("function_name") or pair.context.get("function") or function_name
                text = contender.hooks.apply_output(text, _context(contender, request_messages(pair), scope))
            hooked.append(text)
        fixed = [p.fixed_output for p in pairs]
        after = self._similarities(hooked, fixed)
        before = self._similarities([p.bad_output for p in pairs], fixed)
        exact = [h.strip() == f.strip() for h, f in zip(hooked, fixed, strict=True)]
        improved = [e or a > b + 1e-6 for e, a, b in zip(exact, after, before, strict=True)]
        return {
            "exact_rate": round(float(np.mean(exact)), 6),
            "fix_rate": round(float(np.mean(improved)), 6),
            "hook_similarity": round(float(np.mean(after)), 6),
        }

    def _preserve_rate(self, contender: Contender, good: Sequence[EvalItem], function_name: str) -> float:
        if contender.hooks is None or not good:
            return 1.0
        kept = [
            contender.hooks.apply_output(i.reference, _context(contender, i.messages, function_name)) == i.reference
            for i in good
        ]
        return round(float(np.mean(kept)), 6)


def _context(contender: Contender, messages: List[JSONDict], function_name: str) -> JSONDict:
    return {"function_name": function_name, "model": contender.model, "messages": messages}
