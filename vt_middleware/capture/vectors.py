"""Vectors for queued items: identical texts are embedded once.

With MiniLM, embedding is the capture worker's bottleneck (milliseconds per record,
everything else microseconds; the static embedder costs tens of microseconds), so a
batch embeds each distinct text once, and
a small LRU of recent texts' vectors serves retries, repeated prompts and deterministic
answers without another model pass.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np

from ..types import CallRecord
from .journal import Item

# Kept as float32 arrays: 1.5 KiB each, 3 MiB at most. As Python lists of floats they took
# ~12 KiB each (24 MiB full), which the soak showed as RSS rising until the cache was full.
DEFAULT_CACHE_SIZE = 2048


def _key(text: str) -> bytes:
    # a digest, not the text: keys stay small however long the recorded call was
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class VectorCache:
    """Recently embedded texts' vectors, least recently used evicted first."""

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        self.size = size
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.embedded = 0

    def fill(self, items: List[Item], embedder: Any, texts: Optional[List[str]] = None) -> None:
        """Set ``vector`` on the items that have none (in place). ``texts``: the items'
        embedding texts where the caller has them (else parsed from the properties)."""
        known = dict(zip(map(id, items), texts, strict=False)) if texts is not None and len(texts) == len(items) else {}
        missing = [it for it in items if it.get("vector") is None]
        if not missing:
            return
        texts = [known.get(id(it)) or CallRecord.from_properties(it["properties"]).embedding_text() for it in missing]
        keys = [_key(text) for text in texts]
        distinct = dict(zip(keys, texts, strict=False))
        found: Dict[bytes, np.ndarray] = {}
        with self._lock:
            for k in distinct:
                vector = self._vectors.get(k)
                if vector is not None:
                    self._vectors.move_to_end(k)
                    found[k] = vector
        todo = [k for k in distinct if k not in found]
        if todo:
            vectors = embedder.embed([distinct[k] for k in todo])
            for k, vector in zip(todo, vectors, strict=False):
                found[k] = np.array(vector, dtype=np.float32)  # a copy: the batch's array is freed
        with self._lock:
            self.hits += len(missing) - len(todo)
            self.embedded += len(todo)
            for k in todo:
                self._vectors[k] = found[k]
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        for it, k in zip(missing, keys, strict=False):
            it["vector"] = found[k].tolist()
