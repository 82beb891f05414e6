"""The local server's chat side over HTTP: OpenAI wire format, errors, faults."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from vt_middleware.train.local_models import TINY_ID


def test_plain_completion_shape(local_server):
    body = httpx.post(
        f"{local_server.base_url}/chat/completions",
        timeout=60,
        json={"model": TINY_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    ).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert 1 <= body["usage"]["completion_tokens"] <= 4


def test_sse_stream_in_openai_chunk_format(local_server):
    lines = []
    with httpx.stream(
        "POST",
        f"{local_server.base_url}/chat/completions",
        timeout=60,
        json={
            "model": TINY_ID,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0


def test_sdk_stream_text_matches_plain_completion(openai_client):
    kwargs = dict(model=TINY_ID, messages=[{"role": "user", "content": "same"}], max_tokens=6)
    plain = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in openai_client.chat.completions.create(**kwargs, stream=True)
        if c.choices
    )
    assert plain, "the tiny model produced no text: the comparison below would prove nothing"
    assert streamed == plain  # greedy decoding: the same text either way


def test_errors_in_openai_shape(openai_client, local_server):
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found" and "gpt-9" in missing.value.message
    with pytest.raises(openai.BadRequestError, match="messages"):
        openai_client.chat.completions.create(model=TINY_ID, messages=[])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        openai_client.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "x"}], temperature=5)
    raw = httpx.post(
        f"{local_server.base_url}/chat/completions",
        content=b"[1,2]",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 400 and "error" in raw.json()


def test_models_list_and_retrieve(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert TINY_ID in ids
    assert openai_client.models.retrieve(TINY_ID).id == TINY_ID
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("nope")


def test_fault_plan_fails_next_calls_then_recovers(openai_client, local_server):
    local_server.backend.faults.fail_next = 2
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            openai_client.chat.completions.create(
                model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2
            )
    ok = openai_client.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert ok.choices


def test_alias_and_registered_model_errors(local_server):
    backend = local_server.backend
    backend.alias("gpt-4o-mini-local", TINY_ID)
    assert "gpt-4o-mini-local" in backend.list_models()
    from vt_middleware.errors import ConfigError

    with pytest.raises(ConfigError):
        backend.register_model("ft:x", "/nonexistent/adapter")
    with pytest.raises(ConfigError):
        backend.alias("y", "missing")


def test_concurrent_first_requests_all_answer_and_load_the_model_once():
    """A fresh process (transformers not yet imported) gets 8 simultaneous first requests:
    each answers (found by the soak: racing lazy imports raised ImportError -> HTTP 500)."""
    import subprocess
    import sys
    from pathlib import Path

    script = """
import threading
from vt_middleware.server import backends
from vt_middleware.train import local_models
loads = []
real = local_models.load_local_model
def counted(source):
    loads.append(source)
    return real(source)
local_models.load_local_model = counted
backend = backends.LocalModelBackend()
start, results = threading.Barrier(8), []
def ask():
    start.wait()
    try:
        results.append(backend.complete(backends.ChatParams(backend.default_model, [{"role": "user", "content": "hi"}], 2)).text)
    except Exception as exc:
        results.append(repr(exc))
threads = [threading.Thread(target=ask) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(loads), sum(isinstance(r, str) and not r.startswith(("ImportError", "Error")) for r in results), results[:2])
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loads, answered = done.stdout.split()[:2]
    assert (loads, answered) == ("1", "8"), done.stdout
