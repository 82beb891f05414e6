"""A journal that quarantines, never blocks: corrupt lines (random bytes, invalid UTF-8
inside a line, JSON of the wrong shape, a torn last line) and records the store rejects go
to the quarantine file with their segment and offset; the rest of the segment, later
segments and new calls all reach the store; the store's backoff is never set by a record;
``flush()`` is True only when everything is stored; ``capture_stats()`` never raises;
``vt doctor`` says where the quarantined records are and what to do."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Dict, List

import pytest
from typer.testing import CliRunner

import vt_middleware as vt
from vt_middleware.capture import worker
from vt_middleware.capture.journal import Journal
from vt_middleware.cli import app
from vt_middleware.store.lance import FixedLanceStore
from vt_middleware.types import CallRecord

DEAD_PID = 999_999  # segments a dead process left behind


def _line(i: int, tag: str) -> bytes:
    record = CallRecord(function_name="replayed", inputs={"args": {"i": i}}, output=f"{tag} {i}")
    return (json.dumps({"uuid": record.run_id, "properties": record.to_properties(), "vector": None}) + "\n").encode()


CORRUPT: Dict[str, bytes] = {
    "random bytes": bytes(random.Random(7).randrange(256) for _ in range(300)).replace(b"\n", b"-") + b"\n",
    "invalid utf-8 inside a line": (
        b'{"uuid": "u-bad-utf8", "properties": {"output": "caf\xe9 \xff"}, "vector": null}\n'
    ),
    "wrong shape": b'{"uuid": "u-wrong-shape", "properties": "x", "vector": null}\n',
    "not an object": b'["uuid", "properties"]\n',
    "bad vector": b'{"uuid": "u-bad-vector", "properties": {}, "vector": ["a", 1]}\n',
}


def _plant(journal_dir: Path) -> Dict[str, object]:
    """One sealed segment per corruption kind (valid records before and after it), a torn
    last line, and a clean later segment. Returns the expected uuids and offsets."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    good: List[str] = []
    offsets: Dict[str, tuple] = {}
    for n, (kind, bad) in enumerate(CORRUPT.items()):
        before, after = _line(2 * n, kind), _line(2 * n + 1, kind)
        name = f"seg-{1000 + n}-{DEAD_PID}-0.jsonl"
        (journal_dir / name).write_bytes(before + bad + after)
        offsets[kind] = (name, len(before))
        good += [json.loads(before)["uuid"], json.loads(after)["uuid"]]
    torn_ok = _line(100, "torn")
    (journal_dir / f"seg-2000-{DEAD_PID}-0.jsonl").write_bytes(torn_ok + b'{"uuid": "u-torn", "propert')
    offsets["torn last line"] = (f"seg-2000-{DEAD_PID}-0.jsonl", len(torn_ok))
    good.append(json.loads(torn_ok)["uuid"])
    later = [_line(200 + i, "later") for i in range(3)]
    (journal_dir / f"seg-3000-{DEAD_PID}-0.jsonl").write_bytes(b"".join(later))
    good += [json.loads(x)["uuid"] for x in later]
    return {"good": good, "offsets": offsets}


def _stored(function_name: str) -> List[str]:
    return [c.uuid for page in vt.get_store().iter_calls(function_name) for c in page]


def test_corrupt_segments_are_quarantined_and_everything_else_replays(vt_env, caplog):
    planted = _plant(vt_env.journal_path)
    stats = vt.capture_stats()  # reading corrupt segments never raises
    assert "error" not in stats and stats["journal_pending"] == len(planted["good"])

    @vt.track(function_name="new_calls")
    def new_call(i: int) -> str:
        return f"out {i}"

    with caplog.at_level(logging.WARNING, logger="vt_middleware"):
        new_ids = []
        for i in range(100):
            new_call(i)
            new_ids.append(vt.last_run_id())
        assert vt.flush(60)
    assert sorted(_stored("new_calls")) == sorted(new_ids)  # 100 of 100 new calls stored
    assert sorted(_stored("replayed")) == sorted(planted["good"])  # the rest of each segment and later ones
    delivery = worker.get_worker().delivery
    assert not delivery.backing_off()
    assert not any(key.startswith("capture.replay") for key in vt.error_counts())

    stats = vt.capture_stats()
    kinds = len(CORRUPT) + 1
    assert stats["quarantined"] == kinds and stats["journal_pending"] == 0 and "error" not in stats
    quarantine = Path(stats["quarantine_path"])
    entries = [json.loads(line) for line in quarantine.read_text(encoding="utf-8").splitlines()]
    assert {(e["segment"], e["offset"]) for e in entries} == set(planted["offsets"].values())
    by_segment = {e["segment"]: e for e in entries}
    assert "not UTF-8" in by_segment[planted["offsets"]["invalid utf-8 inside a line"][0]]["reason"]
    assert "properties must be an object" in by_segment[planted["offsets"]["wrong shape"][0]]["reason"]
    assert "torn last line" in by_segment[planted["offsets"]["torn last line"][0]]["reason"]
    assert "caf\\xe9" in by_segment[planted["offsets"]["invalid utf-8 inside a line"][0]]["raw"]
    warnings = [r.getMessage() for r in caplog.records if "moved to" in r.getMessage()]
    assert len(warnings) == 1 and str(quarantine) in warnings[0]  # logged once, with the path
    assert not list(vt_env.journal_path.glob("seg-*"))


