"""@vt.track, redaction and vt.feedback."""
from __future__ import annotations

import json

import pytest

import vt_middleware as vt
from vt_middleware.call_context import last_run_id
from vt_middleware.redaction import redact, redact_value


def _row(run_id):
    assert vt.flush(30)
    stored = vt.get_store().get_call(run_id)
    assert stored is not None
    return vt.CallRecord.from_properties(stored.properties)


def test_sync_inputs_by_name_output_and_duration(vt_env):
    @vt.track(function_name="summarize")
    def summarize(review: str, limit: int = 10) -> str:
        return review[:limit].upper()

    assert summarize("the food was great", limit=8) == "THE FOOD"
    row = _row(last_run_id())
    assert row.inputs == {"args": {"review": "the food was great", "limit": 8}}
    assert row.output == "THE FOOD" and row.status == "SUCCESS" and row.latency_ms >= 0


def test_exception_reraised_unchanged_and_recorded(vt_env):
    class AppError(Exception):
        pass

    error = AppError("boom")

    @vt.track
    def fails(x):
        raise error

    with pytest.raises(AppError) as raised:
        fails(1)
    assert raised.value is error
    assert vt.flush(30)
    (page,) = list(vt.get_store().iter_calls(fails.__qualname__))
    row = vt.CallRecord.from_properties(page[0].properties)
    assert row.status == "ERROR" and row.error_type == "AppError" and row.error_message == "boom"


async def test_async_function_and_nested_parent(vt_env):
    @vt.track(function_name="inner")
    async def inner(x):
        return {"value": x, "items": [1, 2]}

    @vt.track(function_name="outer")
    async def outer(x):
        return await inner(x)

    assert await outer(3) == {"value": 3, "items": [1, 2]}
    outer_row = _row(last_run_id())
    inner_rows = [vt.CallRecord.from_properties(c.properties) for p in vt.get_store().iter_calls("inner") for c in p]
    assert inner_rows[0].parent_run_id == outer_row.run_id
    assert inner_rows[0].output == '{"value": 3, "items": [1, 2]}'  # non-text output -> JSON


def test_non_serialisable_and_huge_inputs(tmp_path):
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "j", max_field_chars=300, strict=True)
    try:
        class Opaque:
            def __repr__(self):
                return "<Opaque thing>"

        @vt.track(function_name="odd")
        def odd(obj, blob):
            return Opaque()

        odd(Opaque(), "x" * 5000)
        row = _row(last_run_id())
        assert row.inputs["args"]["obj"] == "<Opaque thing>" and row.output == "<Opaque thing>"
        assert len(row.inputs["args"]["blob"]) == 300 and row.inputs["args"]["blob"].endswith("chars]")
    finally:
        vt.reset()


def test_redaction_patterns(vt_env):
    text = ("key sk-proj-abcdefghijklmnop1234 and Authorization: Bearer abc.def-ghi12345 "
            "api_key=supersecret99 mail a.b@example.org")
    out = redact(text)
    for secret in ("sk-proj-abcdef", "abc.def-ghi12345", "supersecret99", "a.b@example.org"):
        assert secret not in out
    assert redact_value({"api_key": "plain", "nested": ["x@y.com"]}) == {"api_key": "[REDACTED]", "nested": ["[EMAIL]"]}
    vt.configure(redact_emails=False, redact_patterns=[r"\bCUST-\d+\b"])
    assert redact("CUST-42 x@y.com") == "[REDACTED] x@y.com"
    with pytest.raises(ValueError, match="redact_patterns"):
        vt.configure(redact_patterns=["(unclosed"])


def test_feedback_links_the_captured_call(vt_env):
    @vt.track(function_name="answer")
    def answer(question: str) -> str:
        return "bad answer"

    answer("what is up?")
    run_id = last_run_id()
    pair = vt.feedback(run_id, "good answer", comment="too vague")
    assert (pair.input_prompt, pair.bad_output, pair.fixed_output) == ("question: what is up?", "bad answer", "good answer")
    assert pair.context["function"] == "answer" and pair.run_id == run_id
    assert [p.pair_id for p in vt.get_store().list_feedback("answer")] == [pair.pair_id]
    with pytest.raises(vt.VTError, match="no captured call"):
        vt.feedback("00000000-0000-0000-0000-000000000000", "x")
    with pytest.raises(vt.ConfigError, match="fixed_output"):
        vt.feedback(run_id)
    approved = vt.feedback(run_id, thumbs_up=True)
    assert approved.fixed_output == "bad answer" and approved.context["thumbs_up"] is True


def test_failed_call_sets_last_run_id_so_feedback_can_attach(vt_env):
    @vt.track(function_name="flaky")
    def flaky(question: str) -> str:
        raise ValueError(f"cannot answer {question}")

    before = vt.last_run_id()
    with pytest.raises(ValueError):
        flaky("why?")
    run_id = vt.last_run_id()
    assert run_id is not None and run_id != before
    row = _row(run_id)
    assert (row.status, row.error_type, row.inputs) == ("ERROR", "ValueError", {"args": {"question": "why?"}})
    pair = vt.feedback(run_id, "Because it is Tuesday.")
    assert pair.run_id == run_id and pair.context["status"] == "ERROR"
    assert pair.fixed_output == "Because it is Tuesday."


async def test_failed_async_call_sets_last_run_id_inside_its_parent(vt_env):
    @vt.track(function_name="inner_fails")
    async def inner() -> None:
        raise KeyError("missing")

    @vt.track(function_name="outer_recovers")
    async def outer() -> str:
        try:
            await inner()
        except KeyError:
            return vt.last_run_id()  # the failed inner call's id
        return ""

    inner_id = await outer()
    outer_id = vt.last_run_id()
    assert inner_id and outer_id and inner_id != outer_id
    inner_row, outer_row = _row(inner_id), _row(outer_id)
    assert inner_row.status == "ERROR" and inner_row.error_type == "KeyError"
    assert inner_row.parent_run_id == outer_id and outer_row.status == "SUCCESS"


def test_record_is_the_call_as_it_ended_not_later_mutation(vt_env):
    # the worker builds the record later: what the caller does after the call must not show
    @vt.track(function_name="collect")
    def collect(items: list, meta: dict) -> dict:
        items.append("added inside")  # part of the call: recorded
        return {"count": len(items), "items": items, "meta": meta}

    items, meta = ["a"], {"user": "u1"}
    result = collect(items, meta)
    run_id = vt.last_run_id()
    items.append("added after")
    meta["user"] = "changed"
    result["count"] = 99
    row = _row(run_id)
    assert row.inputs == {"args": {"items": ["a", "added inside"], "meta": {"user": "u1"}}}
    assert json.loads(row.output) == {"count": 2, "items": ["a", "added inside"], "meta": {"user": "u1"}}


def test_last_run_id_is_a_lazy_public_name():
    import subprocess
    import sys

    code = ("import sys, vt_middleware as vt; assert 'vt_middleware.call_context' not in sys.modules; "
            "assert 'last_run_id' in vt.__all__ and vt.last_run_id() is None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
