"""Promotion / rollback / store sync, and hot swap under load through vt.wrap on the local server."""
from __future__ import annotations

import threading
import time

import pytest

import vt_middleware as vt
from vt_middleware.evolve.swap import Promoter, promote, promotion_history, sync_from_store
from vt_middleware.runtime.active import Runtime, get_runtime
from vt_middleware.synthesize.versions import HookVersionStore

TAG_HOOK = '''
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output + " [hook:{tag}]"
'''


def make_version(hooks_dir, tag: str) -> str:
    store = HookVersionStore(hooks_dir)
    return store.create_version(TAG_HOOK.replace("{tag}", tag), validation={"ok": True})["version"]


def test_promote_swaps_routes_and_hooks_together_and_rollback_restores(vt_env):
    hooks_dir = vt_env.hooks_dir
    v1, v2 = make_version(hooks_dir, "one"), make_version(hooks_dir, "two")
    runtime = get_runtime()
    row = promote("base", "ft-1", v1)
    pair = runtime.current()
    assert pair.route("base") == "ft-1" and pair.hook_version == v1
    assert pair.hooks.apply_output("x", {}) == "x [hook:one]"
    assert HookVersionStore(hooks_dir).active_version() == v1
    assert row["action"] == "promote" and row["hook_version"] == v1

    promote("base", "ft-2", v2)
    assert runtime.current().route("base") == "ft-2" and runtime.current().hook_version == v2

    back = vt.rollback()
    assert back["rolled_back"] is True
    assert runtime.current().route("base") == "ft-1" and runtime.current().hook_version == v1
    assert HookVersionStore(hooks_dir).active_version() == v1

    vt.rollback()
    assert runtime.current().route("base") == "base" and runtime.current().hooks is None
    assert HookVersionStore(hooks_dir).active_version() is None
    assert vt.rollback()["rolled_back"] is False  # back at the start: nothing to restore

    assert [r["action"] for r in promotion_history()] == ["promote", "promote", "rollback", "rollback"]


def test_model_only_promotion_keeps_hooks(vt_env):
    v1 = make_version(vt_env.hooks_dir, "one")
    promote(None, None, v1)
    promote("base", "ft-9", None)
    assert get_runtime().current().hook_version == v1
    assert get_runtime().current().route("base") == "ft-9"
    with pytest.raises(vt.ConfigError, match="base_model"):
        promote(None, "ft-x", None)


def test_instances_sharing_a_store_converge(vt_env):
    v1 = make_version(vt_env.hooks_dir, "one")
    app_a = Promoter(runtime=Runtime(), instance_id="a")
    app_b = Promoter(runtime=Runtime(), instance_id="b")
    assert app_b.sync_from_store() is None  # nothing promoted yet

    app_a.promote("base", "ft-1", v1)
    applied = app_b.sync_from_store()
    assert applied is not None and applied["instance_id"] == "a"
    assert app_b.runtime.current().route("base") == "ft-1"
    assert app_b.runtime.current().hook_version == v1
    assert app_b.sync_from_store() is None  # already up to date
    assert app_a.sync_from_store() is None  # its own promotion

    app_a.rollback()
    app_b.sync_from_store()
    assert app_b.runtime.current().route("base") == "base" and app_b.runtime.current().hooks is None


def test_restarted_instance_rolls_back_from_store_history(vt_env):
    v1, v2 = make_version(vt_env.hooks_dir, "one"), make_version(vt_env.hooks_dir, "two")
    before = Promoter(runtime=Runtime())
    before.promote("base", "ft-1", v1)
    before.promote("base", "ft-2", v2)
    restarted = Promoter(runtime=Runtime())  # no local history
    restarted.sync_from_store()
    assert restarted.runtime.current().hook_version == v2
    out = restarted.rollback()
    assert out["rolled_back"] and restarted.runtime.current().hook_version == v1
    assert restarted.runtime.current().route("base") == "ft-1"


def test_hot_swap_under_load_no_failed_or_mixed_calls(vt_env, local_server, openai_client):
    from vt_middleware.train.local_models import TINY_ID

    backend = local_server.backend
    for alias in ("app-model", "vt-ft-a", "vt-ft-b"):
        backend.alias(alias, TINY_ID)
    va, vb = make_version(vt_env.hooks_dir, "vt-ft-a"), make_version(vt_env.hooks_dir, "vt-ft-b")
    client = vt.wrap(openai_client, function_name="hot_swap_probe")
    stop = threading.Event()
    failures, mixed, seen = [], [], set()
    lock = threading.Lock()

    def caller() -> None:
        while not stop.is_set():
            try:
                response = client.chat.completions.create(
                    model="app-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
            except Exception as exc:  # noqa: BLE001 - counted, asserted below
                with lock:
                    failures.append(repr(exc))
                continue
            text = response.choices[0].message.content or ""
            tag = text.rsplit("[hook:", 1)[1].rstrip("]") if "[hook:" in text else None
            served = response.model
            expected_tag = None if served == "app-model" else served
            with lock:
                seen.add(served)
                if tag != expected_tag:
                    mixed.append((served, tag))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    promoter = Promoter()
    promoter.promote("app-model", "vt-ft-a", va, record=False)
    for i in range(100):
        time.sleep(0.01)
        if i % 2 == 0:
            promoter.promote("app-model", "vt-ft-b", vb, record=False)
        else:
            promoter.rollback(record=False)
    time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert mixed == []
    assert {"vt-ft-a", "vt-ft-b"} <= seen  # calls really ran on both pairs while swapping
