"""vt_middleware: capture an LLM app's calls, learn from feedback, evolve in place.

    import vt_middleware as vt
    client = vt.wrap(OpenAI(), function_name="generate_review_summary")

Heavy modules (torch, streamlit, langchain) load only when their feature is used.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .config import VTConfig, configure, get_config
from .errors import BudgetExceededError, ConfigError, VTError
from .types import CallRecord, FeedbackPair

try:
    __version__ = version("vt_middleware")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# A library never configures logging: the app decides where our records go.
logging.getLogger("vt_middleware").addHandler(logging.NullHandler())

# public name -> "module:attribute", imported on first access
_LAZY = {
    "wrap": "vt_middleware.capture.openai_wrapper:wrap",
    "track": "vt_middleware.capture.decorator:track",
    "middleware": "vt_middleware.capture.langchain:middleware",
    "CallbackHandler": "vt_middleware.capture.langchain:CallbackHandler",
    "AgentMiddleware": "vt_middleware.capture.langchain:AgentMiddleware",
    "feedback": "vt_middleware.capture.feedback:feedback",
    "last_run_id": "vt_middleware.call_context:last_run_id",
    "flush": "vt_middleware.capture.worker:flush",
    "capture_stats": "vt_middleware.capture.worker:capture_stats",
    "rollback": "vt_middleware.runtime.live:rollback",
    "Evolver": "vt_middleware.evolve.evolver:Evolver",
    "get_runtime": "vt_middleware.runtime.active:get_runtime",
    "get_store": "vt_middleware.store:get_store",
    "share_store_with_vectorwave": "vt_middleware.store.executions:share_store_with_vectorwave",
    "error_counts": "vt_middleware.health:error_counts",
}

__all__ = [
    "VTConfig",
    "configure",
    "get_config",
    "VTError",
    "ConfigError",
    "BudgetExceededError",
    "CallRecord",
    "FeedbackPair",
    "reset",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'vt_middleware' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def reset(**config_overrides: Any) -> VTConfig:
    """Flush and stop capture, forget the store, runtime and counters, then configure anew.
    For tests and notebooks."""
    from .capture.worker import shutdown_worker
    from .health import reset_error_counts
    from .runtime.active import get_runtime
    from .runtime.pending import retire_all as retire_promotion_writers
    from .store import reset_store

    shutdown_worker()
    retire_promotion_writers()  # rows into the store before it goes (what is left stays journaled)
    reset_store()
    get_runtime().reset()
    reset_error_counts()
    return configure(**config_overrides)
