"""Hook versions: immutable folders; activation is a recorded promotion, with ACTIVE and
history derived from it; rollback across restarts; following the record (hot reload)."""

from __future__ import annotations

import os
import threading
import time

import pytest

import vt_middleware
from vt_middleware.errors import ConfigError, HookError
from vt_middleware.runtime.active import Runtime, get_runtime
from vt_middleware.runtime.live import get_promoter
from vt_middleware.runtime.watcher import HookWatcher
from vt_middleware.synthesize import HookVersionStore, build_module
from vt_middleware.types import Rule


def tag_rule(tag: str) -> Rule:
    return Rule(
        f"append-{tag}",
        f"tag {tag}",
        {"scope": None, "pattern": None},
        {"parts": [["lit", f"[{tag}]", ""]], "separator": " "},
        kind="append",
        priority=20,
        sources=["a", "b"],
        support=2,
    )


def make_version(store: HookVersionStore, tag: str, ok: bool = True) -> str:
    version = store.reserve_version()
    store.create_version(
        build_module([tag_rule(tag)], version=version).code,
        rules=[tag_rule(tag)],
        source_pairs=["a", "b"],
        validation={"ok": ok},
        version=version,
    )
    return version


@pytest.fixture
def lenient(vt_env):
    return vt_middleware.reset(**{**vt_env.model_dump(), "strict": False})


def test_versions_are_immutable_with_manifest(tmp_path):
    store = HookVersionStore(tmp_path)
    v1, v2 = make_version(store, "one"), make_version(store, "two")
    assert (v1, v2) == ("v0001", "v0002")
    manifest = store.manifest(v1)
    assert {"version", "created_at", "rule_count", "source_pairs", "validation", "rules"} <= set(manifest)
    assert manifest["rule_count"] == 1 and manifest["rules"][0]["rule_id"] == "append-one"
    with pytest.raises(HookError, match="immutable"):
        store.create_version("x = 1\n", version=v1)
    assert not os.access(store.hook_path(v1), os.W_OK) or os.geteuid() == 0
    assert [m["version"] for m in store.list_versions()] == [v1, v2]
    with pytest.raises(ConfigError, match="not a hook version"):
        store.manifest("../etc")
    with pytest.raises(HookError, match="does not exist"):
        store.activate("v0099")


def test_activate_rollback_and_history_survive_restart(vt_env):
    hooks_dir = vt_env.hooks_dir
    store = HookVersionStore(hooks_dir)
    v1, v2, v3 = (make_version(store, t) for t in ("a", "b", "c"))
    for v in (v1, v2, v3):
        store.activate(v)
    assert store.active_version() == v3 == get_runtime().current().hook_version
    assert vt_middleware.rollback()["hook_version"] == v2
    vt_middleware.reset(**vt_env.model_dump())  # a new process sees the same state
    assert get_runtime().current().hook_version == v2
    assert vt_middleware.rollback()["hook_version"] == v1  # previous of the previous, not back to v3
    assert vt_middleware.rollback(to=v3)["hook_version"] == v3
    assert get_promoter().flush_files(10)
    restarted = HookVersionStore(hooks_dir)
    actions = [(r["action"], r["hook_version"]) for r in get_promoter().promotion_history()]
    assert actions == [
        ("promote", v1),
        ("promote", v2),
        ("promote", v3),
        ("rollback", v2),
        ("rollback", v1),
        ("promote", v3),
    ]
    assert [e["version"] for e in restarted.history()][-1] == v3  # derived from the record
    assert [m["version"] for m in restarted.list_versions() if m["active"]] == [v3]
    assert not [p for p in os.listdir(hooks_dir) if p.endswith(".tmp")]


def test_failed_validation_needs_force(vt_env):
    store = HookVersionStore(vt_env.hooks_dir)
    bad = make_version(store, "bad", ok=False)
    with pytest.raises(HookError, match="failed validation"):
        store.activate(bad)
    store.activate(bad, force=True)
    assert store.active_version() == bad


def test_watcher_follows_the_record_without_dropping_or_mixing_calls(lenient):
    store = HookVersionStore(lenient.hooks_dir)
    versions = [make_version(store, t) for t in ("v1", "v2")]
    store.activate(versions[0])
    runtime = Runtime()
    watcher = HookWatcher(runtime=runtime, poll_interval=0.01).start()
    results, stop = [], threading.Event()

    def caller():
        while not stop.is_set():
            pair = runtime.current()
            out = pair.hooks.apply_output("text", {}) if pair.hooks else "text"
            results.append((pair.hook_version, out))
            time.sleep(0.0005)  # a call's I/O wait: pure spinning threads would starve the store's own threads

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        store.activate(versions[(i + 1) % 2])  # a tool or another instance promotes
        watcher.check_once()
        assert runtime.current().hook_version == versions[(i + 1) % 2]
    stop.set()
    for t in threads:
        t.join()
    watcher.stop()
    assert watcher.swaps >= 20
    tags = {versions[0]: "[v1]", versions[1]: "[v2]"}
    assert results and all(out == f"text {tags[v]}" for v, out in results)  # exactly one tag, the right one
    seen_calls = sum(p.hooks.calls for p in [runtime.current(), *runtime.history()] if p.hooks)
    assert seen_calls >= len(results)


def test_hook_that_keeps_raising_is_bypassed_then_rolled_back(lenient):
    store = HookVersionStore(lenient.hooks_dir)
    good = make_version(store, "good")
    broken = store.reserve_version()
    store.create_version(
        "def intercept_prompt(u, c):\n    return u\n\ndef intercept_output(o, c):\n    raise RuntimeError('boom')\n",
        version=broken,
        validation={"ok": True},
    )
    store.activate(good)
    store.activate(broken)
    runtime = Runtime()
    watcher = HookWatcher(runtime=runtime, rollback_after=3, poll_interval=0.01)
    watcher.check_once()
    assert runtime.current().hook_version == broken
    outputs = [runtime.current().hooks.apply_output("hello", {}) for _ in range(3)]
    assert outputs == ["hello"] * 3  # fail open: the user's text passes through
    deadline = time.time() + 5
    while runtime.current().hook_version != good and time.time() < deadline:
        time.sleep(0.01)
    assert runtime.current().hook_version == good
    assert watcher.promoter.flush_files(10)
    assert store.active_version() == good and watcher.auto_rollbacks == [broken]
    assert store.history()[-1]["reason"].startswith("auto:")
    last = get_promoter().promotion_history()[-1]  # recorded: every instance follows the rollback
    assert (last["action"], last["hook_version"]) == ("rollback", good)
    assert vt_middleware.error_counts().get("hooks.intercept_output:RuntimeError", 0) >= 3


def test_unloadable_version_keeps_current_hooks(lenient):
    store = HookVersionStore(lenient.hooks_dir)
    good = make_version(store, "good")
    store.activate(good)
    broken = store.reserve_version()
    store.create_version("x = 1\n", version=broken, validation={"ok": True})  # no intercept functions
    with pytest.raises(HookError, match="no callable intercept_prompt"):
        store.activate(broken)
    assert get_runtime().current().hook_version == good
    assert [r["hook_version"] for r in get_promoter().promotion_history()] == [good]
