"""vt.wrap on the real openai SDK against the local server: routing, hooks, capture."""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest

import vt_middleware as vt
from vt_middleware.call_context import last_run_id, suppress_capture
from vt_middleware.runtime.hooks import LoadedHooks
from vt_middleware.train.local_models import TINY_ID

HOOKS = """
def intercept_prompt(user_input, context):
    return user_input + " [prompt-hooked]"

def intercept_output(model_output, context):
    return "HOOKED:" + model_output
"""


@pytest.fixture
def hooked(vt_env, tmp_path):
    path = tmp_path / "hooks_v1.py"
    path.write_text(HOOKS)
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(path, "v1"), routes={"gpt-4o-mini": TINY_ID})
    return vt.get_runtime().current()


@pytest.fixture
def recording_client(local_server):
    """SDK client whose request bodies are recorded (to see what reached the server)."""
    bodies: list = []

    def keep(request: httpx.Request) -> None:
        if request.method == "POST":
            bodies.append(json.loads(request.read()))

    http = httpx.Client(event_hooks={"request": [keep]})
    client = openai.OpenAI(base_url=local_server.base_url, api_key="sk-local", http_client=http, max_retries=0)
    yield client, bodies
    local_server.backend.faults.clear()
    http.close()


def _row(run_id):
    stored = vt.get_store().get_call(run_id, include_vector=True)
    assert stored is not None, "captured call missing from the store"
    return vt.CallRecord.from_properties(stored.properties), stored.vector


def test_non_stream_routes_hooks_and_records(hooked, recording_client):
    client, bodies = recording_client
    wrapped = vt.wrap(client, function_name="summarize_review")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The soup was cold."}]
    result = wrapped.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=6)
    run_id = last_run_id()
    # the server got the routed model and the hooked prompt; the caller's list is untouched
    assert bodies[-1]["model"] == TINY_ID
    assert bodies[-1]["messages"][-1]["content"] == "The soup was cold. [prompt-hooked]"
    assert messages[-1]["content"] == "The soup was cold."
    answer = result.choices[0].message.content
    assert answer.startswith("HOOKED:")
    assert vt.flush(30)
    record, vector = _row(run_id)
    assert record.function_name == "summarize_review" and record.kind == "openai"
    assert record.inputs == {"messages": messages}
    assert record.output == answer and record.raw_output == answer[len("HOOKED:") :]
    assert record.model_requested == "gpt-4o-mini" and record.model_used == TINY_ID
    assert record.hook_version == "v1" and record.status == "SUCCESS"
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        result.usage.total_tokens,
    )
    assert record.params["prompt_after_hook"] == "The soup was cold. [prompt-hooked]"
    assert record.latency_ms > 0
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3


def test_stream_hooks_what_the_user_receives_and_records_it(hooked, recording_client):
    client, _ = recording_client
    wrapped = vt.wrap(client, function_name="stream_fn")
    stream = wrapped.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Tell me"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    run_id = last_run_id()
    chunks = list(stream)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("HOOKED:")  # the hook module has no stream processor: held, hooked at the end
    assert vt.flush(30)
    record, _ = _row(run_id)
    assert record.output == text and record.raw_output == text[len("HOOKED:") :]
    assert record.params["closed_early"] is False and record.params["stream"] is True
    assert record.completion_tokens == chunks[-1].usage.completion_tokens


def test_stream_record_only_passes_the_models_chunks(hooked, recording_client):
    client, _ = recording_client
    vt.configure(**{**vt.get_config().model_dump(), "stream_hooks": "record_only"})
    wrapped = vt.wrap(client, function_name="stream_fn")
    stream = wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me"}], max_tokens=8, stream=True
    )
    run_id = last_run_id()
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert not text.startswith("HOOKED:")
    assert vt.flush(30)
    record, _ = _row(run_id)
    assert record.raw_output == text and record.output == "HOOKED:" + text


def test_stream_closed_early_is_recorded(vt_env, openai_client):
    wrapped = vt.wrap(openai_client, function_name="early")
    with wrapped.chat.completions.create(
        model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=20, stream=True
    ) as stream:
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
    run_id = last_run_id()
    assert vt.flush(30)
    record, _ = _row(run_id)
    assert record.params["closed_early"] is True and record.params["chunks"] == 1
    assert record.status == "SUCCESS"


def test_provider_errors_reraise_unchanged_and_record_error_rows(vt_env, openai_client, local_server):
    wrapped = vt.wrap(openai_client, function_name="errs")
    with pytest.raises(openai.NotFoundError) as missing:
        wrapped.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert "no-such-model" in str(missing.value)
    missing_id = last_run_id()
    local_server.backend.faults.fail_next = 1
    with pytest.raises(openai.InternalServerError):
        wrapped.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    fault_id = last_run_id()
    assert vt.flush(30)
    for run_id, error_type in ((missing_id, "NotFoundError"), (fault_id, "InternalServerError")):
        record, _ = _row(run_id)
        assert record.status == "ERROR" and record.error_type == error_type and record.output is None


def test_stream_cut_midway_records_error(vt_env, openai_client, local_server):
    local_server.backend.faults.cut_stream_after = 2
    wrapped = vt.wrap(openai_client, function_name="cut")
    stream = wrapped.chat.completions.create(
        model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=20, stream=True
    )
    with pytest.raises(Exception) as raised:
        list(stream)
    run_id = last_run_id()
    assert vt.flush(30)
    record, _ = _row(run_id)
    assert record.status == "ERROR" and record.error_type == type(raised.value).__name__


