"""The promotion record's local journal: a promotion is recorded before its store write lands,
every reader sees it meanwhile, a process that dies first loses nothing, and no row is doubled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

import vt_middleware as vt
from swap_load import make_version, wait_for
from vt_middleware.cli import app
from vt_middleware.errors import StoreError
from vt_middleware.evolve.swap import Promoter, get_promoter, promotion_history
from vt_middleware.runtime.active import Runtime, get_runtime
from vt_middleware.runtime.pending import RecordWriter, pending_dir, waiting_rows


class GatedStore:
    """The real store, whose promotion writes wait for ``release`` (or fail ``fail`` times first)."""

    def __init__(self, store, fail: int = 0) -> None:
        self.store, self.fail, self.release = store, fail, threading.Event()
        self.writing = threading.Event()
        self.attempts = 0

    def record_promotions(self, promotions):
        self.attempts += 1
        self.writing.set()
        if self.fail:
            self.fail -= 1
            raise StoreError("store unavailable")
        assert self.release.wait(30)
        return self.store.record_promotions(promotions)

    def promotions(self):
        return self.store.promotions()


def test_a_promotion_is_live_and_read_everywhere_before_its_store_write_lands(vt_env):
    v1 = make_version(vt_env.hooks_dir, "one")
    gated = GatedStore(vt.get_store())
    app_a = Promoter(runtime=Runtime(), store=gated, instance_id="a")
    row = app_a.promote("base", "ft-1", v1)
    assert app_a.runtime.current().hook_version == v1  # live now, the store write still held
    assert gated.writing.wait(10) and vt.get_store().promotions() == []
    assert [r["record_id"] for r in waiting_rows(pending_dir(vt_env))] == [row["record_id"]]

    # another instance on the same store follows the record and sees the journaled row
    app_b = Promoter(runtime=Runtime(), instance_id="b")
    assert [r["record_id"] for r in app_b.promotion_history()] == [row["record_id"]]
    applied = app_b.sync_from_store()
    assert applied is not None and applied["record_id"] == row["record_id"]
    assert app_b.runtime.current().route("base") == "ft-1" and app_b.runtime.current().hook_version == v1

    gated.release.set()
    assert app_a.flush_records(30)
    assert [r["record_id"] for r in vt.get_store().promotions()] == [row["record_id"]]  # landed once
    assert waiting_rows(pending_dir(vt_env)) == []  # its journal file is gone
    assert [r["record_id"] for r in app_b.promotion_history()] == [row["record_id"]]  # not doubled
    assert app_b.sync_from_store() is None  # nothing newer

    app_a.rollback()  # from the in-memory row; recorded the same way
    assert app_b.sync_from_store() is not None
    assert app_b.runtime.current().route("base") == "base" and app_b.runtime.current().hooks is None


DYING_APP = """
import os, sys, time
import vt_middleware as vt
from vt_middleware.store.executions import ExecutionStore
from vt_middleware.evolve.swap import promote

