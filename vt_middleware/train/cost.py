"""Cost guard for fine-tuning: tokens x epochs x price, checked before any API call."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Union

from ..chatml import validate_chat_jsonl
from ..errors import BudgetExceededError, ConfigError
from ..types import CostEstimate
from .local_models import BASE_MODEL_IDS

# USD per 1M training tokens (OpenAI price list, supervised fine-tuning).
# Keys match a model name exactly or as a prefix ("gpt-4o-mini" covers its snapshots).
TRAINING_PRICE_PER_1M: Dict[str, float] = {
    "gpt-4o-mini-2024-07-18": 3.00,
    "gpt-4o-mini": 3.00,
    "gpt-4o-2024-08-06": 25.00,
    "gpt-4o": 25.00,
    "gpt-4.1-2025-04-14": 25.00,
    "gpt-4.1-mini-2025-04-14": 5.00,
    "gpt-4.1-mini": 5.00,
    "gpt-4.1-nano-2025-04-14": 1.50,
    "gpt-4.1-nano": 1.50,
    "gpt-4.1": 25.00,
    "gpt-3.5-turbo": 8.00,
    "davinci-002": 6.00,
    "babbage-002": 0.40,
    **{model_id: 0.0 for model_id in BASE_MODEL_IDS},
}

# OpenAI's "auto" epochs: 3, raised for small sets, lowered for large ones.
DEFAULT_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_EPOCHS = 1
MAX_EPOCHS = 25


def training_price(model: str) -> float:
    """USD per 1M training tokens for ``model``; :class:`ConfigError` if it is not in the table."""
    base = model[3:].split(":")[0] if model.startswith("ft:") else model
    if base in TRAINING_PRICE_PER_1M:
        return TRAINING_PRICE_PER_1M[base]
    for prefix in sorted(TRAINING_PRICE_PER_1M, key=len, reverse=True):
        if base.startswith(prefix + "-"):
            return TRAINING_PRICE_PER_1M[prefix]
    known = ", ".join(sorted(TRAINING_PRICE_PER_1M))
    raise ConfigError(
        f"model {model!r} is not in the fine-tuning price table ({known}); "
        f"add it to vt_middleware.train.cost.TRAINING_PRICE_PER_1M or set max_budget_usd=None"
    )


def resolve_epochs(n_epochs: Union[int, str, None], n_examples: int) -> int:
    """Epochs OpenAI will run: ``n_epochs`` as given, or its "auto" rule."""
    if n_epochs not in (None, "auto"):
        try:
            epochs = int(n_epochs)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"n_epochs must be a positive integer or 'auto', got {n_epochs!r}") from None
        if epochs < 1:
            raise ConfigError(f"n_epochs must be >= 1, got {epochs}")
        return epochs
    epochs = DEFAULT_EPOCHS
    if n_examples and n_examples * epochs < MIN_TARGET_EXAMPLES:
        epochs = min(MAX_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n_examples))
    elif n_examples * epochs > MAX_TARGET_EXAMPLES:
        epochs = max(MIN_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return epochs


def estimate_from_counts(
    model: str, n_examples: int, tokens: int, n_epochs: Union[int, str, None] = "auto"
) -> CostEstimate:
    price = training_price(model)
    epochs = resolve_epochs(n_epochs, n_examples)
    billed = tokens * epochs
    return CostEstimate(
        model=model,
        n_examples=n_examples,
        tokens=tokens,
        epochs=epochs,
        billed_tokens=billed,
        usd=round(billed * price / 1_000_000, 6),
        price_per_1m=price,
    )


def estimate_cost(jsonl_path: Union[str, Path], model: str, n_epochs: Union[int, str, None] = "auto") -> CostEstimate:
    """Validate ``jsonl_path`` and price training ``model`` on it for ``n_epochs``.
    Raises :class:`DataError` for an invalid file, :class:`ConfigError` for an unknown model."""
    training_price(model)  # unknown model fails before the file is read
    report = validate_chat_jsonl(jsonl_path, model=model).raise_if_invalid()
    return estimate_from_counts(model, report.n_examples, report.n_tokens, n_epochs)


def check_budget(estimate: CostEstimate, max_budget_usd: Optional[float]) -> None:
    """Raise :class:`BudgetExceededError` when ``estimate`` is over ``max_budget_usd``
    (no check when the budget is None)."""
    if max_budget_usd is None:
        return
    if estimate.usd > max_budget_usd:
        raise BudgetExceededError(
            f"{estimate.summary()} exceeds the budget of ${max_budget_usd:.2f}; "
            f"raise max_budget_usd, lower n_epochs or select fewer examples"
        )
