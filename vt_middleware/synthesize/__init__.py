"""synthesize stage: feedback diffs -> rules -> libcst-generated hook versions."""

from .analyzer import FeedbackDiffAnalyzer
from .codegen import CodegenResult, HookScriptGenerator, build_module
from .conflicts import ConflictReport, resolve_conflicts
from .llm import LLMRuleProposer
from .pipeline import SynthesisResult, run_synthesis_pipeline, synthesize_version
from .rules import RuleSetSynthesizer
from .validate import validate_hook
from .versions import HookVersionStore

__all__ = [
    "CodegenResult",
    "ConflictReport",
    "FeedbackDiffAnalyzer",
    "HookScriptGenerator",
    "HookVersionStore",
    "LLMRuleProposer",
    "RuleSetSynthesizer",
    "SynthesisResult",
    "build_module",
    "resolve_conflicts",
    "run_synthesis_pipeline",
    "synthesize_version",
    "validate_hook",
]
