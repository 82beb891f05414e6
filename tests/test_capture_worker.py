"""The capture worker: batching into LanceDB, journal spill and replay, flush, exit, fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import vt_middleware as vt
from vt_middleware.capture import worker
from vt_middleware.capture.journal import Journal, read_items
from vt_middleware.errors import StoreError
from vt_middleware.types import CallRecord


def _record(i: int, name: str = "f") -> CallRecord:
    return CallRecord(function_name=name, inputs={"args": {"i": i}}, output=f"answer {i}")


def test_eight_threads_all_written_once(vt_env):
    def produce(t: int) -> None:
        for i in range(25):
            worker.submit(_record(t * 100 + i, "threads"))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert vt.flush(60)
    stats = vt.capture_stats()
    assert stats["enqueued"] == 200 and stats["written"] == 200 and stats["pending"] == 0
    assert vt.get_store().count("threads") == 200
    outputs = {c.properties["return_value"] for page in vt.get_store().iter_calls("threads") for c in page}
    assert len(outputs) == 200


def test_store_down_spills_to_journal_then_replays_without_duplicates(vt_env, monkeypatch):
    vt.configure(**{**vt_env.model_dump(), "strict": False})  # worker errors are counted, not raised
    store = vt.get_store()  # the store of the current config (configure() rebuilds it)
    real_write = store.write_calls
    down = {"on": True}

    def flaky(items, fresh=False):
        if down["on"]:
            raise StoreError("store unreachable")
        return real_write(items, fresh=fresh)

    monkeypatch.setattr(store, "write_calls", flaky)
    records = [_record(i, "outage") for i in range(30)]
    for record in records:
        worker.submit(record)
    assert not vt.flush(30)  # journaled, not in the store: flush says so
    stats = vt.capture_stats()
    assert stats["journaled"] == 30 and stats["written"] == 0 and stats["journal_pending"] == 30
    assert vt.error_counts().get("capture.store:StoreError", 0) >= 1
    down["on"] = False
    worker.get_worker().delivery.reset_backoff()  # the backoff would retry within seconds anyway
    assert vt.flush(30)
    stats = vt.capture_stats()
    assert stats["replayed"] == 30 and stats["journal_pending"] == 0
    assert vt.get_store().count("outage") == 30
    # replaying the same items again (a crash after write, before delete) adds nothing
    journal = Journal(vt_env.journal_path / "again")
    journal.append([{"uuid": r.run_id, "properties": r.to_properties(), "vector": None} for r in records[:5]])
    journal.replay(worker.get_worker().delivery.write_replayed)
    assert vt.get_store().count("outage") == 30


def test_queue_full_spills_to_journal_and_nothing_is_lost(tmp_path):
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", queue_size=1, strict=True)
    try:
        for i in range(40):
            worker.submit(_record(i, "full"))
        spilled = vt.capture_stats()["spilled_queue_full"]
        assert vt.flush(60)
        assert spilled > 0
        assert vt.get_store().count("full") == 40
    finally:
        vt.reset()


def test_calls_spilled_from_a_full_queue_are_redacted_before_the_journal(tmp_path, monkeypatch):
    # the caller's thread queues unredacted RawCalls; a queue-full spill must redact them too
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", queue_size=1, strict=False)
    try:
        store = vt.get_store()
        monkeypatch.setattr(store, "write_calls", lambda items, fresh=False: (_ for _ in ()).throw(StoreError("down")))
        secret = "sk-SpillSecret0123456789abcd"

        @vt.track(function_name="spill")
        def call(i: int, api_key: str, note: str) -> str:
            return f"done {i} with {secret}"

        for i in range(40):
            call(i, secret, f"token={secret}")
        stats_before = vt.capture_stats()
        assert not vt.flush(60)  # all in the journal (the store is down)
        stats = vt.capture_stats()
        assert stats_before["spilled_queue_full"] > 0 and stats["journal_pending"] == 40
        blobs = [p.read_bytes() for p in (tmp_path / "journal").rglob("*") if p.is_file()]
        assert blobs and not any(secret.encode() in blob for blob in blobs)
        assert any(b"[REDACTED]" in blob for blob in blobs)
    finally:
        vt.reset()


def test_identical_texts_are_embedded_once_and_share_their_vector(vt_env, monkeypatch):
    import numpy as np

    from vt_middleware.store.embedding import get_embedder

    embedder = get_embedder(vt_env.capture_embedding_model)
    real_embed = embedder.embed
    seen: list = []
    monkeypatch.setattr(embedder, "embed", lambda texts: (seen.extend(texts), real_embed(texts))[1])
    records = [_record(i % 3, "dedup") for i in range(30)]  # three distinct texts, ten times each
    for record in records:
        worker.submit(record)
    assert vt.flush(60)
    assert sorted(seen) == sorted({r.embedding_text() for r in records})  # each once
    stats = vt.capture_stats()
    assert (stats["embedded"], stats["embed_cache_hits"], stats["written"]) == (3, 27, 30)
    rows = {c.uuid: c for page in vt.get_store().iter_calls("dedup", include_vector=True) for c in page}
    expected = real_embed([r.embedding_text() for r in records[:3]])
    for i, record in enumerate(records):
        assert np.allclose(rows[record.run_id].vector, expected[i % 3], atol=1e-5)


def test_a_segment_being_replayed_still_counts_as_pending(tmp_path):
    # flush() waits while the journal has pending records; a segment claimed by a running
    # replay must count, or flush returns before its records are in the store
    journal = Journal(tmp_path / "journal")
    journal.append([{"uuid": str(i), "properties": {}, "vector": None} for i in range(3)])
    seen = []
    assert journal.replay(lambda items: seen.append(journal.has_pending())) == 3
    assert seen == [True] and not journal.has_pending()


def test_journal_skips_torn_line_and_recovers_dead_writers(vt_env):
    journal_dir = vt_env.journal_path
    journal_dir.mkdir(parents=True, exist_ok=True)
    good = _record(1, "orphan")
    item = {"uuid": good.run_id, "properties": good.to_properties(), "vector": None}
    # an open segment of a process that no longer exists, with a torn last line
    (journal_dir / "seg-1-999999-0.jsonl.open").write_text(json.dumps(item) + "\n" + '{"uuid": "x", "prop')
    assert len(list(read_items(journal_dir / "seg-1-999999-0.jsonl.open"))) == 1
    assert vt.flush(30)  # starts the worker, which seals and replays what it finds
    assert vt.get_store().count("orphan") == 1
    assert not list(journal_dir.glob("*.jsonl*"))


def test_process_exiting_right_after_last_call_loses_nothing(tmp_path):
    script = textwrap.dedent(f"""
        import vt_middleware as vt
        from vt_middleware.capture import worker
        from vt_middleware.types import CallRecord
        vt.configure(store_path={str(tmp_path / "lance")!r}, journal_path={str(tmp_path / "journal")!r})
        for i in range(50):
            worker.submit(CallRecord(function_name="exit", inputs={{"args": {{"i": i}}}}, output=str(i)))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", strict=True)
    try:
        # written at exit, or (when the atexit flush ran out of shutdown_timeout_s) in the
        # journal, which the next process replays on its first flush
        in_store = vt.get_store().count("exit")
        in_journal = vt.capture_stats()["journal_pending"]
        assert in_store + in_journal == 50
        assert vt.flush(60)
        assert vt.get_store().count("exit") == 50
    finally:
        vt.reset()


