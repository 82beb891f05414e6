"""The store in Weaviate mode (``VT_STORE_MODE=weaviate``), over the real weaviate-client v4
talking REST + gRPC to tests/weaviate_fake.py, and several app instances sharing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

import vt_middleware as vt
from vt_middleware.config import VTConfig
from vt_middleware.errors import StoreError
from vt_middleware.store.executions import EXECUTIONS, ExecutionStore
from vt_middleware.types import CallRecord, FeedbackPair
from weaviate_fake import FakeWeaviate


@pytest.fixture
def fake():
    server = FakeWeaviate().start()
    yield server
    server.stop()


def _settings(fake: FakeWeaviate) -> dict:
    return {
        "store_mode": "weaviate",
        "weaviate_host": "127.0.0.1",
        "weaviate_port": fake.http_port,
        "weaviate_grpc_port": fake.grpc_port,
    }


@pytest.fixture
def weaviate_env(fake, tmp_path):
    config = vt.reset(
        **_settings(fake),
        store_path=tmp_path / "lance",
        journal_path=tmp_path / "journal",
        hooks_dir=tmp_path / "hooks",
        state_dir=tmp_path / "state",
        strict=True,
    )
    yield config
    vt.reset()  # closes the store's Weaviate connection


def _item(record: CallRecord, seed: int) -> dict:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return {
        "uuid": record.run_id,
        "properties": record.to_properties(),
        "vector": (vector / np.linalg.norm(vector)).tolist(),
    }


def test_calls_round_trip_idempotent_and_paged_with_vectors(weaviate_env, fake):
    records = [
        CallRecord(
            function_name="summarize" if i % 3 else "summarize_v2",
            inputs={"args": {"i": i}},
            output=f"out {i}",
            prompt_tokens=i,
            latency_ms=1.5 * i,
            model_requested="m",
        )
        for i in range(12)
    ]
    items = [_item(r, i) for i, r in enumerate(records)]
    store = vt.get_store()
    assert store.write_calls(items) == 12
    store.write_calls(items[:5])  # rewriting a call (the journal replays) adds nothing
    assert store.count() == 12 and store.count("summarize") == 8 and store.count("summarize_v2") == 4

    pages = list(store.iter_calls("summarize", include_vector=True, page_size=3))
    assert all(len(page) <= 3 for page in pages) and sum(map(len, pages)) == 8
    by_id = {c.uuid: c for page in pages for c in page}
    for record, item in zip(records, items):
        if record.function_name != "summarize":
            assert record.run_id not in by_id
            continue
        stored = by_id[record.run_id]
        np.testing.assert_allclose(stored.vector, item["vector"], rtol=1e-6)
        back = CallRecord.from_properties(stored.properties)
        assert (back.inputs, back.output, back.prompt_tokens, back.latency_ms, back.timestamp_utc) == (
            record.inputs,
            record.output,
            record.prompt_tokens,
            record.latency_ms,
            record.timestamp_utc,
        )
        assert isinstance(stored.properties["prompt_tokens"], int)  # declared INT, not auto-schema's float
    assert store.get_call(records[1].run_id, include_vector=True).vector.shape == (384,)
    assert store.get_call("00000000-0000-4000-8000-000000000000") is None
    assert "grpc BatchObjects" in fake.calls and fake.unhandled == []


def test_feedback_and_promotions_round_trip_losslessly(weaviate_env):
    store = vt.get_store()
    pair = FeedbackPair("q", "bad", "good", context={"function_name": "summarize", "n": [1, 2]}, run_id="r1")
    store.add_feedback(pair)
    assert store.list_feedback("summarize") == [pair]
    at_ns = 1_790_000_000_123_456_789  # above 2**53: gRPC's double-typed properties would round it
    store.record_promotion({"action": "promote", "routes": {"base": "ft"}, "at_ns": at_ns})
    (row,) = store.promotions()
    assert row["at_ns"] == at_ns and row["routes"] == {"base": "ft"} and row["action"] == "promote"


def test_vectorwave_search_executions_reads_captured_rows_from_weaviate(weaviate_env, fake, monkeypatch):
    from vectorwave import search_executions

    from vt_middleware.store.executions import share_store_with_vectorwave, vectorwave_env

    for name in vectorwave_env():
        monkeypatch.delenv(name, raising=False)  # restored after the test
    share_store_with_vectorwave()

    from vt_middleware.capture import worker

    record = CallRecord(function_name="vw_read", inputs={"args": {"q": 1}}, output="hello", latency_ms=3.0)
    worker.submit(record)
    assert vt.flush(60)
    rows = search_executions(filters={"function_name": "vw_read"}, limit=10)
    assert [(r["uuid"], r["return_value"], datetime.fromisoformat(r["timestamp_utc"])) for r in rows] == [
        (record.run_id, "hello", datetime.fromisoformat(record.timestamp_utc))
    ]  # a DATE in Weaviate
    assert fake.unhandled == []
    from vectorwave.store.factory import get_vector_store

    get_vector_store().close()  # VectorWave's own cached client


_OTHER_INSTANCE = """
import json, sys
import numpy as np
import vt_middleware as vt
from vt_middleware.evolve.swap import get_promoter, promote, sync_from_store
from vt_middleware.runtime.active import get_runtime
from vt_middleware.types import CallRecord, FeedbackPair

