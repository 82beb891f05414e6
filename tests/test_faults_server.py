"""The model server misbehaving (FaultPlan on the local server): HTTP 500s, timeouts,
streams closed midway -- sync, async and from many threads. The user sees exactly the
error the bare openai SDK raises (same type), every call is stored once with the status
the user saw, and calls succeed again once the fault clears."""

from __future__ import annotations

import asyncio
import threading
from typing import Dict, List, Optional, Tuple

import openai
import pytest

import vt_middleware as vt
from vt_middleware.call_context import last_run_id
from vt_middleware.train.local_models import TINY_ID

MESSAGES = [{"role": "user", "content": "hello"}]


def rows(function_name: str) -> Dict[str, vt.CallRecord]:
    return {
        c.uuid: vt.CallRecord.from_properties(c.properties)
        for page in vt.get_store().iter_calls(function_name)
        for c in page
    }


def _bare_error(client: openai.OpenAI, **kwargs) -> type:
    """The exception type the unwrapped SDK raises under the current fault."""
    with pytest.raises(Exception) as raised:
        result = client.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=8, **kwargs)
        if kwargs.get("stream"):
            list(result)
    return type(raised.value)


def test_http_500s_reach_the_user_unchanged_and_are_stored_once(vt_env, openai_client, local_server):
    faults = local_server.backend.faults
    faults.fail_next = 1
    bare = _bare_error(openai_client)
    assert bare is openai.InternalServerError
    wrapped = vt.wrap(openai_client, function_name="srv500")
    faults.fail_next = 3
    failed = []
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as raised:
            wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=2)
        assert type(raised.value) is bare and raised.value.status_code == 500
        failed.append(last_run_id())
    ok = wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=2)  # fault cleared
    assert ok.choices[0].message.content is not None
    ok_id = last_run_id()
    assert vt.flush(30)
    stored = rows("srv500")
    assert sorted(stored) == sorted([*failed, ok_id])
    assert all(stored[i].status == "ERROR" and stored[i].error_type == "InternalServerError" for i in failed)
    assert stored[ok_id].status == "SUCCESS"


def test_timeouts_reach_the_user_unchanged_and_are_stored(vt_env, local_server):
    client = openai.OpenAI(base_url=local_server.base_url, api_key="sk-x", max_retries=0, timeout=0.3)
    faults = local_server.backend.faults
    try:
        faults.delay_s = 1.0
        bare = _bare_error(client)
        assert bare is openai.APITimeoutError
        wrapped = vt.wrap(client, function_name="srv_timeout")
        with pytest.raises(openai.APITimeoutError):
            wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=2)
        timed_out = last_run_id()
        faults.delay_s = 0.0
        wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=2)
        ok_id = last_run_id()
    finally:
        faults.clear()
        client.close()
    assert vt.flush(30)
    stored = rows("srv_timeout")
    assert sorted(stored) == sorted([timed_out, ok_id])
    assert stored[timed_out].status == "ERROR" and stored[timed_out].error_type == "APITimeoutError"
    assert stored[ok_id].status == "SUCCESS"


def test_stream_closed_midway_sync_then_recovers(vt_env, openai_client, local_server):
    faults = local_server.backend.faults
    faults.cut_stream_after = 2
    bare = _bare_error(openai_client, stream=True)
    wrapped = vt.wrap(openai_client, function_name="srv_cut")
    received: List[str] = []
    with pytest.raises(Exception) as raised:
        for chunk in wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=20, stream=True):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert type(raised.value) is bare and not isinstance(raised.value, vt.VTError)
    cut_id = last_run_id()
    faults.clear()
    text = "".join(
        c.choices[0].delta.content or ""
        for c in wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=6, stream=True)
        if c.choices
    )
    ok_id = last_run_id()
    assert vt.flush(30)
    stored = rows("srv_cut")
    assert sorted(stored) == sorted([cut_id, ok_id])
    assert stored[cut_id].status == "ERROR" and stored[cut_id].error_type == bare.__name__
    assert stored[cut_id].output == "".join(received)  # what the user got before the cut
    assert stored[ok_id].status == "SUCCESS" and stored[ok_id].output == text


def test_stream_closed_midway_async(vt_env, local_server):
    faults = local_server.backend.faults

    async def main() -> Tuple[str, str, Optional[type]]:
        client = openai.AsyncOpenAI(base_url=local_server.base_url, api_key="sk-x", max_retries=0)
        wrapped = vt.wrap(client, function_name="srv_cut_async")
        error: Optional[type] = None
        faults.cut_stream_after = 1
        try:
            stream = await wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=20, stream=True)
            async for _ in stream:
                pass
        except Exception as exc:
            error = type(exc)
        cut_id = last_run_id()
        faults.clear()
        await wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=2)
        ok_id = last_run_id()
        await client.close()
        return cut_id, ok_id, error

    try:
        cut_id, ok_id, error = asyncio.run(main())
    finally:
        faults.clear()
    assert error is not None and not issubclass(error, vt.VTError)
    assert vt.flush(30)
    stored = rows("srv_cut_async")
    assert sorted(stored) == sorted([cut_id, ok_id])
    assert stored[cut_id].status == "ERROR" and stored[ok_id].status == "SUCCESS"


def test_eight_threads_under_intermittent_500s_every_call_stored_with_its_outcome(vt_env, openai_client, local_server):
    faults = local_server.backend.faults
    wrapped = vt.wrap(openai_client, function_name="srv_threads")
    outcomes: Dict[str, str] = {}
    unexpected: List[str] = []
    lock = threading.Lock()

    def caller(t: int) -> None:
        for i in range(6):
            if t == 0 and i % 2 == 0:
                faults.fail_next += 2  # racy on purpose: some threads' calls fail
            try:
                wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=2)
                outcome = "SUCCESS"
            except openai.InternalServerError:
                outcome = "ERROR"
            except Exception as exc:
                with lock:
                    unexpected.append(repr(exc))
                continue
            with lock:
                outcomes[last_run_id()] = outcome

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    faults.clear()
    assert not unexpected
    assert "ERROR" in outcomes.values() and "SUCCESS" in outcomes.values()
    assert vt.flush(30)
    stored = rows("srv_threads")
    assert len(outcomes) == 48 and sorted(stored) == sorted(outcomes)
    assert {i: r.status for i, r in stored.items()} == outcomes
