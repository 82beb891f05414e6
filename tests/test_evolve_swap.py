"""Promotion / rollback / store sync, and hot swap under load through vt.wrap on the local server."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import vt_middleware as vt
from swap_load import make_version, swap_storm, tagged_fine_tunes, wait_for
from vt_middleware.evolve.swap import PairState, Promoter, get_promoter, promote, promotion_history
from vt_middleware.runtime.active import Runtime, get_runtime
from vt_middleware.runtime.hook_dir import HookDir
from vt_middleware.synthesize.versions import HookVersionStore


def active_on_disk(hooks_dir, promoter=None):
    """The hooks folder's ACTIVE once the derived files show the live row."""
    assert (promoter or get_promoter()).flush_files(10)
    return HookDir(hooks_dir).active_version()


def promote_elsewhere(instance_id, *args):
    """Promote from another instance (own runtime) and wait for its derived files (the mirror)."""
    promoter = Promoter(runtime=Runtime(), instance_id=instance_id)
    row = promoter.promote(*args)
    assert promoter.flush_files(10)
    return row


def test_promote_swaps_routes_and_hooks_together_and_rollback_restores(vt_env):
    hooks_dir = vt_env.hooks_dir
    v1, v2 = make_version(hooks_dir, "one"), make_version(hooks_dir, "two")
    runtime = get_runtime()
    row = promote("base", "ft-1", v1)
    pair = runtime.current()
    assert pair.route("base") == "ft-1" and pair.hook_version == v1
    assert pair.hooks.apply_output("x", {}) == "x [hook:one]"
    assert active_on_disk(hooks_dir) == v1
    assert row["action"] == "promote" and row["hook_version"] == v1

    promote("base", "ft-2", v2)
    assert runtime.current().route("base") == "ft-2" and runtime.current().hook_version == v2

    back = vt.rollback()
    assert back["rolled_back"] is True
    assert runtime.current().route("base") == "ft-1" and runtime.current().hook_version == v1
    assert active_on_disk(hooks_dir) == v1

    vt.rollback()
    assert runtime.current().route("base") == "base" and runtime.current().hooks is None
    assert active_on_disk(hooks_dir) is None
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
    va, vb = tagged_fine_tunes(local_server, vt_env.hooks_dir)
    client = vt.wrap(openai_client, function_name="hot_swap_probe")
    stop = threading.Event()
    failures, mixed, seen = [], [], set()
    lock = threading.Lock()

    def caller() -> None:
        while not stop.is_set():
            try:
                response = client.chat.completions.create(
                    model="app-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
                )
            except Exception as exc:
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

    swap_storm([threading.Thread(target=caller) for _ in range(8)], stop, va, vb, flips=100)
    assert failures == []
    assert mixed == []
    assert {"vt-ft-a", "vt-ft-b"} <= seen  # calls really ran on both pairs while swapping


RESTARTED_APP = """
import json
import sys
from openai import OpenAI
import vt_middleware as vt

client = vt.wrap(OpenAI(base_url=sys.argv[1], api_key="sk-local", max_retries=0), function_name="restart_probe")
r = client.chat.completions.create(model="app-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
print(json.dumps({"model": r.model, "content": r.choices[0].message.content}))
"""

# Says whether libcst was loaded when the first answer came back: serving the promotion needs
# no synthesis code. (That the first call never waits for the store is tested in-process below.)
PROBE_HOOK = """
import sys


def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    heavy = ",".join(m for m in ("libcst",) if m in sys.modules)
    return model_output + " [hook:restart heavy=" + heavy + "]"
"""


