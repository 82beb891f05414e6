"""DensityBasedExtractor over a real LanceDB store: paged reads, candidates with the real
rows, ChatML export of the real inputs/outputs, feedback corrections, golden registration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.synthetic_calls import make_calls
from vt_middleware.chatml import read_chat_examples, validate_chat_jsonl
from vt_middleware.errors import ConfigError, DataError
from vt_middleware.extractor import DensityBasedExtractor
from vt_middleware.select.sources import ArraySource
from vt_middleware.store.executions import GOLDEN, get_store
from vt_middleware.types import STATUS_SUCCESS, CallRecord, FeedbackPair

FN = "generate_review_summary"


def write(records, vectors):
    get_store().write_calls(
        [{"uuid": r.run_id, "properties": r.to_properties(), "vector": v.tolist()} for r, v in zip(records, vectors)]
    )


def seed_store(n: int = 400, seed: int = 3):
    """Synthetic calls as captured rows: chat calls and decorated-function calls."""
    data = make_calls(n=n, n_clusters=6, n_rare=4, seed=seed)
    records = []
    for i, (label, status) in enumerate(zip(data.labels, data.statuses)):
        if i % 2:
            inputs = {
                "messages": [
                    {"role": "system", "content": "You summarise reviews."},
                    {"role": "user", "content": f"review {i} of product group {label}"},
                ]
            }
        else:
            inputs = {"args": {"review": f"review {i}", "group": int(label)}}
        output = f"summary {i} for group {label}" if status == STATUS_SUCCESS else None
        records.append(
            CallRecord(
                FN,
                inputs,
                output,
                status=status,
                kind="openai" if i % 2 else "function",
                error_type=None if output else "RuntimeError",
            )
        )
    write(records, data.vectors)
    return data, records


def test_steady_and_anomalies_from_the_store(vt_env):
    data, records = seed_store()
    ex = DensityBasedExtractor(get_store(), epsilon=0.3, top_k=20, page_size=37)
    steady = ex.select_steady_state(FN)
    anomalies = ex.select_anomalies(FN)
    by_id = {r.run_id: r for r in records}
    index = {r.run_id: i for i, r in enumerate(records)}
    assert 0 < len(steady) <= 20 and len(anomalies) == len(data.rare_groups)
    for c in steady + anomalies:
        record = by_id[c.uuid]
        assert c.status == STATUS_SUCCESS and c.return_value == record.output and c.inputs == record.inputs
        assert c.function_name == FN and c.run_id == c.uuid
    assert {c.strategy for c in steady} == {"steady"} and {c.strategy for c in anomalies} == {"anomaly"}
    assert sorted(int(data.labels[index[c.uuid]]) for c in anomalies) == data.rare_groups
    # reading in pages of 37 gives the same selection as one big page
    again = DensityBasedExtractor(get_store(), epsilon=0.3, top_k=20, page_size=5000)
    assert [c.uuid for c in again.select_steady_state(FN)] == [c.uuid for c in steady]


def test_export_uses_real_inputs_corrections_and_validates(vt_env, tmp_path):
    _data, records = seed_store()
    ex = DensityBasedExtractor(get_store(), epsilon=0.3, top_k=20)
    steady = ex.select_steady_state(FN)
    anomaly = ex.select_anomalies(FN)[0]
    fixed = steady[0]
    get_store().add_feedback(
        FeedbackPair("p", fixed.return_value, "the corrected summary", context={"function_name": FN}, run_id=fixed.uuid)
    )
    get_store().add_feedback(
        FeedbackPair("p", anomaly.return_value, "bad anomaly fixed", context={"function_name": FN}, run_id=anomaly.uuid)
    )
    path = ex.extract_golden_data(FN, str(tmp_path / "golden.jsonl"))
    assert validate_chat_jsonl(path).ok
    examples = read_chat_examples(path)
    assert len(examples) == ex.last_export.written and ex.last_export.corrected == 1
    selected_ids = {c.uuid for c in ex.select_steady_state(FN) + ex.select_anomalies(FN)}
    assert anomaly.uuid not in {c.uuid for c in ex.select_anomalies(FN)}  # corrected as bad
    by_id = {r.run_id: r for r in records}
    expected = []
    for uuid in selected_ids:
        record = by_id[uuid]
        output = "the corrected summary" if uuid == fixed.uuid else record.output
        if "messages" in record.inputs:
            messages = record.inputs["messages"]
        else:
            messages = [
                {
                    "role": "system",
                    "content": f"You are the function '{FN}'. Reply with its output for the arguments given as JSON.",
                },
                {"role": "user", "content": json.dumps(record.inputs["args"], sort_keys=True)},
            ]
        expected.append([*messages, {"role": "assistant", "content": output}])
    key = lambda m: json.dumps(m, sort_keys=True)  # noqa: E731
    assert sorted(map(key, (e["messages"] for e in examples))) == sorted(map(key, expected))
    assert not any("density" in json.dumps(e) for e in examples)


def test_export_deduplicates_splits_and_skips_unusable(vt_env, tmp_path):
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(384)
    vectors = centre + 0.3 * rng.standard_normal((30, 384)) / np.sqrt(384) * np.linspace(0.5, 3, 30)[:, None]
    records = [
        CallRecord(FN, {"messages": [{"role": "user", "content": f"q{i % 10}"}]}, f"a{i % 10}" if i != 7 else "  ")
        for i in range(30)
    ]
    write(records, vectors)
    ex = DensityBasedExtractor(get_store(), epsilon=0.3, top_k=30, dedup_threshold=1.0)
    path = ex.extract_golden_data(FN, str(tmp_path / "g.jsonl"), val_fraction=0.2)
    report = ex.last_export
    train, val = read_chat_examples(path), read_chat_examples(report.validation_path)
    lines = [json.dumps(e, sort_keys=True) for e in train + val]
    assert len(lines) == len(set(lines)) == 10 and report.duplicates > 0
    assert len(val) == 2 and len(train) == 8
    assert any("no text output" in reason for _, reason in report.skipped)
    assert validate_chat_jsonl(report.validation_path).ok
    with pytest.raises(ConfigError, match="val_fraction"):
        ex.extract_golden_data(FN, str(tmp_path / "h.jsonl"), val_fraction=1.5)


def test_vectorwave_dataset_manager_source_and_golden_registration(vt_env, tmp_path, monkeypatch):
    from vectorwave import VectorWaveDatasetManager

    from vt_middleware.store.executions import share_store_with_vectorwave, vectorwave_env

    for name in vectorwave_env():
        monkeypatch.delenv(name, raising=False)  # restored after the test
    share_store_with_vectorwave()  # a seed-style app points VectorWave at the store itself
    _data, _records = seed_store(n=200)
    manager = VectorWaveDatasetManager()
    ex = DensityBasedExtractor(dataset_manager=manager, epsilon=0.3, top_k=10)
    steady = ex.select_steady_state(FN)
    assert steady and all(c.status == STATUS_SUCCESS for c in steady)
    ex.extract_golden_data(FN, str(tmp_path / "golden.jsonl"), register_as_golden=True)
    golden = [r for page in get_store().backend.scan(GOLDEN) for r in page]
    originals = {r["payload"]["original_uuid"] for r in golden}
    assert {c.uuid for c in steady} <= originals


def test_golden_registration_over_our_store_needs_no_vectorwave_environment(vt_env, tmp_path, monkeypatch):
    from vt_middleware.store.executions import vectorwave_env

    for name in vectorwave_env():
        monkeypatch.delenv(name, raising=False)
    seed_store(n=200)
    ex = DensityBasedExtractor(get_store(), epsilon=0.3, top_k=10)
    steady = ex.select_steady_state(FN)
    ex.extract_golden_data(FN, str(tmp_path / "golden.jsonl"), register_as_golden=True)
    golden = [r for page in get_store().backend.scan(GOLDEN) for r in page]
    assert steady and {c.uuid for c in steady} <= {r["payload"]["original_uuid"] for r in golden}


def test_bad_sources_and_empty_functions(vt_env, tmp_path):
    ex = DensityBasedExtractor(get_store())
    assert ex.select_steady_state("never_called") == [] and ex.select_anomalies("never_called") == []  # the seed's
    with pytest.raises(DataError, match="no logged calls"):
        ex.extract_golden_data("never_called", str(tmp_path / "x.jsonl"))
    with pytest.raises(ConfigError, match="epsilon"):
        DensityBasedExtractor(get_store(), epsilon=2.0)
    with pytest.raises(ConfigError, match="dataset_manager"):
        DensityBasedExtractor(dataset_manager=object())
    # one log: a defined result (nothing selected) and a clear export error
    write([CallRecord("once", {"args": {"x": 1}}, "y")], [np.ones(384)])
    one = DensityBasedExtractor(get_store())
    assert one.select_steady_state("once") == [] and one.select_anomalies("once") == []
    with pytest.raises(DataError, match="no calls of 'once' were selected"):
        one.extract_golden_data("once", str(tmp_path / "once.jsonl"))


def test_array_source_and_mixed_dimensions_from_records():
    data = make_calls(n=300, n_clusters=4, n_rare=3, seed=2)
    records = [CallRecord(FN, {"args": {"i": i}}, f"out {i}", status=s) for i, s in enumerate(data.statuses)]
    ex = DensityBasedExtractor(ArraySource(data.vectors, records=records), top_k=8)
    steady = ex.select_steady_state(FN)
    assert len(steady) == 8 and all(c.return_value.startswith("out ") for c in steady)
    plain = DensityBasedExtractor(data.vectors, top_k=8)  # a bare array: statuses all SUCCESS
    assert len(plain.select_steady_state(FN)) == 8
    with pytest.raises(DataError, match="mixed dimensions"):
        DensityBasedExtractor([[1.0, 0.0], [0.0, 1.0, 0.0]]).select_steady_state(FN)