def test_closed_client_error_is_users_and_recorded(vt_env, local_server):
    client = openai.OpenAI(base_url=local_server.base_url, api_key="sk-x", max_retries=0)
    wrapped = vt.wrap(client, function_name="closed")
    client.close()
    with pytest.raises(Exception) as raised:
        wrapped.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "x"}])
    assert not isinstance(raised.value, vt.VTError)
    assert vt.flush(30)
    record, _ = _row(last_run_id())
    assert record.status == "ERROR" and record.error_type == type(raised.value).__name__


async def test_async_client_plain_and_stream(hooked, local_server):
    client = vt.wrap(
        openai.AsyncOpenAI(base_url=local_server.base_url, api_key="sk-x", max_retries=0), function_name="async_fn"
    )
    result = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}], max_tokens=4
    )
    plain_id = last_run_id()
    stream = await client.chat.completions.create(
        model=TINY_ID, messages=[{"role": "user", "content": "b"}], max_tokens=4, stream=True
    )
    stream_id = last_run_id()
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await client.close()
    assert vt.flush(30)
    plain, _ = _row(plain_id)
    assert plain.output == result.choices[0].message.content and plain.model_used == TINY_ID
    streamed, _ = _row(stream_id)
    assert text.startswith("HOOKED:") and streamed.output == text and streamed.hook_version == "v1"


def test_everything_else_passes_through(vt_env, openai_client):
    wrapped = vt.wrap(openai_client)
    assert [m.id for m in wrapped.models.list()] == [m.id for m in openai_client.models.list()]
    assert wrapped.base_url == openai_client.base_url and wrapped.unwrap() is openai_client
    assert vt.wrap(wrapped) is wrapped
    with pytest.raises(vt.ConfigError, match=r"openai\.OpenAI"):
        vt.wrap(object())


def test_secrets_redacted_in_store_not_in_call(vt_env, recording_client):
    client, bodies = recording_client
    secret = "my key is sk-abcdefghijklmnopqrstuvwx, mail bob@example.com"
    vt.wrap(client, function_name="redact").chat.completions.create(
        model=TINY_ID, messages=[{"role": "user", "content": secret}], max_tokens=2
    )
    assert bodies[-1]["messages"][0]["content"] == secret
    assert vt.flush(30)
    record, _ = _row(last_run_id())
    stored = record.inputs["messages"][0]["content"]
    assert "sk-abcdef" not in stored and "bob@example.com" not in stored and "[REDACTED]" in stored


def test_record_keeps_the_messages_as_sent_when_the_caller_mutates_them_after(vt_env, openai_client):
    # the record is built on the worker thread: reusing the message dicts must not rewrite it
    wrapped = vt.wrap(openai_client, function_name="reuse")
    messages = [{"role": "user", "content": "first question"}]
    wrapped.chat.completions.create(model=TINY_ID, messages=messages, max_tokens=2, stop=["x"])
    run_id = last_run_id()
    messages[0]["content"] = "second question"
    messages.append({"role": "assistant", "content": "later"})
    assert vt.flush(30)
    record, _ = _row(run_id)
    assert record.inputs == {"messages": [{"role": "user", "content": "first question"}]}
    assert record.params["stop"] == ["x"] and record.params["max_tokens"] == 2


def test_suppressed_calls_are_not_captured(vt_env, openai_client):
    wrapped = vt.wrap(openai_client, function_name="quiet")
    with suppress_capture():
        wrapped.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert vt.flush(30)
    assert vt.get_store().count("quiet") == 0


def test_internal_failure_fails_open_or_raises_when_strict(vt_env, openai_client, monkeypatch):
    from vt_middleware.capture import openai_wrapper

    def broken(*args, **kwargs):
        raise RuntimeError("capture bug")

    monkeypatch.setattr(openai_wrapper, "_begin", broken)
    wrapped = vt.wrap(openai_client, function_name="broken")
    with pytest.raises(RuntimeError, match="capture bug"):  # strict (tests)
        wrapped.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    vt.configure(store_path=vt_env.store_path, journal_path=vt_env.journal_path, strict=False)
    result = wrapped.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert result.choices[0].message.content is not None
    assert vt.error_counts().get("capture.openai:RuntimeError", 0) >= 1


def test_capture_disabled_still_routes_and_hooks_but_stores_nothing(hooked, recording_client):
    """``capture_enabled=False`` turns off logging, not the improvements the hooks carry."""
    client, bodies = recording_client
    vt.configure(**{**vt.get_config().model_dump(), "capture_enabled": False})
    vt.get_runtime().activate(hooks=hooked.hooks, routes={"gpt-4o-mini": TINY_ID})
    wrapped = vt.wrap(client, function_name="not_logged")
    result = wrapped.chat.completions.create(
        model="gpt-4o-mini", max_tokens=4, messages=[{"role": "user", "content": "The soup was cold."}]
    )
    assert bodies[-1]["model"] == TINY_ID
    assert bodies[-1]["messages"][-1]["content"] == "The soup was cold. [prompt-hooked]"
    assert result.choices[0].message.content.startswith("HOOKED:")
    assert vt.flush(10) and vt.capture_stats()["enqueued"] == 0
    assert vt.get_store().count("not_logged") == 0
