"""Rule synthesis: mine candidates from diffs, score them on the pairs, keep the strong ones."""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from ..errors import ConfigError, DataError
from ..types import Rule
from . import candidates as mining
from .conflicts import ConflictReport, resolve_conflicts
from .crossval import cross_validate, fold_of
from .hook_runtime import _apply_rules, _compile_rules
from .line_edits import mine_line_edits
from .search import SearchResult, generality, greedy_search

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
    condition_keys = {"scope", "pattern", "anchor", "ignore_case", "keywords", "min_overlap", "position", "anchor_line"}
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


Negative = Union[str, Tuple[str, Dict[str, Any]]]
MAX_CANDIDATES = 300
CV_MAX_PAIRS = 400  # the self-estimate runs on a fixed sample of this many corrected pairs at most


def _negatives(negatives: Optional[Sequence[Negative]]) -> List[Tuple[str, Dict[str, Any]]]:
    out = []
    for item in negatives or ():
        if isinstance(item, str):
            item = (item, {})
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict)):
            raise DataError(f"negatives are output strings or (output, context dict) tuples, got {item!r:.60}")
        text, context = item
        out.append((text, context))
    return out


def _variants_pruned(found: List[Dict[str, Any]], keep: int = 2) -> List[Dict[str, Any]]:
    """At most ``keep`` candidates per (kind, source pairs) -- context variants of one edit, the
    most general first -- and per pattern, the best supported (a slot
    variant beats the literal values it generalises)."""

    def prune(items: List[Dict[str, Any]], group_key: Any, order: Any) -> List[Dict[str, Any]]:
        groups: Dict[Any, List[Dict[str, Any]]] = {}
        for candidate in items:
            groups.setdefault(group_key(candidate), []).append(candidate)
        return [c for group in groups.values() for c in sorted(group, key=order)[:keep]]

    found = prune(
        found, lambda c: (c["kind"], tuple(c["mined_from"])), lambda c: (tuple(-g for g in generality(c)), c["id"])
    )
    found = prune(found, lambda c: (c["kind"], c.get("pattern") or c["id"]), lambda c: (-len(c["mined_from"]), c["id"]))
    return sorted(found, key=lambda c: c["id"])


def _scope(candidate: Dict[str, Any], names: Dict[str, Any]) -> Optional[str]:
    """The function name shared by every pair the candidate came from, else None."""
    found = {names.get(pair_id) for pair_id in candidate.get("mined_from") or ()}
    if len(found) == 1:
        name = found.pop()
        return name if isinstance(name, str) else None
    return None


