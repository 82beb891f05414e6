"""train stage: trainer strategies (OpenAI API, local LoRA), cost guard, JSONL validation.

Importing this package is light; torch/transformers/peft load when a LocalTrainer trains.
"""

from ..chatml import ValidationReport, validate_chat_jsonl
from ..tokens import count_chat_tokens, count_tokens, ensure_offline_encodings
from .base import BaseTrainer, step_metrics
from .cost import BudgetExceededError, CostEstimate, check_budget, estimate_cost, training_price
from .local_trainer import LocalTrainer
from .openai_trainer import OpenAITrainer

__all__ = [
    "BaseTrainer",
    "BudgetExceededError",
    "CostEstimate",
    "LocalTrainer",
    "OpenAITrainer",
    "ValidationReport",
    "check_budget",
    "count_chat_tokens",
    "count_tokens",
    "ensure_offline_encodings",
    "estimate_cost",
    "step_metrics",
    "training_price",
    "validate_chat_jsonl",
]
