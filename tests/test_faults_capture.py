"""Fault injection on the capture path, through vt.wrap on the real openai SDK against the
local server: the store unavailable at start or failing mid-stream, the journal's disk full,
the embedding model failing, the process exiting right after a burst, a fork after capture
started. Each time: the user's calls succeed, every call ends up in the store exactly once
(count and run ids), and capture recovers when the fault clears.

(Worker-level outage/replay, queue-full spill, torn journal, exit and fork are in
tests/test_capture_worker.py; these run the same faults end to end through the wrapper.)
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from typing import List

import openai

import vt_middleware as vt
from vt_middleware.call_context import last_run_id
from vt_middleware.capture import worker
from vt_middleware.capture.journal import Journal
from vt_middleware.errors import StoreError
from vt_middleware.store import embedding
from vt_middleware.store.executions import ExecutionStore
from vt_middleware.store.lance import FixedLanceStore
from vt_middleware.train.local_models import TINY_ID

MESSAGES = [{"role": "user", "content": "hello"}]


def _calls(client: openai.OpenAI, function_name: str, n: int) -> List[str]:
    """``n`` wrapped calls; every one must succeed. Returns their run ids."""
    wrapped = vt.wrap(client, function_name=function_name)
    ids = []
    for _ in range(n):
        response = wrapped.chat.completions.create(model=TINY_ID, messages=MESSAGES, max_tokens=2)
        assert response.choices[0].message.content is not None
        ids.append(last_run_id())
    return ids


def stored_ids(function_name: str) -> List[str]:
    return [c.uuid for page in vt.get_store().iter_calls(function_name) for c in page]


def assert_exactly_once(function_name: str, expected: List[str]) -> None:
    ids = stored_ids(function_name)
    assert len(ids) == len(expected), f"{len(ids)} rows for {len(expected)} calls"
    assert sorted(ids) == sorted(expected)


def _retry_now() -> None:
    """Skip the worker's backoff (it would retry by itself within seconds)."""
    worker.get_worker().delivery.reset_backoff()


