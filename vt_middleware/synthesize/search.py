"""Choosing the emitted rules: every candidate scored on every training text, then a greedy
search for the ordered list that fixes the most pairs exactly.

A candidate *fires* on a text when it changes it; the fire is *on path* when it moves the text
closer to the fix and its edit lies on a shortest token edit path to the fix (distance before =
the rule's edit + what is left) or, where two neighbouring defects give edit distance a cheaper
path, removes only tokens the fix removes and adds only tokens it adds (:func:`consistent`); it
moves the output *away* when the distance grows. Before the search, a candidate is dropped when
it changes any output that needed no fix (fixed outputs, identical pairs) or more than
``max_negative_share`` of the negatives (captured calls nobody corrected). The search then
repeatedly appends the candidate with the most new exact fixes less its off-path fires (then
the largest distance gain, then the most general: see :func:`generality`) that breaks no pair
already fixed, is on path for at least ``min_support`` pairs and has ``on path / fired >=
min_precision`` on the texts as they are at that point -- so the list
and its order are what reproduce the training fixes, defects combined in one output included.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .analyzer import tokenize
from .hook_runtime import _apply_one, _compile_rules

Text = Tuple[str, Dict[str, Any]]  # (output, hook context)


def token_distance(a: Sequence[str], b: Sequence[str], cutoff: Optional[int] = None) -> int:
    """Token edit distance (``cutoff + 1`` when it is larger than ``cutoff``)."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(a, b, score_cutoff=cutoff))


@dataclass
class Chosen:
    """One selected candidate with its evidence at the moment it was chosen."""

    candidate: Dict[str, Any]
    fired: int
    closer: int
    away: int
    exact_gain: int
    sources: List[str]
    harm_fixed: int = 0
    harm_negative: int = 0


@dataclass
class SearchResult:
    chosen: List[Chosen]
    outputs: List[str]  # each training bad output after the chosen rules
    scores: Dict[str, Dict[str, Any]] = field(default_factory=dict)


# Line-level rules and normalisers survive other edits on the same text better than phrase rewrites.
KIND_RANK = {"line_insert": 3, "line_remove": 3, "append": 3, "prepend": 3, "normalize": 2}


def generality(candidate: Dict[str, Any]) -> Tuple[int, int, int]:
    """Higher is more general: the kind's rank, then fewer literal characters to match, then a
    shorter pattern."""
    pattern = candidate.get("pattern") or ""
    return KIND_RANK.get(candidate["kind"], 1), -len(candidate.get("anchor") or pattern), -len(pattern)


def _in_scope(candidate: Dict[str, Any], context: Dict[str, Any]) -> bool:
    scope = candidate.get("scope")
    return scope is None or context.get("function_name") == scope


class _Compiled:
    def __init__(self, candidate: Dict[str, Any]) -> None:
        entries = _compile_rules([candidate])
        self.candidate = candidate
        self.ok = bool(entries)
        self.regex = entries[0][1] if entries else None
        anchored = candidate["kind"] in ("replace", "remove", "line_remove", "line_insert")
        self.anchor = (candidate.get("anchor") or "") if anchored else ""
        self.scope = candidate.get("scope")
        # a cheap necessary condition for firing: the pattern occurs somewhere in the text
        substitutes = candidate["kind"] in ("replace", "remove", "line_remove")
        self.quick = self.regex if substitutes and self.regex is not None else None

    def may_fire(self, texts: Sequence[str], contexts: Sequence[Dict[str, Any]]) -> List[int]:
        """Indexes of the texts this rule can change (in scope, holding its anchor)."""
        anchor = self.anchor
        return [
            i
            for i, (text, context) in enumerate(zip(texts, contexts))
            if (not anchor or anchor in text) and _in_scope(self.candidate, context)
        ]

    def apply(self, text: str, context: Dict[str, Any]) -> str:
        if not _in_scope(self.candidate, context):
            return text
        return _apply_one(self.candidate, self.regex, text, context)


def consistent(before: Sequence[str], after: Sequence[str], fixed: Sequence[str]) -> bool:
    """True when the tokens a rule removed are ones the fix removes and those it added are ones
    the fix adds (as multisets): its edit is part of the fix even where edit distance finds a
    cheaper path through two neighbouring defects."""
    have, got, want = Counter(before), Counter(after), Counter(fixed)
    removed, added = have - got, got - have
    to_remove, to_add = have - want, want - have
    return all(to_remove[t] >= n for t, n in removed.items()) and all(to_add[t] >= n for t, n in added.items())


def moves_toward(before: str, after: str, fixed: str) -> bool:
    """True when ``after`` is closer to ``fixed`` than ``before`` by token edit distance, or the
    change is :func:`consistent` with the fix."""
    old, new, target = tokenize(before), tokenize(after), tokenize(fixed)
    return token_distance(new, target) < token_distance(old, target) or consistent(old, new, target)


def harm_counts(compiled: _Compiled, texts: Sequence[Text]) -> int:
    """How many of ``texts`` the rule changes."""
    anchor, quick, scope = compiled.anchor, compiled.quick, compiled.scope
    changed = 0
    for text, context in texts:
        if (anchor and anchor not in text) or (scope is not None and context.get("function_name") != scope):
            continue
        if quick is not None and quick.search(text) is None:
            continue
        changed += _apply_one(compiled.candidate, compiled.regex, text, context) != text
    return changed


