"""evolve stage: TrainingPipeline, evaluation gate, promotion/hot swap, the Evolver thread."""
from .evolver import Evolver, parse_interval
from .gate import Contender, EvaluationGate, GateConfig, GateDecision, GateError, split_holdout
from .pipeline import PipelineBusyError, TrainingPipeline
from .run_records import RunRecorder, list_runs, load_run, runs_dir
from .swap import Promoter, get_promoter, promote, promotion_history, rollback, sync_from_store

__all__ = [
    "TrainingPipeline", "PipelineBusyError", "Evolver", "parse_interval", "EvaluationGate", "GateConfig",
    "GateDecision",
    "GateError", "Contender", "split_holdout", "Promoter", "get_promoter", "promote", "rollback",
    "sync_from_store", "promotion_history", "RunRecorder", "load_run", "list_runs", "runs_dir",
]
