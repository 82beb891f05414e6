"""Validation of a generated hook before it may be activated.

Checks, in order: the source parses (libcst and ast), compiles, imports in
isolation under a throwaway module name, and -- applied to the training pairs --
each rule reproduces the fixes it claims (with that rule alone, every source pair
moves toward its fixed output: closer by token edit distance, or only removing and
adding tokens the fix removes and adds). Whole-hook effects on the pairs are reported.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import libcst as cst

from ..runtime.hooks import import_hook_file
from ..types import Rule
from .rules import eval_context
from .search import moves_toward


def validate_hook(path: str | Path, rules: Sequence[Rule], diffs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Validate the hook file at ``path`` against ``rules`` and training ``diffs``; never raises."""
    from rapidfuzz.distance import Levenshtein

    result: Dict[str, Any] = {
        "ok": False,
        "parsed": False,
        "compiled": False,
        "imported": False,
        "rules_checked": 0,
        "rules_failed": [],
        "pairs": len(diffs),
        "exact_fixed": 0,
        "improved": 0,
        "worsened": 0,
        "good_changed": 0,
        "errors": [],
    }
    try:
        source = Path(path).read_text(encoding="utf-8")
        cst.parse_module(source)
        ast.parse(source)
        result["parsed"] = True
        compile(source, str(path), "exec")
        result["compiled"] = True
        module = import_hook_file(Path(path), "validate")
        sys.modules.pop(module.__name__, None)  # isolation: never reachable by name afterwards
        result["imported"] = True
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        result["errors"].append(f"{type(exc).__name__}: {exc}")
        return result
    try:
        by_id = {d["pair_id"]: d for d in diffs}
        failed: List[str] = []
        for rule in rules:
            result["rules_checked"] += 1
            for source_id in rule.sources:
                diff = by_id.get(source_id)
                if diff is None:
                    continue
                context = eval_context(diff)
                if rule.target == "prompt":
                    text = diff["input_prompt"]
                    ok = module.apply_rules(text, context, [rule.rule_id], "prompt") != text
                else:
                    bad, fixed = diff["bad_output"], diff["fixed_output"]
                    after = module.apply_rules(bad, context, [rule.rule_id], "output")
                    ok = after != bad and moves_toward(bad, after, fixed)
                if not ok:
                    failed.append(rule.rule_id)
                    break
        result["rules_failed"] = failed
        for diff in diffs:
            context = eval_context(diff)
            bad, fixed = diff["bad_output"], diff["fixed_output"]
            if module.intercept_output(fixed, context) != fixed:
                result["good_changed"] += 1
            if diff["identical"]:
                continue
            after = module.intercept_output(bad, context)
            before_d = Levenshtein.distance(bad, fixed)
            after_d = Levenshtein.distance(after, fixed, score_cutoff=before_d + 1)
            result["exact_fixed"] += after == fixed
            result["improved"] += after_d < before_d
            result["worsened"] += after_d > before_d
        result["ok"] = not failed
    except Exception as exc:  # noqa: BLE001
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    return result
