"""The local server's limits and validation (shared by every route): body size (413),
max_tokens (to the model's context), n, types (400 naming the field), generation time,
generation stopping when the client leaves, SIGTERM stopping ``vt serve`` within seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from vt_middleware.server.backends import LocalModelBackend
from vt_middleware.server.limits import ServerLimits
from vt_middleware.server.runner import LocalServer
from vt_middleware.train.local_models import TINY_ID

REPO = Path(__file__).resolve().parents[1]
CHAT = {"model": TINY_ID, "messages": [{"role": "user", "content": "hi"}]}


class CountingBackend(LocalModelBackend):
    """The tiny model, recording how many tokens each generation produced."""

    def __init__(self) -> None:
        super().__init__(default_model=TINY_ID)
        self.generated: list = []

    def complete(self, params):
        out = super().complete(params)
        self.generated.append(out.completion_tokens)
        return out

    def stream(self, params):
        streamed = super().stream(params)
        self.generated.append(streamed)
        return streamed


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    backend = CountingBackend()
    server = LocalServer(
        backend,
        data_dir=tmp_path_factory.mktemp("limited"),
        limits=ServerLimits(max_body_bytes=64 * 1024, max_tokens=2000, max_n=4, max_generation_s=1.5),
    )
    server.start()
    httpx.post(f"{server.base_url}/chat/completions", json={**CHAT, "max_tokens": 1}, timeout=120)  # load it
    yield server
    server.stop()


def _post(server, body, **kwargs):
    return httpx.post(f"{server.base_url}/chat/completions", timeout=60, **kwargs, **({"json": body} if body else {}))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_tokens", 0, "max_tokens must be an integer >= 1, got 0"),
        ("max_tokens", 10**12, "max_tokens=1000000000000 is over this server's limit of 1024 tokens (the context of"),
        ("max_completion_tokens", "5", 'max_completion_tokens must be an integer >= 1, got "5"'),
        ("stream", "yes", 'stream must be a boolean, got "yes"'),
        ("n", 100, "n must be an integer from 1 to 4, got 100"),
        ("n", True, "n must be an integer from 1 to 4, got true"),
        ("temperature", "hot", 'temperature must be a number, got "hot"'),
    ],
)
def test_invalid_fields_are_400_naming_the_field(limited, field, value, message):
    response = _post(limited, {**CHAT, field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error["message"] and error["param"] == field


def test_body_over_the_limit_is_413_declared_or_streamed(limited):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 100_000}]}
    response = _post(limited, big)
    assert response.status_code == 413 and "over the limit of 65536 bytes" in response.json()["error"]["message"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b" " * 4096

    streamed = httpx.post(
        f"{limited.base_url}/chat/completions",
        content=chunks(),
        timeout=60,
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert _post(limited, None, content=b"[1, 2]", headers={"content-type": "application/json"}).status_code == 400


def test_uploads_have_their_own_limit_and_are_not_buffered(limited, tmp_path):
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    data = line * (2 * 1024 * 1024 // len(line))  # 2 MiB: over the JSON limit, under the upload limit
    ok = httpx.post(
        f"{limited.base_url}/files", files={"file": ("big.jsonl", data)}, data={"purpose": "fine-tune"}, timeout=60
    )
    assert ok.status_code == 200, ok.text
    small = ServerLimits(max_upload_bytes=1024)
    with LocalServer(limited.backend, data_dir=tmp_path, limits=small) as server:
        refused = httpx.post(
            f"{server.base_url}/files", files={"file": ("big.jsonl", data)}, data={"purpose": "fine-tune"}, timeout=60
        )
    assert refused.status_code == 413 and "over the limit of 1024 bytes" in refused.json()["error"]["message"]


def test_generation_stops_at_the_time_limit(limited, tmp_path):
    # a limit far below what 1000 tokens take even on a fast idle machine (~1 ms a token here)
    with LocalServer(limited.backend, data_dir=tmp_path, limits=ServerLimits(max_generation_s=0.1)) as server:
        start = time.monotonic()
        body = _post(server, {**CHAT, "max_tokens": 1000}).json()
        elapsed = time.monotonic() - start
    print(f"time limit 0.1 s: {body['usage']['completion_tokens']} tokens in {elapsed:.2f} s")
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] < 1000, (body["usage"], elapsed)


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """No generation time limit to speak of: only the client leaving stops a long answer."""
    server = LocalServer(
        CountingBackend(), data_dir=tmp_path_factory.mktemp("patient"), limits=ServerLimits(max_generation_s=600)
    )
    server.start()
    yield server
    server.stop()


def test_generation_stops_when_the_client_disconnects(patient):
    limited = patient
    # non-streaming: the client gives up; the server's generation ends early
    limited.backend.generated.clear()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{limited.base_url}/chat/completions", json={**CHAT, "max_tokens": 1000}, timeout=1.0)
    deadline = time.monotonic() + 30
    while not limited.backend.generated and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limited.backend.generated and limited.backend.generated[0] < 1000
    # streaming: read two chunks, hang up; the generating thread ends
    with httpx.stream(
        "POST", f"{limited.base_url}/chat/completions", timeout=60, json={**CHAT, "max_tokens": 1000, "stream": True}
    ) as response:
        lines = response.iter_lines()
        next(lines), next(lines)
    deadline = time.monotonic() + 10
    while any(t.name == "vt-generate" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "vt-generate" for t in threading.enumerate())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_stops_vt_serve_within_seconds_even_mid_generation(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from vt_middleware.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--model",
            TINY_ID,
            "--data-dir",
            str(tmp_path / "srv"),
            "--max-generation-s",
            "600",
            "--max-tokens",
            "100000",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/models", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        started = threading.Event()

        def long_stream() -> None:
            try:
                with httpx.stream(
                    "POST", f"{base}/chat/completions", timeout=120, json={**CHAT, "max_tokens": 1000, "stream": True}
                ) as response:
                    for _ in response.iter_lines():
                        started.set()
            except httpx.HTTPError:
                pass

        client = threading.Thread(target=long_stream, daemon=True)
        client.start()
        assert started.wait(120)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        print(f"vt serve exited {time.monotonic() - sent:.1f} s after SIGTERM, mid-generation")
        assert time.monotonic() - sent < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