def greedy_search(
    candidates: Sequence[Dict[str, Any]],
    pairs: Sequence[Tuple[str, str, str, Dict[str, Any]]],
    goods: Sequence[Text],
    negatives: Sequence[Text] = (),
    *,
    min_support: int = 2,
    min_precision: float = 0.8,
    max_negative_share: float = 0.02,
    max_rules: int = 60,
) -> SearchResult:
    """``pairs``: (pair_id, bad, fixed, context) of corrected outputs; ``goods``: outputs that
    needed no fix; ``negatives``: uncorrected captured outputs. Deterministic for equal input."""
    scores: Dict[str, Dict[str, Any]] = {}
    fixed_tokens = [tokenize(fixed) for _, _, fixed, _ in pairs]
    current = [bad for _, bad, _, _ in pairs]
    current_tokens = [tokenize(bad) for bad in current]
    distance = [token_distance(tokens, target) for tokens, target in zip(current_tokens, fixed_tokens)]
    names = [context.get("function_name") for _, _, _, context in pairs]
    contexts = [context for _, _, _, context in pairs]
    exact = [bad == fixed for _, bad, fixed, _ in pairs]

    def effect(compiled: _Compiled, index: int) -> Optional[Tuple[str, int, bool]]:
        """(text after the rule, its distance to the fix, whether the rule's edit lies on a
        shortest edit path to the fix) -- None when the rule leaves the text alone."""
        before = current[index]
        if compiled.anchor and compiled.anchor not in before:
            return None
        if compiled.scope is not None and names[index] != compiled.scope:
            return None
        if compiled.quick is not None and compiled.quick.search(before) is None:
            return None
        _, _, fixed, context = pairs[index]
        after = _apply_one(compiled.candidate, compiled.regex, before, context)
        if after == before:
            return None
        if after == fixed:
            return after, 0, True
        after_tokens = tokenize(after)
        left = token_distance(after_tokens, fixed_tokens[index])
        if left >= distance[index]:
            return after, left, False
        budget = distance[index] - left
        if token_distance(current_tokens[index], after_tokens, budget) == budget:
            return after, left, True
        return after, left, consistent(current_tokens[index], after_tokens, fixed_tokens[index])

    # Kept: changes no output that needed no fix, few enough negatives, and on path for at
    # least min_support pairs now (normalisers stay: they may apply once other rules ran).
    pool: List[Tuple[_Compiled, int, int]] = []
    effects: List[Dict[int, Tuple[str, int, bool]]] = []  # per pool slot: pair index -> effect
    negative_limit = max_negative_share * len(negatives)
    for candidate in sorted(candidates, key=lambda c: c["id"]):
        compiled = _Compiled(candidate)
        if not compiled.ok:
            scores[candidate["id"]] = {"dropped": "pattern is not provably linear-time"}
            continue
        found: Dict[int, Tuple[str, int, bool]] = {}
        for index in compiled.may_fire(current, contexts):
            result = effect(compiled, index)
            if result is not None:
                found[index] = result
        on_path = sum(1 for _, _, ok in found.values() if ok)
        harm_fixed = harm_counts(compiled, goods)
        harm_negative = harm_counts(compiled, negatives)
        score = scores[candidate["id"]] = {
            "support": on_path,
            "fired": len(found),
            "harm_fixed": harm_fixed,
            "harm_negative": harm_negative,
            "harm": harm_fixed + harm_negative + len(found) - on_path,
        }
        if harm_fixed:
            score["dropped"] = "changes outputs that needed no fix"
        elif harm_negative > negative_limit:
            score["dropped"] = "changes too many uncorrected outputs"
        elif on_path < min_support and candidate["kind"] != "normalize":
            score["dropped"] = f"on path for {on_path} pair(s), below min_support"
        else:
            pool.append((compiled, harm_fixed, harm_negative))
            effects.append(found)
    chosen: List[Chosen] = []
    alive = list(range(len(pool)))
    while alive and len(chosen) < max_rules:
        best_key, best = None, None
        for slot in alive:
            found = effects[slot]
            if len(found) < min_support:
                continue
            if any(exact[i] for i in found):
                continue  # would break a pair that is already fixed
            closer = sum(1 for _, _, on_path in found.values() if on_path)
            if closer < min_support or closer < min_precision * len(found):
                continue
            gain = sum(distance[i] - d for i, (_, d, _) in found.items())
            if gain <= 0:
                continue
            newly = sum(1 for _, d, _ in found.values() if d == 0)
            away = sum(1 for i, (_, d, _) in found.items() if d > distance[i])
            # ties go to the most general candidate: it composes with fixes it was not trained beside
            key = (newly - (len(found) - closer), gain, -away, *generality(pool[slot][0].candidate))
            if best_key is None or key > best_key:
                best_key, best = key, slot
        if best is None:
            break
        found = effects[best]
        compiled, harm_fixed, harm_negative = pool[best]
        chosen.append(
            Chosen(
                compiled.candidate,
                fired=len(found),
                closer=sum(1 for _, _, on_path in found.values() if on_path),
                away=sum(1 for i, (_, d, _) in found.items() if d > distance[i]),
                exact_gain=sum(1 for _, d, _ in found.values() if d == 0),
                sources=sorted(pairs[i][0] for i, (_, _, on_path) in found.items() if on_path),
                harm_fixed=harm_fixed,
                harm_negative=harm_negative,
            )
        )
        for index, (text, d, _) in found.items():
            current[index], distance[index], exact[index] = text, d, d == 0
            current_tokens[index] = tokenize(text)
        alive.remove(best)
        touched = list(found)
        for slot in alive:
            compiled, known = pool[slot][0], effects[slot]
            anchor = compiled.anchor
            for index in touched:
                if anchor and anchor not in current[index]:
                    known.pop(index, None)
                    continue
                result = effect(compiled, index)
                if result is None:
                    known.pop(index, None)
                else:
                    known[index] = result
    for item in chosen:
        scores[item.candidate["id"]].update(
            chosen_fired=item.fired, chosen_on_path=item.closer, away=item.away, exact_gain=item.exact_gain, chosen=True
        )
    return SearchResult(chosen, current, scores)
