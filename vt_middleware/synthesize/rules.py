"""Rule synthesis: mine candidates from diffs, score them on the pairs, keep the strong ones."""
from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..types import Rule
from . import candidates as mining
from .conflicts import ConflictReport, resolve_conflicts
from .hook_runtime import _apply_rules, _compile_rules

logger = logging.getLogger("vt_middleware.synthesize")

_KEYWORD_RE = re.compile(r"\w+")
MAX_EXAMPLE_CHARS = 400
_RULE_FIELDS = ("id", "kind", "target", "priority", "description", "mined_from", "scope")


def eval_context(diff: Dict[str, Any]) -> Dict[str, Any]:
    """The context a hook sees for a training pair (its context plus the user input)."""
    return {**diff.get("context", {}), "user_input": diff["input_prompt"]}


def to_hook_dict(rule: Rule) -> Dict[str, Any]:
    """The rule as one row of a generated module's ``RULES`` table."""
    return {
        "id": rule.rule_id,
        "kind": rule.kind,
        "target": rule.target,
        "priority": rule.priority,
        "description": rule.description,
        "support": rule.support,
        "confidence": rule.confidence,
        **rule.condition,
        **rule.action,
    }


def _to_rule(candidate: Dict[str, Any], support: int, confidence: float, sources: List[str]) -> Rule:
    condition_keys = {"scope", "pattern", "anchor", "ignore_case", "keywords", "min_overlap"}
    rest = {k: v for k, v in candidate.items() if k not in _RULE_FIELDS}
    return Rule(
        rule_id=candidate["id"],
        description=candidate["description"],
        condition={"scope": candidate.get("scope"), **{k: v for k, v in rest.items() if k in condition_keys}},
        action={k: v for k, v in rest.items() if k not in condition_keys},
        priority=candidate["priority"],
        sources=sources,
        kind=candidate["kind"],
        support=support,
        confidence=round(confidence, 4),
        target=candidate["target"],
    )


