"""Configuration: one pydantic settings object, read from ``VT_*`` variables and code.

``vt.configure(store_path="...", strict=True)`` replaces the process-wide config;
``get_config()`` returns it. Components read the config when they start, so
configure before the first captured call (or call ``vt.reset()`` in tests).
"""
from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Callable, Generic, List, Literal, Optional, Tuple, TypeVar

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class VTConfig(BaseSettings):
    """All knobs of vt_middleware. Every field can be set as ``VT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VT_", extra="forbid", validate_assignment=True)

    # --- store -------------------------------------------------------------
    store_mode: Literal["lite", "weaviate"] = "lite"
    store_path: Path = Path(".vt/lance")
    weaviate_host: str = "localhost"
    weaviate_port: int = 8080
    weaviate_grpc_port: int = 50051
    weaviate_api_key: Optional[str] = None

    # --- embedding ---------------------------------------------------------
    # "minilm" (int8 ONNX all-MiniLM-L6-v2, shipped in PyPI wheels),
    # "minilm-torch" (same model through sentence-transformers), "hash" (no model).
    embedding_model: str = "minilm"
    embedding_dim: int = 384

    # --- capture -----------------------------------------------------------
    capture_enabled: bool = True
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(64, ge=1)
    flush_interval_s: float = Field(0.5, gt=0)
    shutdown_timeout_s: float = Field(10.0, ge=0)
    journal_path: Path = Path(".vt/journal")
    max_field_chars: int = Field(32_000, ge=256)

    # --- redaction ---------------------------------------------------------
    redact_secrets: bool = True
    redact_emails: bool = True
    redact_patterns: List[str] = Field(default_factory=list)

    # --- hooks / evolution -------------------------------------------------
    hooks_dir: Path = Path("hooks_generated")
    state_dir: Path = Path(".vt")
    hook_failure_rollback_after: int = Field(5, ge=1)
    # Opt-in guard against a hook that hangs or loops: past this many seconds the call
    # passes the text through and that hook version is disabled (and rolled back).
    hook_timeout_s: Optional[float] = Field(None, gt=0)
    # Every this many seconds re-apply the store's latest promotion (instances sharing a store
    # converge without a restart); None: only once, on the first live call.
    sync_interval_s: Optional[float] = Field(None, gt=0)

    # --- behaviour ---------------------------------------------------------
    strict: bool = False  # raise internal errors instead of failing open (tests)

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: List[str]) -> List[str]:
        import re

        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redact_patterns: {pattern!r} is not a valid regex: {exc}") from exc
        return patterns


_lock = threading.Lock()
_config: Optional[VTConfig] = None


def get_config() -> VTConfig:
    """The process-wide config (built from the environment on first use)."""
    global _config
    if _config is None:
        with _lock:
            if _config is None:
                _config = VTConfig()
    return _config


def configure(**overrides: object) -> VTConfig:
    """Replace the process-wide config: environment values overlaid by ``overrides``."""
    global _config
    with _lock:
        _config = VTConfig(**overrides)  # type: ignore[arg-type]
    return _config


T = TypeVar("T")


class PerConfig(Generic[T]):
    """A process-wide object built from the current config and rebuilt after ``configure``."""

    def __init__(self, factory: Callable[[VTConfig], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._built: Optional[Tuple[VTConfig, T]] = None
        _per_config.add(self)

    def get(self) -> T:
        with self._lock:
            config = get_config()
            if self._built is None or self._built[0] is not config:
                self._built = (config, self._factory(config))
            return self._built[1]

    def reset(self) -> Optional[T]:
        """Forget the object (the next ``get`` builds anew); returns it, for closing."""
        with self._lock:
            built, self._built = self._built, None
        return built[1] if built is not None else None


_per_config: "weakref.WeakSet[PerConfig]" = weakref.WeakSet()


def _renew_locks_in_forked_child() -> None:
    """A lock another thread held at ``fork()`` stays held forever in the child (the worker
    building the store while the app forked hung the child's first ``reset``): new locks.
    Registered at import, so it runs before the capture worker's own fork handler."""
    global _lock
    _lock = threading.Lock()
    for holder in list(_per_config):
        holder._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_in_forked_child)
