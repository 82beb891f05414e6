"""TrainingPipeline end to end: LanceDB store with captured calls, real synthesis, OpenAITrainer
against the local server (LoRA on the tiny model), real gate, promotion, run records."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest

import vt_middleware as vt
from store_data import AllCallsExtractor
from synth_data import make_pairs
from vt_middleware.dashboards import STAGES, PipelineMonitor
from vt_middleware.errors import ConfigError, DataError, TrainingError
from vt_middleware.evolve.run_records import list_runs, load_run
from vt_middleware.pipeline import OpenAITrainer, TrainingPipeline
from vt_middleware.runtime.active import get_runtime
from vt_middleware.train.local_models import TINY_ID
from vt_middleware.types import CallRecord, FeedbackPair

FUNCTION = "review_summary"


def make_extractor() -> Any:
    from vt_middleware.extractor import DensityBasedExtractor
    from vt_middleware.store.executions import get_store

    # 12 seeded calls: most have no neighbour at epsilon 0.3, so keep singleton anomalies too
    return DensityBasedExtractor(get_store(), epsilon=0.3, top_k=50, min_group_size=1)


def seed_calls(n: int = 12, function_name: str = FUNCTION) -> None:
    """Write ``n`` captured chat calls (good answers) with their embeddings to the store."""
    from vt_middleware.config import get_config
    from vt_middleware.store.embedding import get_embedder
    from vt_middleware.store.executions import get_store

    records = [
        CallRecord(
            function_name,
            {"messages": [{"role": "user", "content": p.input_prompt}]},
            p.fixed_output,
            kind="openai",
            model_requested=TINY_ID,
            model_used=TINY_ID,
        )
        for p, family in make_pairs(n * 3, seed=11)
        if family in ("preamble", "currency", "rating")
    ][:n]
    vectors = get_embedder(get_config().embedding_model).embed([r.embedding_text() for r in records])
    get_store().write_calls(
        [{"uuid": r.run_id, "properties": r.to_properties(), "vector": v.tolist()} for r, v in zip(records, vectors)]
    )


def feedback(function_name: str = FUNCTION) -> List[FeedbackPair]:
    pairs = [p for p, family in make_pairs(60, seed=3) if family in ("preamble", "currency")]
    for pair in pairs:
        pair.context = {"function_name": function_name}
    return pairs


class RecordingMonitor(PipelineMonitor):
    def __init__(self) -> None:
        self.events: List[tuple] = []

    def on_stage_start(self, stage: str, total: Any = None) -> None:
        self.events.append(("start", stage))

    def on_stage_progress(
        self, stage: str, completed: int, total: Any = None, message: str = "", metrics: Any = None
    ) -> None:
        self.events.append(("progress", stage, metrics))

    def on_stage_complete(self, stage: str, result: Any = None) -> None:
        self.events.append(("complete", stage, result))

    def on_stage_error(self, stage: str, error: Any) -> None:
        self.events.append(("error", stage, str(error)))

    def on_log(self, message: str, level: str = "info") -> None:
        self.events.append(("log", message))


@pytest.fixture
def trainer(local_server):
    from openai import OpenAI

    client = OpenAI(base_url=local_server.base_url, api_key="sk-local", max_retries=0)
    yield OpenAITrainer(client=client, max_budget_usd=1.0, model=TINY_ID)
    client.close()


def test_full_run_trains_evaluates_promotes_and_records(vt_env, trainer, tmp_path):
    seed_calls()
    for pair in feedback():
        vt.get_store().add_feedback(pair)  # run() reads the store's feedback by default
    monitor = RecordingMonitor()
    pipeline = TrainingPipeline(
        make_extractor(),
        synthesizer_output_dir=vt_env.hooks_dir,
        trainer=trainer,
        monitor=monitor,
        hyperparameters={"n_epochs": 1},
        poll_interval=0.2,
    )
    result = pipeline.run(function_name=FUNCTION, output_dir=str(tmp_path / "out"))

    # seed keys
    fine_tuned = result["train"]["fine_tuned_model"]
    assert fine_tuned and fine_tuned.startswith("ft:")
    assert Path(result["golden_data_path"]).exists() and Path(result["hook_script_path"]).exists()
    assert result["steady"] + result["anomalies"] >= 1 and 2 <= result["golden_examples"] <= 12
    assert result["holdout_examples"] >= 1
    # these corrections carry no captured request, so only golden rows fine-tune
    assert result["train_examples"] == result["golden_examples"] - result["holdout_examples"]
    assert {r["kind"] for r in result["rules"]} and result["feedback_pairs"] == len(feedback())
    assert result["cost"]["usd"] == 0.0 and result["cost"]["model"] == TINY_ID
    assert fine_tuned in [m.id for m in trainer.client.models.list().data]

    # the gate judged candidate vs incumbent on held-out data, model side included
    gate = result["gate"]
    assert gate["metrics"]["model_evaluated"] is True and gate["metrics"]["n_feedback"] >= 1
    assert gate["metrics"]["rows"]["both"]["model"] == fine_tuned
    assert gate["metrics"]["incumbent"]["model"] == TINY_ID
    assert set(gate["metrics"]["rows"]) == {"incumbent", "hooks", "model", "both"}
    assert gate["metrics"]["rows"]["model"]["model"] == fine_tuned
    assert gate["metrics"]["rows"]["hooks"]["model"] == TINY_ID
    assert result["promoted"] == gate["promote"] and result["promoted_parts"] == gate["parts"]
    # the synthesiser's own k-fold estimate is shown beside what the gate measured
    estimate = result["hook_estimate"]
    if estimate.get("folds"):
        assert gate["hooks_self_estimate"]["fix_rate"] == estimate["fix_rate"]
        assert any(e[0] == "log" and "self-estimate" in e[1] for e in monitor.events)
    else:
        assert "hooks_self_estimate" not in gate and estimate["reason"]
    live = get_runtime().current()
    assert live.route(TINY_ID) == (fine_tuned if "model" in gate["parts"] else TINY_ID)
    assert live.hook_version == (result["hook_version"] if "hooks" in gate["parts"] else None)

    # held-out golden examples were not trained on
    out = tmp_path / "out"
    train_rows = (out / "golden_train.jsonl").read_text().splitlines()
    holdout_rows = (out / "golden_holdout.jsonl").read_text().splitlines()
    assert not set(train_rows) & set(holdout_rows)

    # the monitor saw every stage in order, training loss included
    starts = [e[1] for e in monitor.events if e[0] == "start"]
    assert starts == list(STAGES)
    assert any(e[0] == "progress" and e[1] == "train" and "train_loss" in (e[2] or {}) for e in monitor.events)
    assert any(e[0] == "log" and "fine-tuning estimate" in e[1] for e in monitor.events)

    # run record
    record = load_run(result["run_id"])
    assert record["status"] == "succeeded" and record["function_name"] == FUNCTION
    assert set(record["stages"]) == set(STAGES)
    for name in ("extract", "synthesize", "prepare", "train", "evaluate"):
        assert record["stages"][name]["status"] == "succeeded", name
        assert record["stages"][name]["duration_s"] >= 0
    assert record["stages"]["promote"]["status"] == ("succeeded" if result["promoted"] else "skipped")
    assert record["decision"]["promoted"] == result["promoted"]
    assert record["decision"]["reason"] == gate["reason"] and record["decision"]["metrics"]["rows"]
    assert record["decision"]["parts"] == (gate["parts"] if result["promoted"] else [])
    assert record["result"]["train"]["fine_tuned_model"] == fine_tuned
    assert list_runs(function_name=FUNCTION)[0]["run_id"] == result["run_id"]


def test_empty_golden_set_skips_training_and_still_promotes_hooks(vt_env, trainer, tmp_path):
    pipeline = TrainingPipeline(make_extractor(), trainer=trainer)
    result = pipeline.run(function_name=FUNCTION, feedback_pairs=feedback(), output_dir=str(tmp_path))
    assert result["golden_examples"] == 0
    assert "empty golden set" in result["train"]["reason"] and result["train"]["fine_tuned_model"] is None
    record = load_run(result["run_id"])
    assert record["stages"]["prepare"]["status"] == "skipped"
    assert "empty golden set" in record["stages"]["train"]["result"]["reason"]
    # hooks alone: judged on held-out feedback, they fix the defects
    assert result["gate"]["promote"], result["gate"]["reason"]
    assert result["promoted"] and get_runtime().current().hook_version == result["hook_version"]
    assert get_runtime().current().route(TINY_ID) == TINY_ID  # no model change


def test_no_feedback_and_no_calls_keeps_incumbent_and_says_why(vt_env, trainer, tmp_path):
    result = TrainingPipeline(make_extractor(), trainer=trainer).run(
        FUNCTION, feedback_pairs=[], output_dir=str(tmp_path)
    )
    assert result["status"] == "succeeded" and not result["promoted"]
    assert "no feedback pairs" in result["skipped"]["synthesize"]
    assert "keeping the incumbent" in result["gate"]["reason"] or "incumbent" in result["gate"]["reason"]


def _failing_run(pipeline: TrainingPipeline, tmp_path, error: type, match: str, stage: str) -> Dict[str, Any]:
    monitor = RecordingMonitor()
    pipeline.monitor = monitor
    with pytest.raises(error, match=match):
        pipeline.run(FUNCTION, feedback_pairs=feedback(), output_dir=str(tmp_path))
    record = load_run(pipeline.last_run_id)
    assert record["status"] == "failed" and record["finished_at"]
    assert record["stages"][stage]["status"] == "failed"
    assert match.split(".*")[0] in record["stages"][stage]["error"]
    assert ("error", stage) in [e[:2] for e in monitor.events]
    assert not record["decision"]["promoted"] and get_runtime().current().generation == 0
    return record


def test_unknown_model_in_price_table_fails_prepare_clearly(vt_env, trainer, tmp_path):
    seed_calls(4)
    pipeline = TrainingPipeline(make_extractor(), trainer=trainer, base_model="mystery-model-1")
    _failing_run(pipeline, tmp_path, ConfigError, "not in the fine-tuning price table", "prepare")


def test_trainer_job_failure_is_recorded(vt_env, trainer, tmp_path):
    seed_calls(4)
    pipeline = TrainingPipeline(make_extractor(), trainer=trainer, hyperparameters={"warmup": 3})
    _failing_run(pipeline, tmp_path, TrainingError, "unknown hyperparameter", "train")


def test_unreachable_server_is_recorded(vt_env, tmp_path):
    seed_calls(4)
    dead = OpenAITrainer(api_key="sk-x", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2, model=TINY_ID)
    _failing_run(TrainingPipeline(make_extractor(), trainer=dead), tmp_path, TrainingError, "unreachable", "prepare")


def test_missing_api_key_message_passes_through(vt_env, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        TrainingPipeline(make_extractor(), trainer=OpenAITrainer())


def test_fine_tuning_set_is_golden_rows_plus_corrections_without_held_out_requests():
    from vt_middleware.evolve.stages import training_rows

    def ask(text: str) -> list:
        return [{"role": "system", "content": "Summarise."}, {"role": "user", "content": text}]

    def pair(text: str, fixed: str) -> FeedbackPair:
        return FeedbackPair(text, "bad", fixed, context={"messages": ask(text)})

    golden = [{"messages": [*ask(t), {"role": "assistant", "content": f"as answered: {t}"}]} for t in "abcd"]
    corrected, held = [pair("a", "fixed a"), pair("e", "fixed e")], [pair("b", "fixed b")]
    rows = training_rows(golden, corrected, held, repeats=2)
    answers = [r["messages"][-1]["content"] for r in rows]
    # "a" is corrected (its fix replaces the answer), "b" is held out (never trained on)
    assert answers == ["as answered: c", "as answered: d", "fixed a", "fixed a", "fixed e", "fixed e"]
    assert all(r["messages"][:-1] == ask(r["messages"][-1]["content"][-1]) for r in rows)
    assert training_rows(golden, corrected, held, repeats=0) == [golden[0], *golden[2:]]  # held out only


def test_a_second_run_on_the_same_pipeline_is_refused_while_one_runs(vt_env, tmp_path):
    import threading

    from vt_middleware.evolve.pipeline import PipelineBusyError
    from vt_middleware.store.executions import get_store

    entered, release = threading.Event(), threading.Event()

    class SlowExtractor(AllCallsExtractor):
        def select_steady_state(self, function_name: str) -> List[CallRecord]:
            entered.set()
            assert release.wait(30)
            return super().select_steady_state(function_name)

    pipeline = TrainingPipeline(SlowExtractor(get_store()), synthesizer_output_dir=vt_env.hooks_dir)
    results: Dict[str, Any] = {}
    first = threading.Thread(
        target=lambda: results.update(
            first=pipeline.run(FUNCTION, feedback_pairs=feedback(), output_dir=str(tmp_path / "a"))
        )
    )
    first.start()
    try:
        assert entered.wait(30)
        with pytest.raises(PipelineBusyError, match=f"already running {pipeline.last_run_id}"):
            pipeline.run(FUNCTION, feedback_pairs=feedback(), output_dir=str(tmp_path / "b"))
    finally:
        release.set()
        first.join(120)
    assert results["first"]["status"] == "succeeded" and results["first"]["promoted"]
    # once it ended the same object runs again; each run has its own record
    second = pipeline.run(FUNCTION, feedback_pairs=feedback(), output_dir=str(tmp_path / "b"))
    assert second["run_id"] != results["first"]["run_id"] and pipeline.last_result is second
    runs = {r["run_id"]: r for r in list_runs(function_name=FUNCTION)}
    assert set(runs) == {second["run_id"], results["first"]["run_id"]}
    assert runs[results["first"]["run_id"]]["decision"]["promoted"] and runs[second["run_id"]]["status"] == "succeeded"


def test_bad_function_name_is_rejected(vt_env, tmp_path):
    with pytest.raises(DataError, match="function_name"):
        TrainingPipeline(make_extractor()).run("", output_dir=str(tmp_path))


def test_feedback_on_captured_calls_learns_a_rating_read_from_each_calls_input(vt_env, local_server, tmp_path):
    """Capture -> vt.feedback -> pipeline: the input of each call reaches the synthesiser, so the
    rating line is filled from the new call's prompt, not copied as a constant."""
    from openai import OpenAI

    from vt_middleware.call_context import last_run_id

    client = vt.wrap(OpenAI(base_url=local_server.base_url, api_key="sk-local", max_retries=0), function_name="rate")

    def ask(prompt: str) -> str:
        # sampled: the tiny random model says random words (greedy, it only says newlines)
        answer = client.chat.completions.create(
            model=TINY_ID, max_tokens=6, temperature=1.0, messages=[{"role": "user", "content": prompt}]
        )
        return answer.choices[0].message.content or ""

    for i, stars in enumerate([1, 2, 4, 5, 2, 4, 1, 5, 4, 2]):
        order = f", order {3 * i}" if i % 2 else ""  # the rating is not always the n-th number
        output = ask(f"Ticket {100 + 7 * i}{order}: summarise this review ({stars} stars): item {i} works.")
        vt.flush()
        vt.feedback(last_run_id(), f"{output.rstrip()}\n\nRating: {stars}/5")
    result = TrainingPipeline(make_extractor(), synthesizer_output_dir=vt_env.hooks_dir).run(
        "rate", output_dir=str(tmp_path / "out")
    )
    rating = next(r for r in result["rules"] if r["kind"] == "append")
    assert rating["action"]["parts"][1][0] == "input_match", rating
    assert result["promoted"], result["gate"]["reason"]
    assert ask("Ticket 999: summarise this review (3 stars): a new item.").endswith("\n\nRating: 3/5")


