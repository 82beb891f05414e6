"""Exception types. Every error vt_middleware raises on purpose derives from ``VTError``."""

from __future__ import annotations


class VTError(Exception):
    """Base class of vt_middleware's own errors."""


class ConfigError(VTError, ValueError):
    """A setting or argument is invalid; the message names it."""


class MissingDependencyError(VTError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


class StoreError(VTError):
    """The store could not be reached or answered badly."""


class DataError(VTError, ValueError):
    """Input data (vectors, records, feedback, JSONL) cannot be used; the message says why."""


class BudgetExceededError(VTError):
    """A fine-tuning job would cost more than the configured budget."""


class TrainingError(VTError):
    """A training job failed, was cancelled, or could not be started."""


class HookError(VTError):
    """A generated hook module failed validation or at run time."""


def require(module: str, extra: str) -> None:
    """Raise a clear install hint if ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"'{module}' is required for this feature: pip install 'vt_middleware[{extra}]'")


class NotFoundError(DataError):
    """A named record (feedback pair, call, run, hook version) does not exist; the message names it."""