store = vt.get_store()  # configured by VT_* variables only
sync_from_store()  # the first instance's promotion
seen_route = get_runtime().current().route("base-model")
seen_calls = store.count("shared")
record = CallRecord(function_name="shared", inputs={"args": {}}, output="from instance B")
store.write_calls([{"uuid": record.run_id, "properties": record.to_properties(), "vector": np.ones(384).tolist()}])
store.add_feedback(FeedbackPair("q", "bad", "good", context={"function_name": "shared"}))
promote("base-model", "ft-from-B", None, reason="instance B")
assert get_promoter().flush_records(60)  # in the shared store before this instance closes it
print(json.dumps({"route": seen_route, "calls": seen_calls}))
store.close()
"""


def test_two_app_instances_share_rows_feedback_and_promotions(weaviate_env, fake, tmp_path):
    from vt_middleware.evolve.swap import Promoter
    from vt_middleware.runtime.active import Runtime

    store = vt.get_store()
    mine = CallRecord(function_name="shared", inputs={"args": {}}, output="from instance A")
    store.write_calls([_item(mine, 0)])
    promoter_a = Promoter(runtime=Runtime(), store=store, hooks_dir=tmp_path / "hooks_a")
    promoter_a.promote("base-model", "ft-from-A", None, reason="instance A")
    assert promoter_a.flush_records(60)  # the row's store write follows the promotion

    settings = {
        **_settings(fake),
        "store_path": tmp_path / "b_lance",
        "hooks_dir": tmp_path / "hooks_b",
        "journal_path": tmp_path / "b_journal",
        "state_dir": tmp_path / "b_state",
        "strict": True,
    }
    env = {**os.environ, "VECTORWAVE_QUIET": "1", **{f"VT_{k.upper()}": str(v) for k, v in settings.items()}}
    done = subprocess.run([sys.executable, "-c", _OTHER_INSTANCE], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen_by_b = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen_by_b == {"route": "ft-from-A", "calls": 1}

    assert sorted(c.properties["return_value"] for page in store.iter_calls("shared") for c in page) == [
        "from instance A",
        "from instance B",
    ]
    assert len(store.list_feedback("shared")) == 1
    applied = promoter_a.sync_from_store()
    assert applied is not None and applied["reason"] == "instance B"
    assert promoter_a.runtime.current().route("base-model") == "ft-from-B"
    assert [r["reason"] for r in promoter_a.promotion_history()] == ["instance A", "instance B"]
    assert fake.unhandled == []


def test_unreachable_weaviate_is_a_clear_store_error(fake, tmp_path):
    port = fake.http_port
    fake.stop()
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
        ExecutionStore(VTConfig(**_settings(fake), store_path=tmp_path / "l"))


def test_vectorwave_weaviate_store_hides_failures_ours_raises(fake, tmp_path):
    """VectorWave 1.0.2's faults that store/weaviate.py fixes: a rejected batch is a quiet 0, a
    read error is a quiet None (an outage would look like missing rows and skip the journal)."""
    from vectorwave.store.weaviate_store import WeaviateVectorStore

    store = ExecutionStore(VTConfig(**_settings(fake), store_path=tmp_path / "l"))
    theirs = WeaviateVectorStore(client=store.backend._client)
    record = CallRecord(function_name="f", inputs={"args": {}}, output="o")
    bad = {
        "uuid": record.run_id,
        "properties": {**record.to_properties(), "prompt_tokens": "many"},
        "vector": [0.0] * 384,
    }
    store.write_calls([_item(CallRecord(function_name="f", inputs={"args": {}}, output="ok"), 1)])
    assert theirs.insert_many(EXECUTIONS, [bad]) == 0  # the fault: no error
    with pytest.raises(StoreError, match="prompt_tokens"):
        store.write_calls([bad])
    import grpc

    fake.fault = grpc.StatusCode.INTERNAL  # a broken server (a stopped one: the client retries ~30 s first)
    assert theirs.fetch_by_id(EXECUTIONS, record.run_id) is None  # the fault: an error reads as "missing"
    with pytest.raises(StoreError, match="injected fault"):
        store.get_call(record.run_id)
    with pytest.raises(StoreError, match="injected fault"):
        store.write_calls([_item(record, 2)])
    store.close()


def test_capture_journals_while_weaviate_fails_and_replays_exactly_once(weaviate_env, fake):
    import grpc

    from vt_middleware.capture import worker

    records = [CallRecord(function_name="outage", inputs={"args": {"i": i}}, output=f"o{i}") for i in range(6)]
    worker.submit(records[0])
    assert vt.flush(60)
    fake.fault = grpc.StatusCode.INTERNAL
    for record in records[1:]:
        worker.submit(record)
    assert not vt.flush(60)  # journaled, not in the store
    stats = vt.capture_stats()
    assert stats["journal_pending"] == 5 and stats["dropped"] == 0
    fake.fault = None
    worker.get_worker().delivery.reset_backoff()  # skip the worker's backoff
    assert vt.flush(60) and vt.flush(60)
    assert vt.capture_stats()["journal_pending"] == 0
    stored = sorted(c.uuid for page in vt.get_store().iter_calls("outage") for c in page)
    assert stored == sorted(r.run_id for r in records)


def test_feedback_update_and_delete_in_weaviate_mode(weaviate_env):
    store = vt.get_store()
    keep, edit, drop = (FeedbackPair(f"q{i}", f"bad {i}", f"fixed {i}") for i in range(3))
    for pair in (keep, edit, drop):
        store.add_feedback(pair)
    edit.fixed_output = "fixed again"
    assert store.update_feedback(edit).fixed_output == "fixed again"
    assert store.delete_feedback(drop.pair_id) and not store.delete_feedback(drop.pair_id)
    stored = {p.pair_id: p.fixed_output for p in store.list_feedback()}
    assert stored == {keep.pair_id: "fixed 0", edit.pair_id: "fixed again"}
    total, calls = store.page_calls(None, 0, 10)  # no page_rows here: the scan fallback
    assert (total, calls) == (0, [])
