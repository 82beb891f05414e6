"""Contradiction detection between rules and their deterministic resolution.

Two rules conflict when they have the same trigger but different actions (one
pattern, two replacements; two parameterisations of one normaliser), or when one
undoes the other (an added suffix that a removal rule deletes; A->B next to B->A).
The winner has more support, then higher priority, then more recent evidence,
then the smaller rule id -- so the same rules always resolve the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..types import Rule


@dataclass
class ConflictReport:
    """What conflict resolution merged and dropped, and why."""

    merged: List[Dict[str, Any]] = field(default_factory=list)
    dropped: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"merged": list(self.merged), "dropped": list(self.dropped)}


def _trigger(rule: Rule) -> Tuple[Any, ...]:
    scope = rule.condition.get("scope")
    if rule.kind == "normalize":
        return (rule.target, scope, "normalize", rule.action.get("normalizer"))
    if rule.kind in ("replace", "remove"):
        return (rule.target, scope, "substitute", rule.condition.get("pattern"))
    return (
        rule.target,
        scope,
        rule.kind,
        rule.condition.get("pattern"),
        rule.condition.get("keywords") and tuple(rule.condition["keywords"]),
    )


def _action(rule: Rule) -> str:
    import json

    return json.dumps(rule.action, sort_keys=True, default=str)


def _rendered(rule: Rule) -> str:
    """The text a substitution/addition rule writes, with slots at their defaults."""
    return "".join(part[1] if part[0] == "lit" else part[2] for part in rule.action.get("parts", []))


def _undoes(remover: Rule, adder: Rule) -> bool:
    """True when ``remover``'s pattern deletes or rewrites what ``adder`` writes."""
    if remover.kind not in ("replace", "remove") or adder.kind not in ("append", "prepend", "replace"):
        return False
    if remover is adder or remover.target != adder.target:
        return False
    scopes = {remover.condition.get("scope"), adder.condition.get("scope")}
    if len(scopes) == 2 and None not in scopes:
        return False
    text = _rendered(adder)
    if not text.strip():
        return False
    try:
        hit = re.search(remover.condition["pattern"], text)
    except re.error:
        return False
    if hit is None:
        return False
    if adder.kind == "replace":  # only a mutual A->B / B->A pair is a contradiction
        try:
            return re.search(adder.condition["pattern"], _rendered(remover)) is not None
        except re.error:
            return False
    return True


def _rank(rules: List[Rule], recency: Mapping[str, str]) -> List[Rule]:
    def newest(rule: Rule) -> str:
        return max((recency.get(s, "") for s in rule.sources), default="")

    ordered = sorted(rules, key=lambda r: r.rule_id)
    return sorted(ordered, key=lambda r: (r.support, r.priority, newest(r)), reverse=True)


def resolve_conflicts(
    rules: List[Rule], recency: Optional[Mapping[str, str]] = None
) -> Tuple[List[Rule], ConflictReport]:
    """Merge duplicates, drop the losers of contradictions; return kept rules and a report."""
    recency = recency or {}
    report = ConflictReport()
    by_trigger: Dict[Tuple[Any, ...], List[Rule]] = {}
    for rule in rules:
        by_trigger.setdefault(_trigger(rule), []).append(rule)
    kept: List[Rule] = []
    for trigger in sorted(by_trigger, key=repr):
        group = _rank(by_trigger[trigger], recency)
        winner = group[0]
        for other in group[1:]:
            if _action(other) == _action(winner):
                merged_sources = sorted(set(winner.sources) | set(other.sources))
                winner.support = len(merged_sources)
                winner.sources = merged_sources
                winner.confidence = max(winner.confidence, other.confidence)
                report.merged.append(
                    {"rule_id": other.rule_id, "into": winner.rule_id, "reason": "same trigger and action"}
                )
            else:
                report.dropped.append(
                    {
                        "rule_id": other.rule_id,
                        "winner": winner.rule_id,
                        "reason": "same trigger, different action",
                        "description": other.description,
                    }
                )
        kept.append(winner)
    result: List[Rule] = []
    for rule in _rank(kept, recency):
        loser_of = next((r for r in result if _undoes(r, rule) or _undoes(rule, r)), None)
        if loser_of is not None:
            report.dropped.append(
                {
                    "rule_id": rule.rule_id,
                    "winner": loser_of.rule_id,
                    "reason": "undoes or is undone by a stronger rule",
                    "description": rule.description,
                }
            )
            continue
        result.append(rule)
    return result, report
