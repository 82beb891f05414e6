"""evolve stage: TrainingPipeline, evaluation gate, promotion/hot swap, the Evolver thread."""

from .evolver import Evolver, parse_interval
from .gate import Contender, EvaluationGate, GateConfig, GateDecision, GateError, split_holdout
from .pipeline import PipelineBusyError, TrainingPipeline
from .run_records import RunRecorder, list_runs, load_run, runs_dir
from .swap import Promoter, get_promoter, promote, promotion_history, rollback, sync_from_store

__all__ = [
    "Contender",
    "EvaluationGate",
    "Evolver",
    "GateConfig",
    "GateDecision",
    "GateError",
    "PipelineBusyError",
    "Promoter",
    "RunRecorder",
    "TrainingPipeline",
    "get_promoter",
    "list_runs",
    "load_run",
    "parse_interval",
    "promote",
    "promotion_history",
    "rollback",
    "runs_dir",
    "split_holdout",
    "sync_from_store",
]
