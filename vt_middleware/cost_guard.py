"""Seed-compatible cost guard: ``from vt_middleware.cost_guard import check_budget, ...``.

A thin door into :mod:`vt_middleware.train.cost` (prices, epochs, the estimate) and
:mod:`vt_middleware.tokens` (offline tiktoken counts); the trainers use the same
functions and raise the same :class:`BudgetExceededError`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Optional, Union

from .chatml import validate_chat_jsonl
from .errors import BudgetExceededError, ConfigError
from .train.cost import check_budget as _check_estimate
from .train.cost import estimate_from_counts, training_price
from .types import CostEstimate

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
Source = Union[str, "os.PathLike[str]", int, CostEstimate]


def count_tokens_in_jsonl(path: Union[str, os.PathLike[str]], model: str = DEFAULT_MODEL) -> int:
    """Training tokens of one epoch over a chat JSONL file (OpenAI's per-message counting).
    Raises :class:`~vt_middleware.errors.DataError` naming the file and the bad lines."""
    return validate_chat_jsonl(path, model=model).raise_if_invalid().n_tokens


def _check_count(token_count: int) -> int:
    if isinstance(token_count, bool) or not isinstance(token_count, int) or token_count < 0:
        raise ConfigError(f"token_count must be a non-negative integer, got {token_count!r}")
    return token_count


def estimate_training_cost(token_count: int, model: str = DEFAULT_MODEL, n_epochs: int = 3) -> float:
    """USD for training ``model`` on ``token_count`` tokens for ``n_epochs`` epochs."""
    return estimate_from_counts(model, 0, _check_count(token_count), n_epochs).usd


def estimate(source: Source, model: str = DEFAULT_MODEL, n_epochs: Union[int, str] = 3) -> CostEstimate:
    """A :class:`CostEstimate` for a JSONL path or a token count (an estimate is returned as is)."""
    if isinstance(source, CostEstimate):
        return source
    if isinstance(source, int) and not isinstance(source, bool):
        return estimate_from_counts(model, 0, _check_count(source), n_epochs)
    if isinstance(source, (str, os.PathLike)):
        training_price(model)  # an unknown model fails before the file is read
        report = validate_chat_jsonl(source, model=model).raise_if_invalid()
        return estimate_from_counts(model, report.n_examples, report.n_tokens, n_epochs)
    raise ConfigError(
        f"check_budget: expected a JSONL path, a token count or a CostEstimate, got {type(source).__name__}"
    )


def check_budget(
    source: Source, model: str = DEFAULT_MODEL, max_budget_usd: Optional[float] = None, n_epochs: Union[int, str] = 3
) -> CostEstimate:
    """Estimate the job and raise :class:`BudgetExceededError` when it costs more than
    ``max_budget_usd`` (None: no limit); returns the estimate (``within_budget`` True)."""
    if max_budget_usd is not None and (
        isinstance(max_budget_usd, bool) or not isinstance(max_budget_usd, (int, float)) or max_budget_usd < 0
    ):
        raise ConfigError(f"max_budget_usd must be a non-negative number or None, got {max_budget_usd!r}")
    found = replace(estimate(source, model, n_epochs), max_budget_usd=max_budget_usd)
    _check_estimate(found, max_budget_usd)
    return found


__all__ = [
    "DEFAULT_MODEL",
    "BudgetExceededError",
    "CostEstimate",
    "check_budget",
    "count_tokens_in_jsonl",
    "estimate",
    "estimate_training_cost",
]