def _derailed_by_guidance(messages: List[Dict[str, Any]]) -> str:
    """A small model: restates the review, but answers with the guidance when a block is added."""
    text = messages[-1]["content"]
    if "Guidance learned" in text:
        return "Guidance learned from corrected answers: remove, add, end the output."
    review = text.split("): ", 1)[-1]
    return review[:1].upper() + review[1:]


def test_gate_retries_without_prompt_rules_when_they_derail_the_model(vt_env, tmp_path):
    from openai import OpenAI

    from scripted_backend import ScriptedBackend
    from vt_middleware.server.runner import LocalServer

    pairs = [p for p, family in make_pairs(140, seed=3) if family == "rating"]
    server = LocalServer(ScriptedBackend(_derailed_by_guidance), data_dir=tmp_path / "server").start()
    try:
        client = OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0)
        pipeline = TrainingPipeline(
            make_extractor(),
            synthesizer_output_dir=vt_env.hooks_dir,
            eval_client=client,
            base_model="scripted",
            monitor=RecordingMonitor(),
        )
        result = pipeline.run("review_summary", feedback_pairs=pairs, output_dir=str(tmp_path / "out"))
    finally:
        server.stop()
    retry = result["gate"]["metrics"]["without_prompt_rules"]
    assert "not better than the incumbent" in retry["first_decision"]
    assert result["promoted"] and result["hook_version"] != retry["first_hook_version"]
    assert {r["kind"] for r in result["rules"]} == {"append"}
    assert get_runtime().current().hook_version == result["hook_version"]
    assert any(e[0] == "log" and "without prompt rules" in e[1] for e in pipeline.monitor.events)
