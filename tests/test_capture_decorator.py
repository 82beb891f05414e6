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
    text = (
        "key sk-proj-abcdefghijklmnop1234 and Authorization: Bearer abc.def-ghi12345 "
        "api_key=supersecret99 mail a.b@example.org"
    )
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
    assert (pair.input_prompt, pair.bad_output, pair.fixed_output) == (
        "question: what is up?",
        "bad answer",
        "good answer",
    )
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

    code = (
        "import sys, vt_middleware as vt; assert 'vt_middleware.call_context' not in sys.modules; "
        "assert 'last_run_id' in vt.__all__ and vt.last_run_id() is None; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def _activate_hooks(tmp_path, source, version="d1"):
    from vt_middleware.runtime.hooks import LoadedHooks

    path = tmp_path / f"{version}.py"
    path.write_text(source)
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(path, version), keep_routes=True)


SEEN_HOOKS = (
    "SEEN = []\n\n"
    "def intercept_prompt(t, c):\n    SEEN.append(c['user_input'])\n    return t + ' (be brief)'\n\n"
    "def intercept_output(t, c):\n    SEEN.append(c['user_input'])\n    return t.replace('Here is a summary: ', '')\n"
)


def test_hooked_function_gets_hooked_prompt_and_returns_hooked_output(vt_env, tmp_path):
    _activate_hooks(tmp_path, SEEN_HOOKS)
    received = []

    @vt.track(function_name="generate_review_summary", hooks=True, prompt_arg="review")
    def summarize(style: str, review: str, limit: int = 40) -> str:
        received.append(review)
        return "Here is a summary: " + review[:limit]

    @vt.track(function_name="plain")  # hooks stay off unless asked for
    def plain(review: str) -> str:
        return "Here is a summary: " + review

    assert summarize("short", "great food", limit=12) == "great food ("
    assert received == ["great food (be brief)"]
    assert plain("x") == "Here is a summary: x"
    assert vt.flush(30)
    (row,) = [
        vt.CallRecord.from_properties(c.properties)
        for page in vt.get_store().iter_calls("generate_review_summary")
        for c in page
    ]
    assert row.inputs == {"args": {"style": "short", "review": "great food", "limit": 12}}  # what the caller passed
    assert row.output == "great food (" and row.raw_output == "Here is a summary: great food ("
    assert row.params["prompt_after_hook"] == "great food (be brief)" and row.hook_version == "d1"
    # the input a rule reads now is the one it was learned from
    pair = vt.feedback(row.run_id, fixed_output="Great food.")
    hooks = vt.get_runtime().current().hooks.module
    assert hooks.SEEN == [pair.input_prompt, pair.input_prompt]


async def test_hooked_async_function_defaults_to_the_first_str_argument(vt_env, tmp_path):
    _activate_hooks(tmp_path, SEEN_HOOKS)

    @vt.track(hooks=True)
    async def answer(n: int, question: str) -> str:
        return f"Here is a summary: {question}"

    assert await answer(3, "why?") == "why? (be brief)"
    row = _row(last_run_id())
    assert (
        row.raw_output == "Here is a summary: why? (be brief)" and row.params["prompt_after_hook"] == "why? (be brief)"
    )


def test_prompt_arg_must_name_a_parameter_and_needs_hooks(vt_env):
    with pytest.raises(vt.ConfigError, match="no such parameter"):
        vt.track(hooks=True, prompt_arg="text")(lambda review: review)
    with pytest.raises(vt.ConfigError, match="needs hooks=True"):
        vt.track(prompt_arg="review")


def test_rule_learned_from_a_decorated_function_applies_to_its_next_calls(vt_env):
    from vt_middleware.runtime.hooks import LoadedHooks
    from vt_middleware.synthesize.pipeline import synthesize_version

    @vt.track(function_name="review_summary", hooks=True)
    def summarize(review: str) -> str:
        return "Summary: " + review.split(":")[1].strip()

    for stars, text in [(4, "tasty noodles"), (2, "cold soup"), (5, "lovely staff"), (1, "rude waiter")]:
        out = summarize(f"review ({stars} stars): {text}")
        vt.feedback(last_run_id(), fixed_output=f"{out}\n\nRating: {stars}/5")
    result = synthesize_version(vt.get_store().list_feedback("review_summary"), prompt_rules=False)
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(result.hook_path, result.version))
    assert summarize("review (3 stars): slow service") == "Summary: slow service\n\nRating: 3/5"