def test_a_record_the_store_rejects_is_quarantined_without_backoff(vt_env):
    journal = Journal(vt_env.journal_path)
    good = [json.loads(_line(i, "ok")) for i in range(4)]
    wrong_dim = {**json.loads(_line(9, "bad")), "vector": [0.5] * 7}  # the table stores 384-d vectors
    journal.append([*good[:2], wrong_dim, *good[2:]])
    journal.seal()
    assert vt.flush(60)
    assert sorted(_stored("replayed")) == sorted(item["uuid"] for item in good)
    stats = vt.capture_stats()
    assert stats["quarantined"] == 1 and stats["journal_pending"] == 0
    entry = json.loads(Path(stats["quarantine_path"]).read_text().splitlines()[0])
    assert "rejected by the store: DataError" in entry["reason"] and wrong_dim["uuid"] in entry["raw"]
    assert not worker.get_worker().delivery.backing_off()


def test_flush_is_false_while_records_wait_in_the_journal(vt_env, monkeypatch):
    real_upsert = FixedLanceStore.upsert_many
    down = {"on": True}

    def upsert(self, collection, items, fresh=False):
        if down["on"]:
            raise OSError("store down")
        return real_upsert(self, collection, items, fresh=fresh)

    monkeypatch.setattr(FixedLanceStore, "upsert_many", upsert)

    @vt.track(function_name="while_down")
    def call(i: int) -> str:
        return str(i)

    ids = []
    for i in range(5):
        call(i)
        ids.append(vt.last_run_id())
    assert vt.flush(10) is False  # journaled, not stored
    assert vt.capture_stats()["journal_pending"] == 5
    down["on"] = False
    worker.get_worker().delivery.reset_backoff()
    assert vt.flush(60) is True
    assert sorted(_stored("while_down")) == sorted(ids)


def test_capture_stats_never_raises(vt_env, monkeypatch):
    vt_env.journal_path.mkdir(parents=True)
    (vt_env.journal_path / f"seg-1-{DEAD_PID}-0.jsonl").write_bytes(os.urandom(2048))

    def broken(self):
        raise PermissionError("journal unreadable")

    assert "error" not in vt.capture_stats()
    monkeypatch.setattr(Journal, "pending_count", broken)
    stats = vt.capture_stats()
    assert stats["error"] == "PermissionError: journal unreadable" and "enqueued" in stats


def test_vt_doctor_reports_quarantined_records_and_what_to_do(vt_env):
    planted = _plant(vt_env.journal_path)
    assert vt.flush(60)
    result = CliRunner().invoke(app, ["doctor", "--json", "--journal-path", str(vt_env.journal_path)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["quarantined"] == len(planted["offsets"]) and info["pending_records"] == 0
    assert info["quarantine_path"].endswith("quarantine/quarantine.jsonl")
    assert info["quarantine_reasons"]["not UTF-8"] == 2  # random bytes, and invalid UTF-8 inside a line
    assert "append it to a new file" in info["advice"]
    table = CliRunner().invoke(app, ["doctor", "--journal-path", str(vt_env.journal_path)], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "what to do" in table.output and "quarantined" in table.output
    clean = CliRunner().invoke(app, ["doctor", "--json", "--journal-path", str(vt_env.journal_path / "none")])
    assert json.loads(clean.output)["advice"] == "nothing to do"


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_each_corruption_kind_alone_is_quarantined(vt_env, kind):
    vt_env.journal_path.mkdir(parents=True)
    before, after = _line(0, kind), _line(1, kind)
    (vt_env.journal_path / f"seg-1-{DEAD_PID}-0.jsonl").write_bytes(before + CORRUPT[kind] + after)
    assert vt.flush(60)
    assert sorted(_stored("replayed")) == sorted(json.loads(x)["uuid"] for x in (before, after))
    assert vt.capture_stats()["quarantined"] == 1
