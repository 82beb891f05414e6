"""VectorWave 1.0.2 lite-mode faults that store/lance.py works around, and that
VectorWave's own readers see our rows."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

import vt_middleware as vt
from vt_middleware.capture import worker
from vt_middleware.errors import DataError
from vt_middleware.store.lance import FixedLanceStore
from vt_middleware.types import CallRecord


def test_vectorwave_collection_exists_is_wrong_with_lancedb_040(tmp_path):
    from vectorwave.store.lance_store import LanceVectorStore

    original = LanceVectorStore(db_path=str(tmp_path / "db"))
    original.ensure_collection("T", properties=[])
    assert original.collection_exists("T") is False  # the fault
    assert FixedLanceStore(str(tmp_path / "db")).collection_exists("T") is True


def test_vectorwave_silently_resizes_vectors_ours_refuses(tmp_path):
    from vectorwave.store.lance_store import LanceVectorStore

    original = LanceVectorStore(db_path=str(tmp_path / "a"))
    original.ensure_collection("T", properties=[])
    original.insert("T", {"x": 1}, uuid="u1", vector=[1.0] * 500)
    assert len(original._open("T").to_arrow()["vector"][0]) == 384  # the fault: cut to 384, no error
    fixed = FixedLanceStore(str(tmp_path / "b"), vector_dim=8)
    fixed.ensure_collection("T", properties=[], vector_dim=8)
    fixed.insert("T", {"x": 1}, uuid="u1", vector=[1.0] * 8)
    assert fixed.table_dim("T") == 8
    with pytest.raises(DataError, match="8"):
        fixed.insert("T", {"x": 2}, uuid="u2", vector=[1.0] * 500)


def test_write_is_idempotent_per_uuid(vt_env):
    record = CallRecord(function_name="idem", inputs={"args": {}}, output="o")
    item = {"uuid": record.run_id, "properties": record.to_properties(), "vector": np.ones(384).tolist()}
    store = vt.get_store()
    store.write_calls([item])
    store.write_calls([item, item])
    assert store.count("idem") == 1


def test_vectorwave_readers_see_our_rows(vt_env, monkeypatch):
    from vectorwave import search_executions

    from vt_middleware.store.executions import vectorwave_env

    for name in vectorwave_env():
        monkeypatch.delenv(name, raising=False)  # restored after the test
    assert vt.share_store_with_vectorwave()["VECTORWAVE_LITE_PATH"] == str(vt.get_config().store_path)
    record = CallRecord(function_name="vw_read", inputs={"args": {"q": 1}}, output="hello", latency_ms=3.0)
    worker.submit(record)
    assert vt.flush(30)
    rows = search_executions(filters={"function_name": "vw_read"}, limit=10)
    assert len(rows) == 1 and rows[0]["return_value"] == "hello"
    from vectorwave import VectorWaveDatasetManager

    # VectorWave's golden-data manager reads our row (with its stored vector) by uuid
    assert VectorWaveDatasetManager().register_as_golden(record.run_id, note="from vt") is True
    assert VectorWaveDatasetManager().register_as_golden("not-a-logged-uuid") is False


_SECOND_PROCESS_WRITES = """
import sys
import numpy as np
from vt_middleware.config import VTConfig
from vt_middleware.store.executions import ExecutionStore
from vt_middleware.types import CallRecord, FeedbackPair

store = ExecutionStore(VTConfig(store_path=sys.argv[1]))
record = CallRecord(function_name="shared", inputs={"args": {}}, output="from the other process")
store.write_calls([{"uuid": record.run_id, "properties": record.to_properties(), "vector": np.ones(384).tolist()}])
store.add_feedback(FeedbackPair("q", "bad", "good", context={"function_name": "shared"}))
"""


def test_long_lived_store_sees_rows_another_process_wrote(vt_env):
    """A process holding open table handles (the Evolver's) sees later writes by another process."""
    import subprocess
    import sys

    record = CallRecord(function_name="shared", inputs={"args": {}}, output="mine")
    store = vt.get_store()
    store.write_calls([{"uuid": record.run_id, "properties": record.to_properties(), "vector": np.ones(384).tolist()}])
    assert store.count("shared") == 1 and store.list_feedback("shared") == []
    store.add_feedback(vt.FeedbackPair("q0", "b0", "g0", context={"function_name": "shared"}))  # opens the table
    subprocess.run([sys.executable, "-c", _SECOND_PROCESS_WRITES, str(vt_env.store_path)], check=True, timeout=120)
    assert store.count("shared") == 2
    assert [c.properties["return_value"] for page in store.iter_calls("shared") for c in page].count(
        "from the other process"
    ) == 1
    assert len(store.list_feedback("shared")) == 2


def test_batched_writes_are_compacted_and_lose_nothing(vt_env, monkeypatch):
    from vt_middleware.store import lance

    monkeypatch.setattr(lance, "COMPACT_EVERY_WRITES", 5)
    store = lance.FixedLanceStore(str(vt_env.store_path / "compact"))
    store.ensure_collection("T", [{"name": "function_name", "dataType": "TEXT"}], 384)
    rng = np.random.default_rng(0)
    ids = [str(uuid.uuid4()) for _ in range(40)]
    for start in range(0, 40, 4):
        store.upsert_many(
            "T",
            [
                {"uuid": u, "properties": {"function_name": "f"}, "vector": rng.random(384).astype("float32").tolist()}
                for u in ids[start : start + 4]
            ],
        )
    assert store.compactor.runs == 1  # started at the 5th write; later ones within the minute skip
    assert store.compactor.wait(120)
    table = store._open("T")
    assert table.stats()["fragment_stats"]["num_fragments"] < 10  # 10 writes, 5 compacted into 1
    assert store.compact("T", timeout=120) and store.compactor.runs == 2  # explicit: runs and waits
    assert table.stats()["fragment_stats"]["num_fragments"] == 1
    store.upsert_many("T", [{"uuid": u, "properties": {"function_name": "again"}, "vector": None} for u in ids[:8]])
    assert store.count_rows("T") == 40
    assert sorted(r["uuid"] for r in table.to_arrow().select(["uuid"]).to_pylist()) == sorted(ids)


def test_failed_compaction_is_counted_not_raised(tmp_path):
    from datetime import timedelta

    from vt_middleware.health import error_counts, reset_error_counts
    from vt_middleware.store.compaction import ChildCompactor

    reset_error_counts()
    compactor = ChildCompactor(str(tmp_path / "no-such-db"), timedelta(0))
    assert compactor.start("missing_table")
    assert compactor.wait(120)  # the child failed (no such table): reported, not raised
    assert error_counts() == {"store.compact:StoreError": 1}
