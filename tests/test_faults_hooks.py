"""A live hook module that raises, loops or does not import: the user's calls through
vt.wrap still succeed with the text passed through, every call is stored once, and the
runtime goes back to the last good version by itself."""

from __future__ import annotations

import threading
import time

import pytest

import vt_middleware as vt
from vt_middleware.call_context import last_run_id
from vt_middleware.errors import HookError
from vt_middleware.evolve.swap import Promoter, get_promoter
from vt_middleware.runtime.hook_dir import HookDir
from vt_middleware.runtime.hooks import LoadedHooks
from vt_middleware.synthesize.versions import HookVersionStore
from vt_middleware.train.local_models import TINY_ID

GOOD = """
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output + " [hook:good]"
"""

RAISES = """
def intercept_prompt(user_input, context):
    raise ValueError("bad rule")


def intercept_output(model_output, context):
    return {"not": "a string"}
"""

# "Loops": a busy loop long past any sane hook time (bounded, so the test cannot leave a
# thread spinning for the rest of the session).
LOOPS = """
import time


def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        pass
    return model_output + " [hook:loop]"
"""

# a stream processor whose feed() hangs on the first piece (bounded, as above)
STREAM_LOOPS = (
    LOOPS
    + """

class _Stuck:
    def feed(self, text):
        time.sleep(3.0)
        return text

    def finish(self):
        return " [hook:loop]"


def intercept_output_stream(context):
    return _Stuck()
"""
)

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def lenient(vt_env):
    """Hook errors fail open (counted) instead of raising as strict tests do."""
    return vt.reset(**{**vt_env.model_dump(), "strict": False, "hook_failure_rollback_after": 3})


def _version(config, code: str) -> str:
    return HookVersionStore(config.hooks_dir).create_version(code, validation={"ok": True})["version"]


def _wait_for_version(version: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while vt.get_runtime().current().hook_version != version and time.monotonic() < deadline:
        time.sleep(0.02)
    assert vt.get_runtime().current().hook_version == version


def _stored(function_name: str):
    return {
        c.uuid: vt.CallRecord.from_properties(c.properties)
        for page in vt.get_store().iter_calls(function_name)
        for c in page
    }


def test_raising_hook_passes_text_through_and_auto_rolls_back(lenient, openai_client):
    good, bad = _version(lenient, GOOD), _version(lenient, RAISES)
    promoter = Promoter()
    promoter.promote(None, None, good, record=False)
    promoter.promote(None, None, bad, record=False)
    wrapped = vt.wrap(openai_client, function_name="hook_raises")
    raw = openai_client.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=4)
    raw_text = raw.choices[0].message.content
    ids, texts = [], []
    for _ in range(3):
        response = wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=4)
        texts.append(response.choices[0].message.content)
        ids.append(last_run_id())
    assert texts[0] == raw_text  # the failing hook changed nothing
    assert vt.error_counts().get("hooks.intercept_prompt:ValueError", 0) >= 1
    assert vt.error_counts().get("hooks.intercept_output:HookError", 0) >= 1
    _wait_for_version(good)
    after = wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=4)
    assert after.choices[0].message.content == raw_text + " [hook:good]"
    ids.append(last_run_id())
    assert promoter.auto_rollbacks == [bad]
    assert promoter.flush_files(10) and HookDir(lenient.hooks_dir).active_version() == good
    assert vt.flush(30)
    stored = _stored("hook_raises")
    assert sorted(stored) == sorted(ids)
    assert stored[ids[0]].hook_version == bad and stored[ids[0]].output == raw_text
    assert stored[ids[-1]].hook_version == good