ExecutionStore.record_promotions = lambda self, rows: time.sleep(3600)  # the store write never lands
promote("base", "ft-died", sys.argv[1], reason="before the crash")
os._exit(0)  # dies: no exit handlers, the writer thread mid-write
"""


def test_a_promotion_survives_a_process_that_dies_before_the_store_write(vt_env):
    version = make_version(vt_env.hooks_dir, "survivor")
    env = {
        **os.environ,
        "VT_STORE_PATH": str(vt_env.store_path),
        "VT_HOOKS_DIR": str(vt_env.hooks_dir),
        "VT_STATE_DIR": str(vt_env.state_dir),
        "VT_JOURNAL_PATH": str(vt_env.journal_path),
        "VT_STRICT": "true",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    out = subprocess.run(
        [sys.executable, "-c", DYING_APP, version], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert vt.get_store().promotions() == []  # never reached the store
    (left,) = waiting_rows(pending_dir(vt_env))
    assert left["reason"] == "before the crash"
    (vt_env.store_path / "VTPromotions.latest.json").unlink(missing_ok=True)  # only the journal has it

    vt.reset(**vt_env.model_dump())  # the next start
    pair = get_runtime().current()
    assert pair.route("base") == "ft-died" and pair.hook_version == version
    assert pair.hooks.apply_output("x", {}) == "x [hook:survivor]"
    assert [r["reason"] for r in promotion_history()] == ["before the crash"]
    # ...and the start writes it into the store, once
    assert wait_for(lambda: waiting_rows(pending_dir(vt_env)) == [])
    assert [r["record_id"] for r in vt.get_store().promotions()] == [left["record_id"]]
    assert [r["reason"] for r in promotion_history()] == ["before the crash"]


def test_a_failed_store_write_is_counted_and_retried_until_the_row_lands(vt_env):
    v1 = make_version(vt_env.hooks_dir, "one")
    gated = GatedStore(vt.get_store(), fail=2)
    gated.release.set()
    promoter = Promoter(runtime=Runtime(), store=gated)
    row = promoter.promote("base", "ft-1", v1)  # the journal took it: the promotion stands
    assert promoter.runtime.current().hook_version == v1
    assert promoter.flush_records(30)
    assert gated.attempts == 3 and promoter.records.failures == 2
    assert vt.error_counts() == {"runtime.promotion_record:StoreError": 2}
    assert [r["record_id"] for r in vt.get_store().promotions()] == [row["record_id"]]
    assert waiting_rows(pending_dir(vt_env)) == []


def test_writers_racing_for_the_same_rows_write_each_once(vt_env):
    versions = [make_version(vt_env.hooks_dir, f"v{i}") for i in range(3)]
    gated = GatedStore(vt.get_store())
    first = Promoter(runtime=Runtime(), store=gated)
    rows = [first.promote(None, None, v) for v in versions]
    assert gated.writing.wait(10)  # the first writer is writing (and holds) some of the rows
    second = RecordWriter(pending_dir(vt_env), vt.get_store)
    second.replay()  # another process's start: every journaled row
    time.sleep(0.3)
    gated.release.set()
    assert first.flush_records(30) and second.flush(30)
    assert waiting_rows(pending_dir(vt_env)) == []
    ids = sorted(r["record_id"] for r in rows)
    assert sorted(r["record_id"] for r in vt.get_store().promotions()) == ids

    # a row whose file outlived its store write (a crash right after it) is not written again
    (pending_dir(vt_env) / "00000000000000000001-again.json").write_text(json.dumps(rows[0]))
    second.replay()
    assert second.flush(30) and waiting_rows(pending_dir(vt_env)) == []
    assert sorted(r["record_id"] for r in vt.get_store().promotions()) == ids


def test_vt_doctor_lists_waiting_promotion_rows_and_vt_flush_lands_them(vt_env):
    v1 = make_version(vt_env.hooks_dir, "one")
    down = GatedStore(vt.get_store(), fail=10**6)  # a store this writer cannot reach
    promoter = Promoter(runtime=Runtime(), store=down)
    row = promoter.promote("base", "ft-1", v1)
    assert down.writing.wait(10)
    promoter.records.stop()  # this writer gives up (its process exits); the row stays journaled
    runner = CliRunner()
    info = json.loads(runner.invoke(app, ["doctor", "--json"]).output)
    assert info["promotion_rows_waiting"] == 1 and info["promotion_journal_path"] == str(pending_dir(vt_env))
    assert "vt flush" in info["advice"]

    result = runner.invoke(app, ["flush", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    assert "promotion rows: 1 waiting; 0 still waiting" in result.output
    assert [r["record_id"] for r in vt.get_store().promotions()] == [row["record_id"]]
    assert json.loads(runner.invoke(app, ["doctor", "--json"]).output)["promotion_rows_waiting"] == 0
    assert get_promoter().promotion_history()[-1]["record_id"] == row["record_id"]
