"""Seed-compatible names for the synthesize stage."""
from .synthesize import (  # noqa: F401
    FeedbackDiffAnalyzer,
    HookScriptGenerator,
    HookVersionStore,
    RuleSetSynthesizer,
    run_synthesis_pipeline,
)

__all__ = ["FeedbackDiffAnalyzer", "RuleSetSynthesizer", "HookScriptGenerator", "run_synthesis_pipeline", "HookVersionStore"]