def test_restarted_app_serves_the_last_promotion_without_calling_sync(vt_env, local_server, tmp_path):
    import os
    import subprocess
    import sys

    from vt_middleware.train.local_models import TINY_ID

    for alias in ("app-model", "vt-ft-restart"):
        local_server.backend.alias(alias, TINY_ID)
    version = HookVersionStore(vt_env.hooks_dir).create_version(PROBE_HOOK, validation={"ok": True})["version"]
    promote_elsewhere("process-a", "app-model", "vt-ft-restart", version)
    env = {
        **os.environ,
        "VT_STORE_PATH": str(vt_env.store_path),
        "VT_HOOKS_DIR": str(tmp_path / "b-hooks"),
        "VT_STATE_DIR": str(tmp_path / "b-state"),
        "VT_JOURNAL_PATH": str(tmp_path / "b-journal"),
        "VT_STRICT": "true",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    out = subprocess.run(
        [sys.executable, "-c", RESTARTED_APP, local_server.base_url],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["model"] == "vt-ft-restart"  # routed: the request went out for the fine-tuned model
    # the promoted hook version ran on the answer, with no synthesis code imported
    assert seen["content"].endswith(" [hook:restart heavy=]")


class BlockedLog:
    """A promotion record whose reads wait until released (a store that takes long to open)."""

    def __init__(self, rows):
        self.rows, self.release, self.reads = rows, threading.Event(), 0

    def record_promotions(self, promotions):
        self.rows.extend(promotions)
        return len(promotions)

    def promotions(self):
        self.reads += 1
        assert self.release.wait(30)
        return list(self.rows)


def test_first_call_serves_the_mirror_while_the_record_is_still_being_read(vt_env, monkeypatch):
    from vt_middleware.runtime import live

    v1 = make_version(vt_env.hooks_dir, "one")
    writer = Promoter(runtime=Runtime(), instance_id="elsewhere")
    row = writer.promote("base", "ft-1", v1)
    assert writer.flush_files(10)
    vt.reset(**vt_env.model_dump())
    log = BlockedLog([row])
    monkeypatch.setattr(live.Promoter, "store", property(lambda self: log))
    pair = get_runtime().current()  # the record read is blocked: only the mirror can have served this
    assert pair.route("base") == "ft-1" and pair.hook_version == v1
    assert wait_for(lambda: log.reads == 1)  # ...and the record is being checked in the background
    log.release.set()


def test_first_call_boots_once_and_explicit_activation_wins(vt_env):
    v1, v2 = make_version(vt_env.hooks_dir, "one"), make_version(vt_env.hooks_dir, "two")
    promote_elsewhere("elsewhere", "base", "ft-1", v1)
    vt.reset(**vt_env.model_dump())  # a restart: fresh runtime, nothing applied yet
    pair = get_runtime().current()
    assert pair.route("base") == "ft-1" and pair.hook_version == v1
    assert get_runtime().current() is pair  # booted once: later reads do not reload

    vt.reset(**vt_env.model_dump())
    get_runtime().activate(routes={"base": "pinned"}, label="explicit")
    assert get_runtime().current().route("base") == "pinned" and get_runtime().current().hooks is None

    HookDir(vt_env.hooks_dir).write_pointer(v2, {"action": "by hand"})  # not a promotion: never read
    (vt_env.store_path / "VTPromotions.latest.json").unlink()
    vt.reset(**vt_env.model_dump())  # record rows without the mirror: read in the background
    assert get_runtime().current().hooks is None  # not v2: ACTIVE names hooks without routes
    assert wait_for(lambda: get_runtime().current().hook_version == v1)
    assert get_runtime().current().route("base") == "ft-1"
    assert active_on_disk(vt_env.hooks_dir) == v1  # derived from the record again


def test_hooks_only_activation_is_a_promotion_a_restart_serves(vt_env):
    version = make_version(vt_env.hooks_dir, "solo")
    HookVersionStore(vt_env.hooks_dir).activate(version, force=True)
    assert [(r["action"], r["hook_version"]) for r in promotion_history()] == [("promote", version)]
    vt.reset(**vt_env.model_dump())
    pair = get_runtime().current()
    assert pair.hook_version == version and pair.hooks.apply_output("x", {}) == "x [hook:solo]"
    assert dict(pair.routes) == {}


def test_unloadable_stored_promotion_raises_in_strict_and_is_skipped_when_lenient(vt_env):
    import shutil

    version = make_version(vt_env.hooks_dir, "gone")
    promote_elsewhere("elsewhere", "base", "ft-1", version)
    shutil.rmtree(vt_env.hooks_dir / version)
    vt.reset(**vt_env.model_dump())
    with pytest.raises(vt.VTError, match=version):
        get_runtime().current()
    vt.reset(**{**vt_env.model_dump(), "strict": False})
    pair = get_runtime().current()  # fails open: the routes apply; no earlier version to fall back to
    assert pair.route("base") == "ft-1" and pair.hooks is None
    assert vt.error_counts().get("runtime.load_hooks:HookError") == 1


@pytest.mark.parametrize("damage", ["missing", "broken"])
def test_a_live_version_that_cannot_load_falls_back_to_the_last_that_validated(vt_env, damage):
    import os
    import shutil

    good, never_live = make_version(vt_env.hooks_dir, "good"), make_version(vt_env.hooks_dir, "never-live")
    HookVersionStore(vt_env.hooks_dir).create_version("x = 1\n", validation={"ok": False})  # v3 failed validation
    live = make_version(vt_env.hooks_dir, "live")
    promote_elsewhere("elsewhere", "base", "ft-1", good)
    second = Promoter(runtime=Runtime(), instance_id="elsewhere-2")
    second.sync_from_store()  # live before: good
    second.promote("base", "ft-2", live)
    assert second.flush_files(10)
    if damage == "missing":
        shutil.rmtree(vt_env.hooks_dir / live)
    else:
        os.chmod(vt_env.hooks_dir / live / "hook.py", 0o644)
        (vt_env.hooks_dir / live / "hook.py").write_text("def intercept_prompt(:\n")
    vt.reset(**{**vt_env.model_dump(), "strict": False})  # a restart
    pair = get_runtime().current()
    # the version live before it (validated), not the newer one that validated but never went live
    assert pair.hook_version == good and pair.hooks.apply_output("x", {}) == "x [hook:good]"
    assert pair.route("base") == "ft-2"  # the record's routes still apply
    assert vt.error_counts().get("runtime.load_hooks:HookError") == 1

    # with no earlier live version: the newest older one that validated
    fresh = Promoter(runtime=Runtime(), instance_id="fresh")
    fallback = fresh.serving_hooks(PairState({}, live, str(vt_env.hooks_dir.absolute())))
    assert fallback is not None and fallback.version == never_live


def test_periodic_sync_converges_without_a_restart(vt_env):
    v1, v2 = make_version(vt_env.hooks_dir, "one"), make_version(vt_env.hooks_dir, "two")
    vt.reset(**{**vt_env.model_dump(), "sync_interval_s": 0.05})
    assert get_runtime().current().route("base") == "base"  # boots: nothing stored yet
    other = Promoter(runtime=Runtime(), instance_id="other-instance")
    for version, model in ((v1, "ft-1"), (v2, "ft-2")):
        other.promote("base", model, version)
        assert wait_for(lambda: get_runtime().current().route("base") == model)
        assert get_runtime().current().hook_version == version
    other.rollback()
    assert wait_for(lambda: get_runtime().current().route("base") == "ft-1")
    assert get_runtime().current().hook_version == v1
    vt.reset()  # stops the sync thread
    from vt_middleware.runtime import sync

    assert sync._periodic is None


def test_weaviate_instance_boots_from_its_mirror_then_the_shared_store(tmp_path):
    from weaviate_fake import FakeWeaviate

    fake = FakeWeaviate().start()
    try:
        shared = {
            "store_mode": "weaviate",
            "weaviate_host": "127.0.0.1",
            "weaviate_port": fake.http_port,
            "weaviate_grpc_port": fake.grpc_port,
            "hooks_dir": tmp_path / "hooks",
            "strict": True,
            "journal_path": tmp_path / "journal",
            "store_path": tmp_path / "unused-lance",
        }
        vt.reset(**shared, state_dir=tmp_path / "a-state")
        v1, v2 = make_version(tmp_path / "hooks", "one"), make_version(tmp_path / "hooks", "two")
        promote_elsewhere("a", "base", "ft-1", v1)
        assert (tmp_path / "a-state" / "VTPromotions.latest.json").exists()  # A's own last pair

        vt.reset(**shared, state_dir=tmp_path / "b-state")  # B: never ran here, no mirror
        get_runtime().current()  # boots: no mirror here, so the store is read in the background
        assert wait_for(lambda: get_runtime().current().route("base") == "ft-1")
        assert get_runtime().current().hook_version == v1
        assert [p.label for p in get_runtime().history()] == ["initial"]

        promote_elsewhere("c", "base", "ft-2", v2)  # while A is down
        vt.reset(**shared, state_dir=tmp_path / "a-state")  # A restarts
        get_runtime().current()
        assert wait_for(lambda: get_runtime().current().route("base") == "ft-2")  # the store's newer row...
        assert get_runtime().current().hook_version == v2
        mirrored = get_runtime().history()[-1]  # ...came after A's own last pair, applied at once
        assert mirrored.route("base") == "ft-1" and mirrored.hook_version == v1
    finally:
        vt.reset()
        fake.stop()


def test_promoters_sharing_a_runtime_never_put_an_older_row_back(vt_env):
    v1, v2 = make_version(vt_env.hooks_dir, "one"), make_version(vt_env.hooks_dir, "two")
    runtime = Runtime()
    writer = Promoter(runtime=runtime, instance_id="writer")
    older = writer.promote("base", "ft-1", v1)
    writer.promote("base", "ft-2", v2)
    follower = Promoter(runtime=runtime, instance_id="follower")  # e.g. a start-up check, read before v2
    assert follower.apply_row(older) is None
    assert runtime.current().hook_version == v2 and runtime.current().route("base") == "ft-2"
    assert active_on_disk(vt_env.hooks_dir, writer) == v2
    follower.files.write(older, mirror=True)  # the derived files of an older row are not written either
    assert HookDir(vt_env.hooks_dir).active_version() == v2
    assert json.loads((vt_env.store_path / "VTPromotions.latest.json").read_text())["hook_version"] == v2
