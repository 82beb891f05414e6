"""k-fold self-estimate: how well would the synthesised rules do on pairs they never saw?

The corrected pairs (and the outputs that needed no fix, and the negatives) are split into
``k`` folds by a hash of their ids. For each fold, rules are synthesised from the other folds
with the same miner and search, then applied to the held-out fold: the share of held-out bad
outputs fixed exactly is the expected fix rate, the share of held-out good outputs changed the
expected harm rate. Per rule id: how often it fired on held-out texts and how often that moved
the text closer to its fix (its held-out precision).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Dict, List, Sequence, Tuple

from .analyzer import tokenize
from .search import SearchResult, Text, _Compiled, token_distance

Pair = Tuple[str, str, str, Dict[str, Any]]
Selector = Callable[[Sequence[Dict[str, Any]], Sequence[Text], Sequence[Text]], SearchResult]


def fold_of(key: str, k: int) -> int:
    return int(hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % k


def _run(
    compiled: List[_Compiled],
    text: str,
    context: Dict[str, Any],
    fixed: str,
    per_rule: Dict[str, Dict[str, int]],
    good: bool,
) -> str:
    target = tokenize(fixed) if not good else None
    for rule in compiled:
        after = rule.apply(text, context)
        if after == text:
            continue
        stats = per_rule.setdefault(rule.candidate["id"], {"fires": 0, "closer": 0})
        stats["fires"] += 1
        if target is not None and token_distance(tokenize(after), target) < token_distance(tokenize(text), target):
            stats["closer"] += 1
        text = after
    return text


def cross_validate(
    diffs: Sequence[Dict[str, Any]],
    goods: Sequence[Tuple[str, Text]],
    negatives: Sequence[Text],
    select: Selector,
    k: int = 5,
) -> Dict[str, Any]:
    """``diffs``: corrected pairs; ``goods``: (id, good output) pairs; ``select(diffs, goods,
    negatives)`` synthesises from a training part. Returns the estimate (see module doc)."""
    k = min(k, len(diffs))
    if k < 2:
        return {"folds": 0, "reason": f"{len(diffs)} corrected pair(s): too few to hold any out"}
    tested = exact = goods_tested = goods_changed = neg_tested = neg_changed = 0
    per_rule: Dict[str, Dict[str, int]] = {}
    negative_folds = [i % k for i in range(len(negatives))]
    for fold in range(k):
        train = [d for d in diffs if fold_of(d["pair_id"], k) != fold]
        test = [d for d in diffs if fold_of(d["pair_id"], k) == fold]
        if not train or not test:
            continue
        train_goods = [g for key, g in goods if fold_of(key, k) != fold]
        test_goods = [g for key, g in goods if fold_of(key, k) == fold]
        train_neg = [n for n, f in zip(negatives, negative_folds) if f != fold]
        test_neg = [n for n, f in zip(negatives, negative_folds) if f == fold]
        result = select(train, train_goods, train_neg)
        compiled = [_Compiled(item.candidate) for item in result.chosen]
        for diff in test:
            context = {**diff.get("context", {}), "user_input": diff["input_prompt"]}
            out = _run(compiled, diff["bad_output"], context, diff["fixed_output"], per_rule, good=False)
            tested += 1
            exact += out == diff["fixed_output"]
        for text, context in test_goods:
            goods_tested += 1
            goods_changed += _run(compiled, text, context, text, per_rule, good=True) != text
        for text, context in test_neg:
            neg_tested += 1
            neg_changed += _run(compiled, text, context, text, per_rule, good=True) != text
    for stats in per_rule.values():
        stats["precision"] = round(stats["closer"] / stats["fires"], 4) if stats["fires"] else None
    return {
        "folds": k,
        "held_out_pairs": tested,
        "fix_rate": round(exact / tested, 4) if tested else None,
        "harm_rate": round(goods_changed / goods_tested, 4) if goods_tested else None,
        "negative_harm_rate": round(neg_changed / neg_tested, 4) if neg_tested else None,
        "per_rule": per_rule,
    }