def test_looping_hook_is_cut_off_by_hook_timeout_and_disabled(lenient, openai_client):
    vt.reset(**{**lenient.model_dump(), "hook_timeout_s": 0.3})
    good, looping = _version(lenient, GOOD), _version(lenient, LOOPS)
    promoter = Promoter()
    promoter.promote(None, None, good, record=False)
    promoter.promote(None, None, looping, record=False)
    loaded = vt.get_runtime().current().hooks
    assert loaded.timeout_s == 0.3
    wrapped = vt.wrap(openai_client, function_name="hook_loops")
    started = time.monotonic()
    first = wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=4)
    returned_after = time.monotonic() - started
    first_id = last_run_id()
    assert "[hook:loop]" not in first.choices[0].message.content
    assert returned_after < 2.5, "the call waited for the looping hook"  # the loop runs 3 s
    assert loaded.disabled
    assert vt.error_counts().get("hooks.intercept_output:HookError", 0) == 1
    _wait_for_version(good)  # one timeout trips the rollback at once
    second = wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=4)
    assert second.choices[0].message.content.endswith(" [hook:good]")
    spinning = [t for t in threading.enumerate() if t.name == f"vt-hook-{looping}"]
    assert len(spinning) <= 1  # disabled: later calls never start another
    assert vt.flush(30)
    assert sorted(_stored("hook_loops")) == sorted([first_id, last_run_id()])


def test_stuck_stream_processor_is_cut_off_by_hook_timeout_and_the_raw_text_streams_on(lenient, openai_client):
    vt.reset(**{**lenient.model_dump(), "hook_timeout_s": 0.3})
    good, stuck = _version(lenient, GOOD), _version(lenient, STREAM_LOOPS)
    promoter = Promoter()
    promoter.promote(None, None, good, record=False)
    promoter.promote(None, None, stuck, record=False)
    loaded = vt.get_runtime().current().hooks
    request = {"model": TINY_ID, "messages": MESSAGES, "max_tokens": 6, "stream": True}
    raw = "".join(c.choices[0].delta.content or "" for c in openai_client.chat.completions.create(**request))
    wrapped = vt.wrap(openai_client, function_name="stream_stuck")
    started = time.monotonic()
    received = "".join(c.choices[0].delta.content or "" for c in wrapped.chat.completions.create(**request))
    assert time.monotonic() - started < 2.5, "the stream waited for the stuck processor"  # it sleeps 3 s
    assert received == raw  # everything the model sent, nothing held back, no hook text
    assert loaded.disabled
    assert vt.error_counts().get("hooks.intercept_output_stream:HookError", 0) == 1
    _wait_for_version(good)  # one timeout trips the rollback at once
    after = "".join(c.choices[0].delta.content or "" for c in wrapped.chat.completions.create(**request))
    assert after == raw + " [hook:good]"
    assert vt.flush(30)
    assert [r.output for r in _stored("stream_stuck").values()].count(raw) == 1


def test_without_hook_timeout_hooks_run_inline(lenient, tmp_path):
    path = tmp_path / "inline.py"
    path.write_text(GOOD)
    hooks = LoadedHooks.from_file(path, "inline")
    assert hooks.timeout_s is None
    seen = []
    hooks.module.intercept_output = lambda text, ctx: seen.append(threading.current_thread()) or text
    hooks.apply_output("x", {})
    assert seen == [threading.current_thread()]


def test_hook_version_that_fails_to_import_keeps_the_current_hooks(lenient, openai_client):
    versions = HookVersionStore(lenient.hooks_dir)
    good = _version(lenient, GOOD)
    versions.activate(good)
    assert vt.get_runtime().current().hook_version == good
    broken = _version(lenient, "def intercept_prompt(:\n")
    with pytest.raises(HookError, match="failed to import"):
        versions.activate(broken, force=True)  # loaded before anything changes: never live
    assert vt.get_runtime().current().hook_version == good
    assert [r["hook_version"] for r in get_promoter().promotion_history()] == [good]  # nothing recorded
    response = vt.wrap(openai_client, function_name="hook_import").chat.completions.create(
        model=TINY_ID, messages=MESSAGES, max_tokens=4
    )
    assert response.choices[0].message.content.endswith(" [hook:good]")