class RuleSetSynthesizer:
    """Feedback diffs -> an ordered rule list verified on the pairs, with a k-fold self-estimate.

    Candidates (aligned token edits with typed slots, line edits, additions, normalisers and,
    with ``llm``, proposals) go through :func:`~.search.greedy_search`; ``min_confidence`` is
    the precision a rule needs on the texts it fires on. With ``folds >= 2`` the same miner and
    search run k-fold (:mod:`.crossval`); a rule whose held-out precision is below
    ``min_cv_precision`` is not emitted. ``last_estimate`` holds the figures, ``last_scores``
    each candidate's evidence.
    """

    def __init__(
        self,
        min_support: int = 2,
        min_confidence: float = 0.8,
        prompt_rules: bool = True,
        llm: Optional[Any] = None,
        folds: int = 5,
        min_cv_precision: float = 0.8,
        max_negative_share: float = 0.02,
        max_rules: int = 60,
    ) -> None:
        if min_support < 1:
            raise ConfigError(f"min_support must be >= 1, got {min_support}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if not 0.0 <= max_negative_share <= 1.0:
            raise ConfigError(f"max_negative_share must be in [0, 1], got {max_negative_share}")
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.prompt_rules = prompt_rules
        self.llm = llm
        self.folds = folds
        self.min_cv_precision = min_cv_precision
        self.max_negative_share = max_negative_share
        self.max_rules = max_rules
        self.last_report: ConflictReport = ConflictReport()
        self.last_scores: Dict[str, Dict[str, Any]] = {}
        self.last_estimate: Dict[str, Any] = {}

    def synthesize(self, diffs: Sequence[Dict[str, Any]], negatives: Optional[Sequence[Negative]] = None) -> List[Rule]:
        """Rules chosen on ``diffs`` (analyzer records); ``negatives``: outputs of the same
        functions that nobody corrected, as strings or (output, context) tuples."""
        for diff in diffs:
            if not isinstance(diff, dict) or "segments" not in diff:
                raise DataError("synthesize() takes FeedbackDiffAnalyzer.analyze() results")
        negative_texts = _negatives(negatives)
        self.last_scores, self.last_estimate = {}, {}
        self.last_report = ConflictReport()
        if not diffs:
            return []
        changed = [d for d in diffs if not d["identical"]]
        goods = [(d["pair_id"], (d["fixed_output"], eval_context(d))) for d in diffs]
        extra: List[Dict[str, Any]] = []
        result = self._select(changed, [g for _, g in goods], negative_texts)
        if self.llm is not None:
            left = [d for d, out in zip(changed, result.outputs) if out != d["fixed_output"]]
            extra = self._llm_candidates(left) if left else []
            if extra:
                result = self._select(changed, [g for _, g in goods], negative_texts, extra)
        if self.folds >= 2 and len(changed) >= 2:
            sample = sorted(changed, key=lambda d: fold_of(d["pair_id"], 1 << 30))[:CV_MAX_PAIRS]
            left_out = {d["pair_id"] for d in changed} - {d["pair_id"] for d in sample}
            self.last_estimate = cross_validate(
                sample,
                [g for g in goods if g[0] not in left_out],
                negative_texts,
                lambda d, g, n: self._select(d, g, n, extra),
                k=self.folds,
            )
            self.last_estimate["sampled_pairs"] = len(sample)
            weak = self._weak(result)
            if weak:
                result = self._select(changed, [g for _, g in goods], negative_texts, extra, exclude=weak)
                self.last_estimate["not_emitted"] = sorted(weak)
        self.last_scores = result.scores
        total = len(result.chosen)
        rules = [
            _to_rule(
                {**item.candidate, "priority": 1000 - index},
                item.closer,
                item.closer / item.fired if item.fired else 0.0,
                item.sources,
            )
            for index, item in enumerate(result.chosen)
        ]
        recency = {d["pair_id"]: str(d.get("created_at") or "") for d in diffs}
        # The search verified the list in order, so a rule sharing another's trigger stays (each
        # fixes its own pairs where it runs); the report still names such pairs of rules.
        _, self.last_report = resolve_conflicts([copy.deepcopy(r) for r in rules], recency)
        self.last_estimate["training"] = {
            "pairs": len(changed),
            "exact_fixed": sum(out == d["fixed_output"] for d, out in zip(changed, result.outputs)),
            "rules": total,
            "negatives": len(negative_texts),
            "negative_harm_rate": round(
                sum(self._changes(rules, t, c) for t, c in negative_texts) / len(negative_texts), 4
            )
            if negative_texts
            else None,
        }
        if self.prompt_rules:
            rules += self._prompt_rules(diffs, rules)
        position = {d["pair_id"]: i for i, d in enumerate(diffs)}
        for rule in rules:  # the seed's link from a rule to the (first) pair it was learned from
            rule.source_pair_index = min((position[s] for s in rule.sources if s in position), default=-1)
        return sorted(rules, key=lambda r: (-r.priority, r.rule_id))

    def synthesize_with_llm(
        self, diffs: Sequence[Dict[str, Any]], client: Optional[Any] = None, model: Optional[str] = None
    ) -> List[Rule]:
        """Seed API: :meth:`synthesize` with an LLM proposing rules for the pairs heuristics
        leave unfixed. Uses ``llm`` given at construction, or ``client`` + ``model`` (an
        OpenAI-compatible client) through :class:`~.llm.LLMRuleProposer`."""
        if self.llm is None:
            if client is None or not model:
                missing = " and ".join(n for n, v in (("client", client), ("model", model)) if not v)
                raise ConfigError(
                    f"synthesize_with_llm needs an LLM: {missing} missing; pass "
                    f"synthesize_with_llm(diffs, client=OpenAI(...), model='...') or "
                    f"RuleSetSynthesizer(llm=LLMRuleProposer(client, model))"
                )
            from .llm import LLMRuleProposer

            self.llm = LLMRuleProposer(client, model)
        return self.synthesize(diffs)

    def _weak(self, result: SearchResult) -> Set[str]:
        per_rule = self.last_estimate.get("per_rule", {})
        weak = set()
        for item in result.chosen:
            stats = per_rule.get(item.candidate["id"])
            if stats and stats["fires"] >= 2 and (stats["precision"] or 0.0) < self.min_cv_precision:
                weak.add(item.candidate["id"])
        return weak

    @staticmethod
    def _changes(rules: List[Rule], text: str, context: Dict[str, Any]) -> bool:
        entries = _compile_rules([to_hook_dict(r) for r in rules])
        return _apply_rules(entries, text, context) != text

    def _select(
        self,
        changed: Sequence[Dict[str, Any]],
        goods: Sequence[Tuple[str, Dict[str, Any]]],
        negatives: Sequence[Tuple[str, Dict[str, Any]]],
        extra: Sequence[Dict[str, Any]] = (),
        exclude: Set[str] = frozenset(),
    ) -> SearchResult:
        found = mining.mine_replacements(changed, self.min_support)
        found += mining.mine_additions(changed, self.min_support)
        found += mine_line_edits(changed, self.min_support)
        found = _variants_pruned(found)
        if len(found) > MAX_CANDIDATES:
            found = sorted(found, key=lambda c: (-len(c["mined_from"]), c["id"]))[:MAX_CANDIDATES]
        found += mining.mine_normalizers(changed)
        found += [dict(c) for c in extra]
        names = {d["pair_id"]: d["context"].get("function_name") for d in changed}
        for candidate in found:
            candidate["scope"] = _scope(candidate, names)
        found = [c for c in found if c["id"] not in exclude]
        pairs = [(d["pair_id"], d["bad_output"], d["fixed_output"], eval_context(d)) for d in changed]
        return greedy_search(
            found,
            pairs,
            goods,
            negatives,
            min_support=self.min_support,
            min_precision=self.min_confidence,
            max_negative_share=self.max_negative_share,
            max_rules=self.max_rules,
        )

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
            hits = [
                d["pair_id"]
                for d in members
                if _apply_rules(entries, d["input_prompt"], eval_context(d)) != d["input_prompt"]
            ]
            confidence = len(hits) / len(members)
            if len(hits) >= self.min_support and confidence >= self.min_confidence:
                rules.append(_to_rule(candidate, len(hits), confidence, sorted(hits)))
        return rules

    @staticmethod
    def _central_example(members: List[Dict[str, Any]]) -> Dict[str, Any]:
        """The corrected pair whose input shares the most words with the group's other inputs."""
        words = [set(_KEYWORD_RE.findall(m["input_prompt"].lower())) for m in members]
        counts: Counter = Counter(w for ws in words for w in ws)
        scores = [sum(counts[w] for w in ws) / (len(ws) or 1) for ws in words]
        return members[max(range(len(members)), key=lambda i: (scores[i], -i))]

    def _llm_candidates(self, diffs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        try:
            return list(self.llm.propose(diffs))
        except Exception as exc:  # noqa: BLE001 - LLM help is optional; heuristics stand alone
            logger.warning("LLM-assisted synthesis failed, using heuristics only: %s: %s", type(exc).__name__, exc)
            return []