def settle(timeout: float = 30.0) -> bool:
    """Flush until nothing is in memory or in the journal. A replay that started before the
    fault cleared can fail after it and re-arm the worker's backoff: skip it and go again."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _retry_now()
        if vt.flush(5) and vt.capture_stats()["journal_pending"] == 0:
            return True
        time.sleep(0.05)
    return False


def test_store_unavailable_at_start_then_recovers(vt_env, openai_client, monkeypatch):
    vt.reset(**{**vt_env.model_dump()})
    opens = {"fail": True}
    real_open = ExecutionStore._open_backend

    def open_backend(config):
        if opens["fail"]:
            raise StoreError("store unreachable at start")
        return real_open(config)

    monkeypatch.setattr(ExecutionStore, "_open_backend", staticmethod(open_backend))
    ids = _calls(openai_client, "down_at_start", 12)
    assert not vt.flush(30)  # journaled, not in the store: flush says so
    stats = vt.capture_stats()
    assert stats["written"] == 0 and stats["journal_pending"] == 12 and stats["dropped"] == 0
    opens["fail"] = False
    assert settle()
    assert_exactly_once("down_at_start", ids)
    more = _calls(openai_client, "down_at_start", 3)  # recovered: straight to the store
    assert vt.flush(30)
    assert_exactly_once("down_at_start", ids + more)


def test_store_failing_mid_stream_loses_and_duplicates_nothing(vt_env, openai_client, monkeypatch):
    real_upsert = FixedLanceStore.upsert_many
    state = {"writes": 0, "down": False}

    def upsert(self, collection, items, fresh=False):
        state["writes"] += 1
        if state["down"]:
            raise OSError(errno.EIO, "lance write failed")
        return real_upsert(self, collection, items, fresh=fresh)

    monkeypatch.setattr(FixedLanceStore, "upsert_many", upsert)
    before = _calls(openai_client, "mid_stream", 5)
    assert vt.flush(30)
    state["down"] = True
    during = _calls(openai_client, "mid_stream", 10)
    assert not vt.flush(30)  # journaled, not in the store
    assert vt.capture_stats()["journal_pending"] >= 10
    assert vt.error_counts().get("capture.store:OSError", 0) >= 1
    state["down"] = False
    _retry_now()
    after = _calls(openai_client, "mid_stream", 5)
    assert settle()
    assert_exactly_once("mid_stream", before + during + after)


def test_journal_disk_full_holds_records_in_memory_until_the_store_returns(vt_env, openai_client, monkeypatch):
    """Store down AND journal ENOSPC: calls still succeed; records are held in memory
    (counted as ``held``), none dropped; all land once the store is back."""
    real_upsert = FixedLanceStore.upsert_many
    faults = {"store": True, "disk": True}

    def upsert(self, collection, items, fresh=False):
        if faults["store"]:
            raise OSError(errno.EIO, "store down")
        return real_upsert(self, collection, items, fresh=fresh)

    real_append, real_chunk = Journal.append, Journal.write_chunk

    def append(self, items, sync=True):
        if faults["disk"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, items, sync)

    def write_chunk(self, items):
        if faults["disk"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_chunk(self, items)

    monkeypatch.setattr(FixedLanceStore, "upsert_many", upsert)
    monkeypatch.setattr(Journal, "append", append)
    monkeypatch.setattr(Journal, "write_chunk", write_chunk)
    ids = _calls(openai_client, "disk_full", 10)
    assert not vt.flush(5)  # not drained: records are held in memory, and flush says so
    stats = vt.capture_stats()
    assert stats["held"] == 10 and stats["dropped"] == 0 and stats["journal_pending"] == 0
    assert vt.error_counts().get("capture.journal:OSError", 0) >= 1
    faults["store"] = False
    assert settle()
    stats = vt.capture_stats()
    assert stats["held"] == 0 and stats["dropped"] == 0
    assert_exactly_once("disk_full", ids)


def test_journal_disk_full_with_full_memory_drops_only_the_overflow_and_counts_it(tmp_path, local_server, monkeypatch):
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", queue_size=4, strict=True)
    try:
        monkeypatch.setattr(
            ExecutionStore, "write_calls", lambda self, items, fresh=False: (_ for _ in ()).throw(StoreError("down"))
        )
        full = lambda self, items, sync=True: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))  # noqa: E731
        monkeypatch.setattr(Journal, "append", full)
        monkeypatch.setattr(Journal, "write_chunk", full)
        client = openai.OpenAI(base_url=local_server.base_url, api_key="sk-local", max_retries=0)
        _calls(client, "overflow", 10)
        vt.flush(3)
        stats = vt.capture_stats()
        assert stats["held"] == 4 and stats["dropped"] == 6  # bounded memory; loss counted
        assert stats["held"] + stats["dropped"] == stats["enqueued"] == 10
        client.close()
    finally:
        monkeypatch.undo()
        vt.reset()


def test_embedding_model_failing_journals_then_replays_with_vectors(vt_env, openai_client, monkeypatch):
    real_get = embedding.get_embedder
    broken = {"on": True}

    class Broken:
        def embed(self, texts):
            raise RuntimeError("onnxruntime session failed")

    monkeypatch.setattr(embedding, "get_embedder", lambda name: Broken() if broken["on"] else real_get(name))
    ids = _calls(openai_client, "embed_fail", 8)
    assert not vt.flush(30)  # journaled unembedded, not in the store
    assert vt.capture_stats()["journal_pending"] == 8 and stored_ids("embed_fail") == []
    assert vt.error_counts().get("capture.embed:RuntimeError", 0) >= 1
    broken["on"] = False
    _retry_now()
    assert vt.flush(30)
    assert_exactly_once("embed_fail", ids)
    for run_id in ids:
        vector = vt.get_store().get_call(run_id, include_vector=True).vector
        assert vector is not None and vector.shape == (384,) and abs(float((vector**2).sum()) - 1) < 1e-3


def test_process_exiting_right_after_a_burst_of_wrapped_calls(tmp_path, local_server):
    """A child process makes 30 wrapped calls over HTTP and exits at once: all 30 stored."""
    ids_file = tmp_path / "ids.txt"
    script = textwrap.dedent(f"""
        import httpx, openai, vt_middleware as vt  # httpx first: the SDK imports it lazily
        from vt_middleware.call_context import last_run_id
        vt.configure(store_path={str(tmp_path / "lance")!r}, journal_path={str(tmp_path / "journal")!r})
        client = vt.wrap(openai.OpenAI(base_url={local_server.base_url!r}, api_key="sk-x", max_retries=0),
                         function_name="burst_exit")
        ids = []
        for i in range(30):
            client.chat.completions.create(model={TINY_ID!r}, messages=[{{"role": "user", "content": str(i)}}],
                                           max_tokens=2)
            ids.append(last_run_id())
        open({str(ids_file)!r}, "w").write("\\n".join(ids))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", strict=True)
    try:
        # Written at exit, or journaled when the exit flush ran out of time (slow CPU): the
        # next process replays what the dead one left.
        assert vt.flush(60)
        assert_exactly_once("burst_exit", ids_file.read_text().split())
    finally:
        vt.reset()


def test_fork_after_wrapped_capture_started(vt_env, local_server, openai_client):
    parent_ids = _calls(openai_client, "forked", 3)
    ids_file = vt_env.state_dir / "child_ids.txt"
    vt_env.state_dir.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid == 0:  # child: fresh HTTP client; the parent's capture thread does not exist here
        code = 1
        try:
            child = openai.OpenAI(base_url=local_server.base_url, api_key="sk-x", max_retries=0)
            ids = _calls(child, "forked", 3)
            ids_file.write_text("\n".join(ids))
            code = 0 if vt.flush(60) else 2
        finally:
            os._exit(code)
    more = _calls(openai_client, "forked", 2)  # the parent keeps capturing meanwhile
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert vt.flush(30)
    vt.reset(**{**vt_env.model_dump()})
    assert_exactly_once("forked", parent_ids + more + ids_file.read_text().split())


def test_fork_while_another_thread_holds_the_store_lock(vt_env):
    """The app forks while the capture worker is inside ``get_store()`` (building the store):
    the child's fork handler must not wait forever on the lock that thread held."""
    import threading
    import time

    from vt_middleware.store import executions

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with executions._stores._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if vt.get_store() is not None else 1)  # fork handler ran, store usable
    release.set()
    holder.join()
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0, "forked child hung on a held lock"