class RuleSetSynthesizer:
    """Feedback diffs -> generalising rules with support, confidence and no contradictions.

    A candidate is scored by applying it (with the same interpreter the generated
    hook uses) to every pair in its scope: it *supports* a pair when it moves the bad
    output closer to the fixed one, and *harms* one when it makes a bad output worse
    or changes a fixed (good) output. ``confidence = support / (support + harm)``.
    """

    def __init__(
        self,
        min_support: int = 2,
        min_confidence: float = 0.8,
        prompt_rules: bool = True,
        llm: Optional[Any] = None,
    ) -> None:
        if min_support < 1:
            raise ConfigError(f"min_support must be >= 1, got {min_support}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.prompt_rules = prompt_rules
        self.llm = llm
        self.last_report: ConflictReport = ConflictReport()
        self.last_scores: Dict[str, Dict[str, Any]] = {}

    def synthesize(self, diffs: Sequence[Dict[str, Any]]) -> List[Rule]:
        """Rules backed by at least ``min_support`` pairs at ``min_confidence``. With ``llm``,
        pairs no heuristic rule improves are sent to it for proposals, scored the same way."""
        for diff in diffs:
            if not isinstance(diff, dict) or "segments" not in diff:
                raise DataError("synthesize() takes FeedbackDiffAnalyzer.analyze() results")
        self.last_scores = {}
        if not diffs:
            self.last_report = ConflictReport()
            return []
        changed = [d for d in diffs if not d["identical"]]
        found = mining.mine_replacements(changed, self.min_support)
        found += mining.mine_additions(changed, self.min_support)
        found += mining.mine_normalizers(changed)
        rules = self._score(found, diffs)
        if self.llm is not None:
            uncovered = self._uncovered(rules, changed)
            if uncovered:
                known = {r.rule_id for r in rules}
                rules += [r for r in self._score(self._llm_candidates(uncovered), diffs) if r.rule_id not in known]
        recency = {d["pair_id"]: str(d.get("created_at") or "") for d in diffs}
        rules, self.last_report = resolve_conflicts(rules, recency)
        if self.prompt_rules:
            rules += self._prompt_rules(diffs, rules)
        position = {d["pair_id"]: i for i, d in enumerate(diffs)}
        for rule in rules:  # the seed's link from a rule to the (first) pair it was learned from
            rule.source_pair_index = min((position[s] for s in rule.sources if s in position), default=-1)
        return sorted(rules, key=lambda r: (-r.priority, r.rule_id))

    def synthesize_with_llm(self, diffs: Sequence[Dict[str, Any]], client: Optional[Any] = None,
                            model: Optional[str] = None) -> List[Rule]:
        """Seed API: :meth:`synthesize` with an LLM proposing rules for the pairs heuristics
        leave unfixed. Uses ``llm`` given at construction, or ``client`` + ``model`` (an
        OpenAI-compatible client) through :class:`~.llm.LLMRuleProposer`."""
        if self.llm is None:
            if client is None or not model:
                missing = " and ".join(n for n, v in (("client", client), ("model", model)) if not v)
                raise ConfigError(f"synthesize_with_llm needs an LLM: {missing} missing; pass "
                                  f"synthesize_with_llm(diffs, client=OpenAI(...), model='...') or "
                                  f"RuleSetSynthesizer(llm=LLMRuleProposer(client, model))")
            from .llm import LLMRuleProposer

            self.llm = LLMRuleProposer(client, model)
        return self.synthesize(diffs)

    def _score(self, found: Sequence[Dict[str, Any]], diffs: Sequence[Dict[str, Any]]) -> List[Rule]:
        """Apply each candidate to the pairs in its scope; keep those strong enough."""
        from rapidfuzz.distance import Levenshtein

        distance = Levenshtein.distance
        contexts = [eval_context(d) for d in diffs]
        base = [distance(d["bad_output"], d["fixed_output"]) for d in diffs]
        rules: List[Rule] = []
        for candidate in found:
            scope = self._scope(candidate, diffs)
            candidate["scope"] = scope
            support_ids: List[str] = []
            harm = 0
            entries = _compile_rules([candidate])
            for diff, context, before in zip(diffs, contexts, base):
                if scope is not None and context.get("function_name") != scope:
                    continue
                bad, fixed = diff["bad_output"], diff["fixed_output"]
                if _apply_rules(entries, fixed, context) != fixed:
                    harm += 1
                if diff["identical"]:
                    continue
                after = _apply_rules(entries, bad, context)
                if after != bad:
                    # Banded distance (cutoff): cheap even for huge texts; only "closer?" matters.
                    if before and distance(after, fixed, score_cutoff=before - 1) < before:
                        support_ids.append(diff["pair_id"])
                    else:
                        harm += 1
            support = len(support_ids)
            confidence = support / (support + harm) if support + harm else 0.0
            self.last_scores[candidate["id"]] = {"support": support, "harm": harm, "confidence": confidence}
            if support >= self.min_support and confidence >= self.min_confidence:
                rules.append(_to_rule(candidate, support, confidence, sorted(support_ids)))
        return rules

    @staticmethod
    def _uncovered(rules: List[Rule], changed: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Corrected pairs whose bad output the rules do not bring closer to the fix."""
        from rapidfuzz.distance import Levenshtein

        entries = _compile_rules([to_hook_dict(r) for r in rules])
        left = []
        for diff in changed:
            bad, fixed = diff["bad_output"], diff["fixed_output"]
            after = _apply_rules(entries, bad, eval_context(diff))
            if Levenshtein.distance(after, fixed) >= Levenshtein.distance(bad, fixed):
                left.append(diff)
        return left

    @staticmethod
    def _scope(candidate: Dict[str, Any], diffs: Sequence[Dict[str, Any]]) -> Optional[str]:
        """The function name shared by every pair the candidate came from, else None."""
        mined = set(candidate.get("mined_from") or ())
        names = {d["context"].get("function_name") for d in diffs if d["pair_id"] in mined}
        if len(names) == 1:
            name = names.pop()
            return name if isinstance(name, str) else None
        return None

    def _prompt_rules(self, diffs: Sequence[Dict[str, Any]], output_rules: List[Rule]) -> List[Rule]:
        """Per function: add learned guidance and a corrected example to similar prompts."""
        by_scope: Dict[Optional[str], List[Dict[str, Any]]] = {}
        for diff in diffs:
            if diff["identical"]:
                continue
            name = diff["context"].get("function_name")
            by_scope.setdefault(name if isinstance(name, str) else None, []).append(diff)
        rules = []
        for scope in sorted(by_scope, key=lambda s: (s is not None, s or "")):
            members = by_scope[scope]
            if len(members) < self.min_support:
                continue
            counts: Counter = Counter()
            for diff in members:
                counts.update({w for w in _KEYWORD_RE.findall(diff["input_prompt"].lower()) if len(w) > 2})
            keywords = sorted(w for w, n in counts.items() if n >= 0.5 * len(members) and not w.isdigit())[:12]
            if scope is None and not keywords:
                continue  # would fire on every prompt
            scoped = [r for r in output_rules if r.condition.get("scope") in (None, scope)]
            lines = [f"- {r.description}" for r in scoped[:8]]
            example = self._central_example(members)
            block = "\n\nGuidance learned from corrected answers:"
            block += ("\n" + "\n".join(lines)) if lines else ""
            block += (
                "\nExample of a corrected answer:\nInput: "
                + example["input_prompt"][:MAX_EXAMPLE_CHARS]
                + "\nAnswer: "
                + example["fixed_output"][:MAX_EXAMPLE_CHARS]
            )
            candidate = {
                "id": mining.rule_id("prompt", [scope, keywords]),
                "kind": "prompt",
                "target": "prompt",
                "priority": 10,
                "description": f"Add guidance and a corrected example to prompts like the corrected ones ({scope or 'any function'})",
                "scope": scope,
                "keywords": keywords,
                "min_overlap": 0.5,
                "block": block,
            }
            entries = _compile_rules([candidate])
            hits = [d["pair_id"] for d in members if _apply_rules(entries, d["input_prompt"], eval_context(d)) != d["input_prompt"]]
            confidence = len(hits) / len(members)
            if len(hits) >= self.min_support and confidence >= self.min_confidence:
                rules.append(_to_rule(candidate, len(hits), confidence, sorted(hits)))
        return rules

    @staticmethod
    def _central_example(members: List[Dict[str, Any]]) -> Dict[str, Any]:
        """The corrected pair whose input embedding is nearest the group's centroid."""
        vectors = np.array([m.get("input_vector") or [0.0] for m in members], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] < 2:
            return members[0]
        centroid = vectors.mean(axis=0)
        return members[int(np.argmax(vectors @ centroid))]

    def _llm_candidates(self, diffs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        try:
            return list(self.llm.propose(diffs))
        except Exception as exc:  # noqa: BLE001 - LLM help is optional; heuristics stand alone
            logger.warning("LLM-assisted synthesis failed, using heuristics only: %s: %s", type(exc).__name__, exc)
            return []
