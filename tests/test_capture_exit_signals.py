"""Process ends as a process manager or a crash ends it: exit right after a burst,
SIGTERM during a burst, kill -9 during a burst. Counted by run id, in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD_PRELUDE = """
import os, sys, threading, time
sys.path.insert(0, {root!r})
import vt_middleware as vt
vt.configure(store_path={store!r}, journal_path={journal!r}, strict=True)

@vt.track(function_name="exiting")
def answer(i):
    return "answer %d" % i
"""

BURST = (
    CHILD_PRELUDE
    + """
ids = []
for i in range({n}):
    answer(i)
    ids.append(vt.last_run_id())
with open({ids_path!r}, "w") as out:
    out.write("\\n".join(ids))
"""
)

# Threads call until the process is ended; each returned call's run id and return time
# go to a file right after the call returns.
RUN_UNTIL_ENDED = (
    CHILD_PRELUDE
    + """
out = open({ids_path!r}, "a", buffering=1)
lock = threading.Lock()

def loop(t):
    i = 0
    while True:
        answer(t * 1_000_000 + i)
        run_id, returned = vt.last_run_id(), time.time()
        with lock:
            out.write("%s %.6f\\n" % (run_id, returned))
        i += 1
        time.sleep(0.0005)

for t in range(4):
    threading.Thread(target=loop, args=(t,), daemon=True).start()
while True:
    time.sleep(0.05)
"""
)


def _child(script: str, tmp_path: Path, **fmt) -> dict:
    paths = {
        "root": str(ROOT),
        "store": str(tmp_path / "lance"),
        "journal": str(tmp_path / "journal"),
        "ids_path": str(tmp_path / "ids.txt"),
    }
    code = textwrap.dedent(script).format(**paths, **fmt)
    return {"code": code, **paths}


def _stored_and_journaled(tmp_path: Path) -> tuple:
    """Run ids in the store and in the journal, read without replaying."""
    import vt_middleware as vt
    from vt_middleware.capture.journal import read_items
    from vt_middleware.store.executions import ExecutionStore

    config = vt.configure(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", strict=True)
    stored = {c.uuid for page in ExecutionStore(config).iter_calls("exiting") for c in page}
    journaled = set()
    for segment in (tmp_path / "journal").glob("seg-*") if (tmp_path / "journal").exists() else []:
        journaled |= {item["uuid"] for item in read_items(segment)}
    return stored, journaled


def _land_rest(tmp_path: Path) -> set:
    """The next start: replay the journal, then the store's run ids."""
    import vt_middleware as vt

    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", strict=True)
    assert vt.flush(120)
    assert vt.capture_stats()["journal_pending"] == 0
    return {c.uuid for page in vt.get_store().iter_calls("exiting") for c in page}


def _returned(path: Path) -> dict:
    rows = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line torn by the kill is not a returned call we know of
            rows[parts[0]] = float(parts[1])
    return rows


def test_exit_right_after_ten_thousand_calls_keeps_every_call(tmp_path):
    child = _child(BURST, tmp_path, n=10_000)
    done = subprocess.run([sys.executable, "-c", child["code"]], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = Path(child["ids_path"]).read_text().split()
    assert len(ids) == len(set(ids)) == 10_000
    stored, journaled = _stored_and_journaled(tmp_path)
    assert set(ids) <= stored | journaled  # each call is in the store or the journal at exit
    assert not (stored | journaled) - set(ids)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VT_STORE_PATH": child["store"], "VT_JOURNAL_PATH": child["journal"]}
    landed = subprocess.run(
        [sys.executable, "-m", "vt_middleware.cli", "flush"], capture_output=True, text=True, env=env, timeout=300
    )
    assert landed.returncode == 0, landed.stdout + landed.stderr
    assert f"journal: {len(journaled)} records waiting" in landed.stdout
    try:
        assert _land_rest(tmp_path) == set(ids)  # every call once, nothing else
    finally:
        import vt_middleware as vt

        vt.reset()


def _run_until(tmp_path: Path, calls: int, signum: int) -> tuple:
    child = _child(RUN_UNTIL_ENDED, tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", child["code"]], stderr=subprocess.PIPE, text=True)
    ids_path = Path(child["ids_path"])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if ids_path.exists() and ids_path.stat().st_size > calls * 56:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        killed_at = time.time()
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, _returned(ids_path), killed_at


def test_sigterm_during_a_burst_loses_no_returned_call(tmp_path):
    proc, returned, _ = _run_until(tmp_path, 2000, signal.SIGTERM)
    assert proc.returncode == -signal.SIGTERM  # the default action still ran after our flush
    assert len(returned) >= 2000
    try:
        stored = _land_rest(tmp_path)
        assert set(returned) - stored == set()
    finally:
        import vt_middleware as vt

        vt.reset()


def test_sigterm_chains_to_the_apps_own_handler(tmp_path):
    script = (
        CHILD_PRELUDE
        + """
import signal
answer(0)  # capture starts: our handler is chained in front of the one below
ids = [vt.last_run_id()]
def app_handler(signum, frame):
    with open({ids_path!r} + ".handler", "w") as out:
        out.write("app handler ran")
    sys.exit(3)
signal.signal(signal.SIGTERM, app_handler)  # installed after us
answer(1)
ids.append(vt.last_run_id())
vt.flush(5)  # from the main thread: chains ours in front of the app's handler
for i in range(2, 500):
    answer(i)
    ids.append(vt.last_run_id())
with open({ids_path!r}, "w") as out:
    out.write("\\n".join(ids))
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
"""
    )
    child = _child(script, tmp_path)
    done = subprocess.run([sys.executable, "-c", child["code"]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert Path(child["ids_path"] + ".handler").read_text() == "app handler ran"
    ids = Path(child["ids_path"]).read_text().split()
    try:
        assert _land_rest(tmp_path) == set(ids)
    finally:
        import vt_middleware as vt

        vt.reset()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_kill_9_loses_only_calls_returned_in_the_last_journal_window(tmp_path):
    from vt_middleware.config import VTConfig

    window = VTConfig().journal_window_s
    slack = 0.5  # scheduling on a loaded machine: the journaling thread may wait for a core
    proc, returned, killed_at = _run_until(tmp_path, 2000, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    try:
        stored = _land_rest(tmp_path)
        lost = {run_id: t for run_id, t in returned.items() if run_id not in stored}
        too_old = {run_id: round(killed_at - t, 3) for run_id, t in lost.items() if t < killed_at - window - slack}
        assert not too_old, json.dumps(dict(list(too_old.items())[:5]))
        assert len(lost) < len(returned) / 2
    finally:
        import vt_middleware as vt

        vt.reset()
