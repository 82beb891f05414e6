"""Feedback pairs -> analysed -> rules -> generated, validated hook version (optionally active)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ..errors import DataError, HookError
from ..types import FeedbackPair, Rule
from .analyzer import FeedbackDiffAnalyzer
from .codegen import build_module
from .rules import RuleSetSynthesizer
from .validate import validate_hook
from .versions import HookVersionStore


@dataclass
class SynthesisResult:
    """Everything one synthesis run produced."""

    hook_path: str
    version: str
    rules: List[Rule]
    validation: Dict[str, Any]
    conflicts: Dict[str, Any]
    activated: bool = False
    dropped_by_validation: List[str] = field(default_factory=list)
    estimate: Dict[str, Any] = field(default_factory=dict)


def synthesize_version(
    pairs: Sequence[FeedbackPair],
    output_dir: str | os.PathLike | None = None,
    *,
    activate: bool = False,
    min_support: int = 2,
    min_confidence: float = 0.8,
    analyzer: Optional[FeedbackDiffAnalyzer] = None,
    synthesizer: Optional[RuleSetSynthesizer] = None,
    llm: Optional[Any] = None,
    prompt_rules: bool = True,
    negatives: Optional[Sequence[Any]] = None,
) -> SynthesisResult:
    """Synthesise a new immutable hook version in ``output_dir`` (default: config hooks_dir).

    ``llm`` (e.g. :class:`~.llm.LLMRuleProposer`) is asked for rules covering the pairs the
    heuristics left unfixed; its proposals are scored on the pairs like mined ones.
    ``prompt_rules=False`` leaves prompts alone (small models can be derailed by added guidance).
    ``negatives``: outputs of the same functions nobody corrected (strings or (output, context)
    tuples); a rule changing more than a set share of them is dropped, and the harm rate on them
    goes into the manifest with the k-fold estimate (``estimate``).

    Rules whose claims do not hold in the generated module are dropped and the module
    is generated again; the manifest records the validation of what was written.
    """
    pairs = list(pairs)
    if not pairs:
        raise DataError("pairs is empty: synthesis needs at least one FeedbackPair")
    if output_dir is None:
        from ..config import get_config

        output_dir = get_config().hooks_dir
    diffs = (analyzer or FeedbackDiffAnalyzer()).analyze_many(pairs)
    synthesizer = synthesizer or RuleSetSynthesizer(
        min_support=min_support, min_confidence=min_confidence, llm=llm, prompt_rules=prompt_rules
    )
    rules = synthesizer.synthesize(diffs, negatives=negatives)
    store = HookVersionStore(output_dir)
    version = store.reserve_version()
    hook_path = store.hook_path(version)
    dropped: List[str] = []
    for _attempt in range(3):
        built = build_module(rules, version=version)
        if not built.ok or built.code is None:
            raise HookError(f"hook generation failed: {'; '.join(built.errors)}")
        hook_path.write_text(built.code, encoding="utf-8")
        validation = validate_hook(hook_path, rules, diffs)
        if validation["ok"] or not validation["rules_failed"]:
            break
        dropped += validation["rules_failed"]
        rules = [r for r in rules if r.rule_id not in validation["rules_failed"]]
    manifest = store.create_version(
        built.code,
        rules=rules,
        source_pairs=[p.pair_id for p in pairs],
        validation=validation,
        version=version,
        extra={
            "conflicts": synthesizer.last_report.to_dict(),
            "dropped_by_validation": dropped,
            "estimate": synthesizer.last_estimate,
        },
    )
    activated = False
    if activate and validation["ok"]:
        store.activate(version, reason="synthesis")
        activated = True
    return SynthesisResult(
        hook_path=str(hook_path),
        version=manifest["version"],
        rules=rules,
        validation=validation,
        conflicts=synthesizer.last_report.to_dict(),
        activated=activated,
        dropped_by_validation=dropped,
        estimate=synthesizer.last_estimate,
    )


def run_synthesis_pipeline(
    pairs: Sequence[FeedbackPair], output_dir: str | os.PathLike = "./hooks_generated", **options: Any
) -> str:
    """Seed API: synthesise a new hook version from ``pairs``; return its hook file path."""
    return synthesize_version(pairs, output_dir, **options).hook_path
