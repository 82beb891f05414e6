"""An embedder running in a child process of its own, at low CPU priority.

A model such as MiniLM costs milliseconds of CPU per text; run in the app's process it
takes the app's cores and GIL. Here the model lives in a child (``nice`` 10, one
inference thread), so the app's threads win the CPU when they need it and never wait
for the GIL behind an inference. Texts go over a pipe as JSON, vectors come back as
float32 bytes. The child exits when the parent closes the pipe (or dies).
"""

from __future__ import annotations

import atexit
import json
import os
import struct
import subprocess
import sys
import threading
from typing import IO, Optional, Sequence

import numpy as np

from ..errors import StoreError

NICE = 10
_HEADER = struct.Struct("<II")


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("embedding process closed its pipe")
    return data


class ProcessEmbedder:
    """The embedder called ``name`` (see ``embedding.EMBEDDERS``), in a child process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._proc: Optional[subprocess.Popen] = None
        self._pid = -1
        self.dim = self.embed(["dimension probe"]).shape[1]

    def _child(self) -> subprocess.Popen:
        if self._proc is None or self._pid != os.getpid() or self._proc.poll() is not None:
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__, self.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
            )
            self._pid = os.getpid()
        return self._proc

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        payload = json.dumps(list(texts)).encode("utf-8")
        with self._lock:
            proc = self._child()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(struct.pack("<I", len(payload)) + payload)
                proc.stdin.flush()
                n, dim = _HEADER.unpack(_read_exact(proc.stdout, _HEADER.size))
                body = _read_exact(proc.stdout, n * dim * 4)
            except (OSError, EOFError) as exc:
                proc.kill()
                self._proc = None
                raise StoreError(f"embedding process for {self.name!r} failed: {exc}") from exc
        return np.frombuffer(body, dtype=np.float32).reshape(n, dim).copy()

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._pid == os.getpid():
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                self._proc.wait(timeout=5)
            self._proc = None


_shared: dict = {}
_shared_lock = threading.Lock()


def get_process_embedder(name: str) -> ProcessEmbedder:
    """The process-wide child embedder called ``name`` (started on first use)."""
    with _shared_lock:
        embedder = _shared.get(name)
        if embedder is None:
            embedder = _shared[name] = ProcessEmbedder(name)
        return embedder


@atexit.register
def _close_all() -> None:
    for embedder in list(_shared.values()):
        try:
            embedder.close()
        except Exception:  # noqa: BLE001 - never fail interpreter exit
            pass


def _serve(name: str) -> None:
    try:
        os.nice(NICE)
    except OSError:
        pass
    from .embedding import get_embedder

    embedder = get_embedder(name)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return  # the parent closed the pipe or died
        (size,) = struct.unpack("<I", head)
        texts = json.loads(_read_exact(stdin, size))
        vectors = np.ascontiguousarray(embedder.embed(texts), dtype=np.float32)
        stdout.write(_HEADER.pack(*vectors.shape) + vectors.tobytes())
        stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
