"""Evolver thread: triggers (calls, feedback, schedule), one run at a time, backoff after a
failing stage, clean stop, status persisted; real pipeline, store and synthesis."""

from __future__ import annotations

import json
import threading
import time

import pytest

import vt_middleware as vt
from test_pipeline_run import FUNCTION, feedback, make_extractor, seed_calls
from vt_middleware.errors import ConfigError
from vt_middleware.evolve.evolver import Evolver, parse_interval
from vt_middleware.evolve.run_records import load_run
from vt_middleware.pipeline import OpenAITrainer, TrainingPipeline
from vt_middleware.train.local_models import TINY_ID


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def hooks_pipeline() -> TrainingPipeline:
    """No trainer: extract + synthesise + hooks-only gate + promote (fast)."""
    return TrainingPipeline(make_extractor())


def failing_pipeline() -> TrainingPipeline:
    dead = OpenAITrainer(api_key="sk-x", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=1, model=TINY_ID)
    return TrainingPipeline(make_extractor(), trainer=dead)


def test_parse_interval():
    assert parse_interval("10m") == 600 and parse_interval("1h30m") == 5400 and parse_interval(2.5) == 2.5
    assert parse_interval(None) is None
    for bad in ("soon", "10x", 0, -1, "m"):
        with pytest.raises(ConfigError, match="every"):
            parse_interval(bad)


def test_bad_arguments_are_clear(vt_env):
    with pytest.raises(ConfigError, match="needs a trigger"):
        Evolver(hooks_pipeline(), FUNCTION, every=None, min_new_calls=None)
    with pytest.raises(ConfigError, match="min_new_calls"):
        Evolver(hooks_pipeline(), FUNCTION, min_new_calls=0)
    with pytest.raises(ConfigError, match="function_name"):
        Evolver(hooks_pipeline(), "")


def test_run_once_promotes_and_persists_status(vt_env):
    seed_calls(6)
    for pair in feedback():
        vt.get_store().add_feedback(pair)
    evolver = Evolver(hooks_pipeline(), FUNCTION, min_new_calls=100)
    result = evolver.run_once()
    assert result is not None and result["promoted"], result and result["gate"]
    status = evolver.status()
    assert status["runs"] == 1 and status["promotions"] == 1 and status["state"] == "idle"
    assert status["last_run"]["run_id"] == result["run_id"] and status["last_run"]["promoted"]
    on_disk = json.loads((vt_env.state_dir / "evolver.json").read_text())
    assert on_disk["runs"] == 1 and on_disk["function_name"] == FUNCTION
    assert vt.get_runtime().current().hook_version == result["hook_version"]


def test_new_calls_trigger_a_run_in_the_background(vt_env):
    evolver = Evolver(hooks_pipeline(), FUNCTION, min_new_calls=3, check_interval=0.05).start()
    try:
        time.sleep(0.2)
        assert evolver.status()["runs"] == 0  # nothing new yet
        seed_calls(3)
        assert wait_for(lambda: evolver.status()["runs"] >= 1)
        assert evolver.status()["last_run"]["trigger"] == "calls"
    finally:
        assert evolver.stop(timeout=30)
    assert evolver.status()["state"] == "stopped"


def test_new_feedback_and_schedule_trigger(vt_env):
    evolver = Evolver(hooks_pipeline(), FUNCTION, min_new_calls=None, min_new_feedback=2, check_interval=0.05)
    evolver.start()
    try:
        vt.get_store().add_feedback(feedback()[0])
        time.sleep(0.2)
        assert evolver.status()["runs"] == 0
        vt.get_store().add_feedback(feedback()[1])
        assert wait_for(lambda: evolver.status()["runs"] >= 1)
        assert evolver.status()["last_run"]["trigger"] == "feedback"
    finally:
        evolver.stop(timeout=30)
    scheduled = Evolver(hooks_pipeline(), FUNCTION, every=0.2, min_new_calls=None, check_interval=0.05).start()
    try:
        assert scheduled.status()["next_trigger_at"] is not None
        assert wait_for(lambda: scheduled.status()["runs"] >= 2)
        assert scheduled.status()["last_run"]["trigger"] == "schedule"
    finally:
        scheduled.stop(timeout=30)


def test_failing_stage_backs_off_and_retries(vt_env):
    seed_calls(4)
    evolver = Evolver(
        failing_pipeline(),
        FUNCTION,
        min_new_calls=None,
        min_new_feedback=None,
        every=3600,
        backoff_base_s=0.2,
        backoff_max_s=0.4,
        check_interval=0.05,
    )
    assert evolver.run_once() is None
    status = evolver.status()
    assert status["state"] == "backoff" and status["consecutive_failures"] == 1 and status["backoff_s"] == 0.2
    assert "unreachable" in status["last_error"]
    record = load_run(status["last_run"]["run_id"])
    assert record["status"] == "failed" and record["stages"]["prepare"]["status"] == "failed"
    evolver.start()
    try:
        assert wait_for(lambda: evolver.status()["failures"] >= 3)
        status = evolver.status()
        assert status["last_run"]["trigger"] == "retry" and status["backoff_s"] == 0.4  # doubled, capped
    finally:
        assert evolver.stop(timeout=30)
    # the pipeline is fixed (a working one): the next retry succeeds and clears the backoff
    evolver.pipeline = hooks_pipeline()
    evolver.run_once("retry")
    assert evolver.status()["consecutive_failures"] == 0 and evolver.status()["state"] == "idle"


def test_one_run_at_a_time(vt_env):
    seed_calls(4)
    active, peak = [0], [0]
    lock = threading.Lock()

    class CountingPipeline(TrainingPipeline):
        def run(self, *args, **kwargs):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                return super().run(*args, **kwargs)
            finally:
                with lock:
                    active[0] -= 1

    evolver = Evolver(CountingPipeline(make_extractor()), FUNCTION, min_new_calls=100)
    threads = [threading.Thread(target=evolver.run_once) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert evolver.status()["runs"] == 3 and peak[0] == 1


def test_evolver_never_captures_its_own_calls(vt_env, local_server, openai_client):
    """The pipeline's LLM calls (gate generation through a wrapped client) are not logged."""
    from vt_middleware.evolve.gate import EvaluationGate

    seed_calls(6)
    for pair in feedback():
        vt.get_store().add_feedback(pair)
    gate = EvaluationGate(client=vt.wrap(openai_client, function_name=FUNCTION))
    gate.config.max_tokens = 4
    pipeline = TrainingPipeline(make_extractor(), gate=gate, base_model=TINY_ID)
    evolver = Evolver(pipeline, FUNCTION, min_new_calls=100)
    result = evolver.run_once()
    assert result is not None and result["gate"]["metrics"]["model_evaluated"]
    vt.flush()
    assert vt.get_store().count(FUNCTION) == 6  # only the seeded calls
