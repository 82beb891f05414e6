"""The evolver crashing in each stage (extract, synthesize, prepare, train, evaluate, promote):
the run is recorded as failed at that stage, nothing is half-promoted (runtime, ACTIVE
pointer, promotion history unchanged), the app's calls keep succeeding and being captured,
the evolver backs off instead of dying, and the next run after the fault clears promotes."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

import vt_middleware as vt
from store_data import AllCallsExtractor
from synth_data import make_pairs
from vt_middleware.call_context import last_run_id
from vt_middleware.evolve.evolver import Evolver
from vt_middleware.evolve.gate import EvaluationGate
from vt_middleware.evolve.run_records import load_run
from vt_middleware.evolve.swap import Promoter
from vt_middleware.pipeline import OpenAITrainer, TrainingPipeline
from vt_middleware.synthesize import pipeline as synth_pipeline
from vt_middleware.synthesize.versions import HookVersionStore
from vt_middleware.train.local_models import TINY_ID
from vt_middleware.types import CallRecord

FUNCTION = "evolver_faults"


class InjectedCrash(RuntimeError):
    pass


def _store_feedback() -> None:
    store = vt.get_store()
    for pair, family in make_pairs(24, seed=3):
        if family in ("preamble", "currency"):
            pair.context = {"function_name": FUNCTION}
            store.add_feedback(pair)


def _seed_calls(client: Any, n: int = 3) -> List[str]:
    wrapped = vt.wrap(client, function_name=FUNCTION)
    ids = []
    for i in range(n):
        wrapped.chat.completions.create(
            model=TINY_ID, messages=[{"role": "user", "content": f"review {i}"}], max_tokens=4
        )
        ids.append(last_run_id())
    assert vt.flush(30)
    return ids


def _seed_golden(n: int = 4) -> List[str]:
    """Captured calls with real answers (the tiny model's own answers are blank)."""
    from vt_middleware.store.embedding import get_embedder

    records = [
        CallRecord(
            FUNCTION,
            {"messages": [{"role": "user", "content": p.input_prompt}]},
            p.fixed_output,
            kind="openai",
            model_requested=TINY_ID,
            model_used=TINY_ID,
        )
        for p, _ in make_pairs(n, seed=11)
    ]
    vectors = get_embedder(vt.get_config().embedding_model).embed([r.embedding_text() for r in records])
    vt.get_store().write_calls(
        [{"uuid": r.run_id, "properties": r.to_properties(), "vector": v.tolist()} for r, v in zip(records, vectors)]
    )
    return [r.run_id for r in records]


# stage -> (object to patch, attribute); patched to raise InjectedCrash while the fault is on
def _targets(pipeline: TrainingPipeline) -> Dict[str, Any]:
    return {
        "extract": (pipeline.extractor, "select_steady_state"),
        "synthesize": (synth_pipeline, "synthesize_version"),
        "prepare": (pipeline.trainer, "prepare_data"),
        "train": (pipeline.trainer, "start_training"),
        "evaluate": (pipeline.gate, "evaluate"),
        "promote": (pipeline.promoter, "promote"),
    }


@pytest.mark.parametrize("stage", ["extract", "synthesize", "prepare", "train", "evaluate", "promote"])
def test_crash_in_each_stage_is_contained_and_the_next_run_recovers(stage, vt_env, openai_client, monkeypatch):
    _store_feedback()
    call_ids = _seed_calls(openai_client) + _seed_golden()
    trainer = OpenAITrainer(client=openai_client, max_budget_usd=1.0, model=TINY_ID)
    pipeline = TrainingPipeline(
        AllCallsExtractor(),
        trainer=trainer,
        promoter=Promoter(),
        gate=EvaluationGate(),
        min_train_examples=1000 if stage not in ("prepare", "train") else 1,
    )
    pipeline.gate.client = None  # hooks-only gate: no slow model generations in a fault test
    target, attribute = _targets(pipeline)[stage]
    real = getattr(target, attribute)
    fault = {"on": True}

    def crashing(*args: Any, **kwargs: Any) -> Any:
        if fault["on"]:
            raise InjectedCrash(f"injected crash in {stage}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, attribute, crashing)
    runtime = vt.get_runtime()
    before = runtime.current()
    evolver = Evolver(pipeline, FUNCTION, every="1h", min_new_calls=None, backoff_base_s=0.0)

    assert evolver.run_once() is None  # the evolver contains the crash
    status = evolver.status()
    assert status["state"] == "backoff" and status["consecutive_failures"] == 1
    assert f"injected crash in {stage}" in status["last_error"]
    record = load_run(status["last_run"]["run_id"])
    assert record["status"] == "failed" and record["stages"][stage]["status"] == "failed"
    assert "InjectedCrash" in record["stages"][stage]["error"]
    assert runtime.current() is before  # nothing half-promoted
    assert HookVersionStore(vt_env.hooks_dir).active_version() is None
    assert vt.get_store().promotions() == []

    during = _seed_calls(openai_client, 1)  # the app is unaffected and still captured

    fault["on"] = False
    # Recovery without paying for a LoRA run: prepare/train were reached (and crashed)
    # above; here training is skipped by design and the hooks are promoted.
    pipeline.min_train_examples = 1000
    result = evolver.run_once(trigger="retry")
    assert result is not None and result["status"] == "succeeded", evolver.status()["last_error"]
    assert result["promoted"], result["gate"]
    assert runtime.current().hook_version == result["hook_version"]
    assert pipeline.promoter.flush_files(10)  # ACTIVE is derived from the record in the background
    assert HookVersionStore(vt_env.hooks_dir).active_version() == result["hook_version"]
    assert evolver.status()["consecutive_failures"] == 0 and evolver.status()["state"] == "idle"
    stored = [c.uuid for page in vt.get_store().iter_calls(FUNCTION) for c in page]
    assert sorted(stored) == sorted(call_ids + during)  # evolver's own LLM calls are not captured


def test_evolver_thread_survives_store_errors_in_its_trigger_check(vt_env, monkeypatch):
    import time

    pipeline = TrainingPipeline(AllCallsExtractor(), promoter=Promoter())
    evolver = Evolver(pipeline, FUNCTION, min_new_calls=1, check_interval=0.05, sync=False)
    store = vt.get_store()
    real_count = type(store).count
    broken = {"n": 0}

    def count(self, function_name=None):
        broken["n"] += 1
        if broken["n"] <= 3:
            raise OSError("lance table unavailable")
        return real_count(self, function_name)

    monkeypatch.setattr(type(store), "count", count)
    evolver.start()
    try:
        deadline = time.monotonic() + 10
        while broken["n"] <= 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert evolver.running and broken["n"] > 4  # kept checking after the errors
        from vt_middleware.capture import worker

        worker.submit(CallRecord(FUNCTION, {"messages": [{"role": "user", "content": "hi"}]}, "answer"))
        assert vt.flush(30)
        while evolver.status()["runs"] == 0 and time.monotonic() < deadline + 20:
            time.sleep(0.05)
        last = evolver.status()["last_run"]
        assert last is not None and last["trigger"] == "calls"  # the call trigger works again
    finally:
        assert evolver.stop()
