"""Configuration: one pydantic settings object, read from ``VT_*`` variables and code.

``vt.configure(store_path="...", strict=True)`` replaces the process-wide config;
``get_config()`` returns it. Components read the config when they start, so
configure before the first captured call (or call ``vt.reset()`` in tests).

The environment fails open: an invalid ``VT_*`` value is logged once (name, value, the
default used) and replaced by the default; an unknown ``VT_*`` name is logged once with
the closest valid name. Invalid values passed in code (``configure(...)``) raise ``ConfigError``.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, Generic, List, Literal, Optional, Set, Tuple, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

logger = logging.getLogger("vt_middleware")
ENV_PREFIX = "VT_"
# VT_* variables read outside VTConfig (model caches of the train stage)
OTHER_ENV_NAMES = frozenset({"VT_MODEL_CACHE"})


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
    # "static" (model2vec-style token table from a PyPI wheel, microseconds a text),
    # "minilm" (int8 ONNX all-MiniLM-L6-v2, shipped in PyPI wheels, milliseconds a text),
    # "minilm-torch" (same model through sentence-transformers), "hash" (no model).
    # embedding_model: text similarity in the evolver (synthesis, gate);
    # capture_embedding_model: the vectors stored with every captured call (selection).
    embedding_model: str = "minilm"
    capture_embedding_model: str = "static"
    # A capture model heavier than "static"/"hash" runs in a child process (nice 10, one
    # inference thread), off the app's cores and GIL; False: in the app's process.
    capture_embedding_process: bool = True
    embedding_dim: int = 384

    # --- capture -----------------------------------------------------------
    capture_enabled: bool = True
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(64, ge=1)
    flush_interval_s: float = Field(0.5, gt=0)
    # At exit everything still in memory goes to the journal first; then the store gets
    # at most this long before the process goes (the next start replays the rest).
    shutdown_timeout_s: float = Field(1.0, ge=0)
    # A returned call's record reaches the append-only journal within this window, so a
    # kill -9 loses at most the calls of the last window.
    journal_window_s: float = Field(0.1, gt=0, le=10)
    # SIGTERM/SIGINT: journal what is held (at most signal_flush_timeout_s), then the app's
    # own handler or the default action runs.
    handle_signals: bool = True
    signal_flush_timeout_s: float = Field(1.0, ge=0)
    journal_path: Path = Path(".vt/journal")
    max_field_chars: int = Field(32_000, ge=256)

    # --- redaction ---------------------------------------------------------
    redact_secrets: bool = True
    redact_emails: bool = True
    redact_pii: bool = True  # card numbers (Luhn-checked) and phone numbers
    redact_patterns: List[str] = Field(default_factory=list)

    # --- hooks / evolution -------------------------------------------------
    hooks_dir: Path = Path("hooks_generated")
    state_dir: Path = Path(".vt")
    hook_failure_rollback_after: int = Field(5, ge=1)
    # Opt-in guard against a hook that hangs or loops: past this many seconds the call
    # passes the text through and that hook version is disabled (and rolled back).
    hook_timeout_s: Optional[float] = Field(None, gt=0)
    # Streams: "apply" runs output hooks on what the user receives (bounded look-ahead when the
    # hook module has ``intercept_output_stream``, else the text is held to the end);
    # "record_only" passes the model's chunks through and hooks only the stored copy.
    stream_hooks: Literal["apply", "record_only"] = "apply"
    # Every this many seconds re-apply the store's latest promotion (instances sharing a store
    # converge without a restart); None: only once, on the first live call.
    sync_interval_s: Optional[float] = Field(None, gt=0)

    # --- behaviour ---------------------------------------------------------
    strict: bool = False  # raise internal errors instead of failing open (tests)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> Tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _TolerantEnvSource(settings_cls), dotenv_settings, file_secret_settings

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


class _TolerantEnvSource(EnvSettingsSource):
    """``VT_*`` variables; one that cannot even be decoded (bad JSON for a list) is reported
    and left out, so the field keeps its default."""

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            variable = ENV_PREFIX + field_name.upper()
            default = field.get_default(call_default_factory=True)
            _report_once(
                variable, str(value), f"{variable}={value!r} cannot be parsed ({exc}); using the default {default!r}"
            )
            return None


_lock = threading.Lock()
_config: Optional[VTConfig] = None
_reported_lock = threading.Lock()
_reported: Set[Tuple[str, str]] = set()  # (variable, value) already logged


def _report_once(name: str, value: str, message: str) -> None:
    with _reported_lock:
        first = (name, value) not in _reported
        _reported.add((name, value))
    if first:
        logger.warning("vt_middleware config: %s", message)


def _warn_unknown_env_names(environ: Dict[str, str]) -> None:
    """One warning per ``VT_*`` name no field reads, naming the closest valid one."""
    valid = {ENV_PREFIX + name.upper() for name in VTConfig.model_fields} | OTHER_ENV_NAMES
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in valid:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(valid), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; valid names: {', '.join(sorted(valid))}"
        _report_once(name, "", f"unknown environment variable {name} is ignored{hint}")


def build_config(**overrides: Any) -> VTConfig:
    """``VTConfig`` from the environment overlaid by ``overrides``. An invalid environment
    value is reported once and replaced by the field's default; an invalid override raises
    ``ConfigError`` naming the field."""
    environ = dict(os.environ)
    _warn_unknown_env_names(environ)
    fixed: Dict[str, Any] = {}
    for _ in range(len(VTConfig.model_fields) + 1):
        try:
            return VTConfig(**{**fixed, **overrides})
        except ValidationError as exc:
            bad_overrides, bad_env = _split_errors(exc, overrides)
            if bad_overrides:
                raise ConfigError("invalid configuration: " + "; ".join(bad_overrides)) from exc
            if not bad_env or all(name in fixed for name, _ in bad_env):
                raise ConfigError(f"invalid configuration: {exc}") from exc
            for name, reason in bad_env:
                field = VTConfig.model_fields[name]
                default = field.get_default(call_default_factory=True)
                fixed[name] = default
                variable = ENV_PREFIX + name.upper()
                value = _env_value(environ, variable)
                _report_once(
                    variable, value, f"{variable}={value!r} is invalid ({reason}); using the default {default!r}"
                )
    raise ConfigError("invalid configuration: could not fall back to defaults")  # pragma: no cover


def _env_value(environ: Dict[str, str], variable: str) -> str:
    for key, value in environ.items():  # env names are matched case-insensitively
        if key.upper() == variable:
            return value
    return ""


def _split_errors(exc: ValidationError, overrides: Dict[str, Any]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """(messages for bad overrides, [(field, reason)] for bad environment values)."""
    bad_overrides: List[str] = []
    bad_env: List[Tuple[str, str]] = []
    for error in exc.errors():
        loc = error.get("loc") or ("?",)
        name = str(loc[0])
        reason = str(error.get("msg", "invalid"))
        if name in overrides or name not in VTConfig.model_fields:
            bad_overrides.append(f"{name}={overrides.get(name, error.get('input'))!r}: {reason}")
        elif (name, reason) not in bad_env:
            bad_env.append((name, reason))
    return bad_overrides, bad_env


def get_config() -> VTConfig:
    """The process-wide config (built from the environment on first use; never raises
    for a bad ``VT_*`` value: see :func:`build_config`)."""
    global _config
    if _config is None:
        with _lock:
            if _config is None:
                _config = build_config()
    return _config


def configure(**overrides: object) -> VTConfig:
    """Replace the process-wide config: environment values overlaid by ``overrides``
    (an invalid override raises ``ConfigError``)."""
    global _config
    config = build_config(**overrides)
    with _lock:
        _config = config
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


_per_config: weakref.WeakSet[PerConfig[Any]] = weakref.WeakSet()


def _renew_locks_in_forked_child() -> None:
    """A lock another thread held at ``fork()`` stays held forever in the child (the worker
    building the store while the app forked hung the child's first ``reset``): new locks.
    Registered at import, so it runs before the capture worker's own fork handler."""
    global _lock, _reported_lock
    _lock = threading.Lock()
    _reported_lock = threading.Lock()
    for holder in list(_per_config):
        holder._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_in_forked_child)
