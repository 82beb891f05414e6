"""Model alias table of the local server: OpenAI base model ids served by a local model.

``/v1/fine_tuning/jobs`` accepts OpenAI's base model ids (``gpt-4o-mini-2024-07-18``) and
trains the server's default local model for them; the same ids are answered by
``/v1/chat/completions`` with that local model and listed by ``/v1/models``, so code written
for OpenAI (the gate comparing base and fine-tuned model) runs unchanged. A job for any
other id the server accepts adds that id to the table too.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ..train.cost import TRAINING_PRICE_PER_1M
from ..train.local_models import BASE_MODEL_IDS
from .fine_tuning import default_base_model

# The OpenAI models the fine-tuning price table knows (snapshots and their short names).
OPENAI_BASE_MODELS: Tuple[str, ...] = tuple(m for m in TRAINING_PRICE_PER_1M if m not in BASE_MODEL_IDS)


def alias_table(local_model: str) -> Dict[str, str]:
    """``{openai_id: local_model}`` for every base id the fine-tuning endpoint accepts."""
    return {model_id: local_model for model_id in OPENAI_BASE_MODELS}


def install_aliases(backend: Any, local_model: Optional[str] = None) -> Dict[str, str]:
    """Serve the OpenAI base ids on ``backend`` (one with ``alias()``, else nothing is done);
    ids the backend already serves itself are left alone. Returns what was installed."""
    if not hasattr(backend, "alias"):
        return {}
    target = local_model or default_base_model(backend)
    installed = {}
    for name, model_id in alias_table(target).items():
        if not backend.has_model(name):
            backend.alias(name, model_id)
            installed[name] = model_id
    return installed


def alias_job_model(backend: Any, requested: Optional[str], trained_base: str) -> bool:
    """After a job for ``requested`` was accepted: serve ``requested`` with ``trained_base``
    when the backend does not serve it yet. True when an alias was added."""
    if not requested or not hasattr(backend, "alias") or backend.has_model(requested):
        return False
    backend.alias(requested, trained_base)
    return True
