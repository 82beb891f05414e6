"""train stage: trainer strategies (OpenAI API, local LoRA), cost guard, JSONL validation.

Importing this package is light; torch/transformers/peft load when a LocalTrainer trains.
"""
from .base import BaseTrainer, step_metrics
from .cost import BudgetExceededError, CostEstimate, check_budget, estimate_cost, training_price
from ..chatml import ValidationReport, validate_chat_jsonl
from .local_trainer import LocalTrainer
from .openai_trainer import OpenAITrainer
from ..tokens import count_chat_tokens, count_tokens, ensure_offline_encodings

__all__ = [
    "BaseTrainer", "OpenAITrainer", "LocalTrainer", "step_metrics", "CostEstimate", "estimate_cost",
    "check_budget", "training_price", "BudgetExceededError", "ValidationReport", "validate_chat_jsonl",
    "count_tokens", "count_chat_tokens", "ensure_offline_encodings",
]