def test_forked_child_captures_with_its_own_worker(vt_env):
    worker.submit(_record(0, "fork"))
    assert vt.flush(30)
    pid = os.fork()
    if pid == 0:  # child: the parent's thread is gone; a new worker must start
        code = 1
        try:
            worker.submit(_record(1, "fork"))
            code = 0 if worker.flush(60) else 2
        finally:
            os._exit(code)  # no atexit: flush() alone must have made the record durable
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert vt.flush(30)  # the parent replays what the child journaled
    assert vt.get_store().count("fork") == 2


def test_capture_disabled_submits_nothing(tmp_path):
    vt.reset(store_path=tmp_path / "lance", journal_path=tmp_path / "journal", capture_enabled=False)
    try:
        worker.submit(_record(0, "off"))
        assert vt.flush(5)
        assert vt.capture_stats()["enqueued"] == 0
    finally:
        vt.reset()


def test_pooled_run_ids_are_unique_across_threads_and_a_fork(tmp_path):
    """Run ids come from a pool the worker fills; a forked child must not hand out the
    parent's pooled ids (both would then record calls under the same id)."""
    import os
    import threading

    from vt_middleware import call_context as context

    context._run_id_pool.clear()
    context.refill_run_ids()
    assert len(context._run_id_pool) >= context.RUN_ID_POOL_TARGET // 2  # filled: the fork test bites
    out = tmp_path / "child_ids.txt"
    pid = os.fork()
    if pid == 0:
        try:
            out.write_text("\n".join(context.new_run_id() for _ in range(5)))
        finally:
            os._exit(0)
    parent_ids = [context.new_run_id() for _ in range(5)]
    os.waitpid(pid, 0)
    assert not set(parent_ids) & set(out.read_text().split())

    taken: list = []

    def take() -> None:
        mine = [context.new_run_id() for _ in range(600)]  # more than the pool: some made inline
        taken.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(taken)) == len(taken) == 2400
    assert all(len(i) == 36 and i[14] == "4" and i[19] in "89ab" for i in taken)  # uuid4 strings


def test_minilm_capture_embeds_in_a_child_process_with_the_same_vectors(tmp_path):
    import os

    import numpy as np

    from vt_middleware.store.embed_process import get_process_embedder
    from vt_middleware.store.embedding import get_embedder

    vt.reset(
        store_path=tmp_path / "lance", journal_path=tmp_path / "journal", capture_embedding_model="minilm", strict=True
    )
    try:
        records = [_record(i, "minilm_child") for i in range(6)]
        for record in records:
            worker.submit(record)
        assert vt.flush(120)
        child = get_process_embedder("minilm")._proc
        assert child is not None and child.pid != os.getpid() and child.poll() is None
        rows = {c.uuid: c for page in vt.get_store().iter_calls("minilm_child", include_vector=True) for c in page}
        expected = get_embedder("minilm").embed([r.embedding_text() for r in records])
        assert len(rows) == 6
        for record, vector in zip(records, expected):
            assert np.allclose(rows[record.run_id].vector, vector, atol=1e-5)
    finally:
        vt.reset()
