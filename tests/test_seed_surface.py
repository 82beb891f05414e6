"""The seed's public names and shapes (vector_trainer -> vt_middleware), exercised for real."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest


def _analyzer():
    from vt_middleware.synthesize import FeedbackDiffAnalyzer

    return FeedbackDiffAnalyzer(embedding_model="minilm")


def _load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_types_import_and_behave():
    from vt_middleware.types import CostEstimate, ExecutionLog, FeedbackPair, GoldenCandidate, Rule, SelectionStrategy

    assert SelectionStrategy.STEADY_STATE == "steady" and SelectionStrategy("anomaly") is SelectionStrategy.ANOMALY
    candidate = GoldenCandidate(uuid="u1", density=2.5, return_value="ok", strategy=SelectionStrategy.ANOMALY)
    assert candidate.strategy == "anomaly"
    log = ExecutionLog.from_properties(
        "u1",
        {"function_name": "f", "return_value": "out", "status": "SUCCESS", "inputs": json.dumps({"args": {"x": 1}})},
        vector=np.ones(3),
    )
    assert (log.function_name, log.return_value, log.vector, log.inputs) == (
        "f",
        "out",
        [1.0, 1.0, 1.0],
        {"args": {"x": 1}},
    )
    assert log.to_call_record().run_id == "u1"
    estimate = CostEstimate("gpt-4o-mini", 2, 1000, 3, 3000, 0.009, 3.0, max_budget_usd=0.001)
    assert (estimate.token_count, estimate.n_epochs, estimate.estimated_cost_usd) == (1000, 3, 0.009)
    assert estimate.within_budget is False and estimate.to_dict()["within_budget"] is False
    seed_rule = Rule(
        rule_id="r1",
        description="d",
        condition='output contains "bad"',
        action='Replace "bad" with "good"',
        priority=1,
        source_pair_index=0,
    )
    assert seed_rule.source_pair_index == 0 and seed_rule.is_seed_shape
    assert FeedbackPair("p", "b", "f").run_id is None


@pytest.mark.parametrize(
    "action,text,expected",
    [
        ('Replace "USD " with "$"', "Total: USD 20", "Total: $20"),
        ('Remove: "Here is a summary: "', "Here is a summary: fine", "fine"),
        ('Add: "Rating: 5/5"', "Great product.", "Great product. Rating: 5/5"),
    ],
)
def test_seed_shaped_rules_generate_working_hooks(tmp_path, action, text, expected):
    from vt_middleware.synthesizer import HookScriptGenerator
    from vt_middleware.types import Rule

    rule = Rule(
        rule_id="r1",
        description="seed rule",
        condition='output contains "x"'.replace('"x"', '""'),
        action=action,
        priority=5,
        source_pair_index=0,
    )
    path = HookScriptGenerator().generate([rule], tmp_path / "hooks")
    hook = _load(path, f"seed_hook_{abs(hash(action))}")
    assert hook.intercept_output(text, {}) == expected
    assert hook.intercept_prompt("unchanged", {}) == "unchanged"


def test_seed_rule_with_free_text_action_becomes_prompt_guidance_and_mixes_with_ours(tmp_path):
    from vt_middleware.synthesize import RuleSetSynthesizer
    from vt_middleware.synthesizer import HookScriptGenerator
    from vt_middleware.types import FeedbackPair, Rule

    pairs = [FeedbackPair(f"review {i}", f"Sure! Item {i} is good.", f"Item {i} is good.") for i in range(3)]
    ours = RuleSetSynthesizer(prompt_rules=False).synthesize(_analyzer().analyze_many(pairs))
    assert ours and all(r.source_pair_index in (0, 1, 2) for r in ours)
    seed = Rule("s1", "be brief", "the user asks for a summary", "Answer in one sentence.", priority=1)
    path = HookScriptGenerator().generate([*ours, seed], tmp_path, enable_versioning=False)
    hook = _load(path, "mixed_hook")
    assert hook.intercept_output("Sure! Item 9 is good.", {}) == "Item 9 is good."
    assert hook.intercept_prompt("summarise", {}).endswith("the user asks for a summary: Answer in one sentence.")
    assert not any(p.name.startswith("v0") for p in tmp_path.iterdir())  # no version without versioning


def test_analyzer_returns_seed_diff_segments_and_summary():
    from vt_middleware.types import FeedbackPair

    diff = _analyzer().analyze(FeedbackPair("q", "Price: USD 20 total", "Price: $20 total!"))
    types = [s["type"] for s in diff["diff_segments"]]
    assert "changed" in types and set(types) <= {"added", "removed", "changed"}
    changed = next(s for s in diff["diff_segments"] if s["type"] == "changed")
    assert changed["bad"].startswith("USD") and changed["fixed"].startswith("$")
    assert diff["diff_summary"].startswith(f"{len(types)} change") and "'USD " in diff["diff_summary"]
    same = _analyzer().analyze(FeedbackPair("q", "same", "same"))
    assert same["diff_segments"] == [] and same["diff_summary"] == "no changes"


def test_synthesize_with_llm_names_what_is_missing_and_uses_the_proposer(openai_client):
    from vt_middleware.errors import ConfigError
    from vt_middleware.synthesize import LLMRuleProposer, RuleSetSynthesizer
    from vt_middleware.types import FeedbackPair

    diffs = _analyzer().analyze_many([FeedbackPair("q", "a b", "a c")])
    with pytest.raises(ConfigError, match="client and model missing"):
        RuleSetSynthesizer().synthesize_with_llm(diffs)
    with pytest.raises(ConfigError, match="model missing"):
        RuleSetSynthesizer().synthesize_with_llm(diffs, client=openai_client)
    synthesizer = RuleSetSynthesizer()  # one pair: below min_support, so the LLM is asked
    rules = synthesizer.synthesize_with_llm(diffs, client=openai_client, model="vt-tiny-random")
    assert isinstance(synthesizer.llm, LLMRuleProposer) and synthesizer.llm.last_answer is not None
    assert isinstance(rules, list)


def test_cost_guard_counts_prices_and_raises_the_trainers_error(tmp_path):
    from vt_middleware import cost_guard
    from vt_middleware.errors import BudgetExceededError, ConfigError, DataError
    from vt_middleware.tokens import count_chat_tokens
    from vt_middleware.train import BudgetExceededError as TrainBudgetError

    assert cost_guard.BudgetExceededError is TrainBudgetError is BudgetExceededError
    rows = [
        {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "answer"}]}
        for i in range(4)
    ]
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokens = cost_guard.count_tokens_in_jsonl(path, "gpt-4o-mini-2024-07-18")
    assert tokens == sum(count_chat_tokens(r["messages"], "gpt-4o-mini-2024-07-18") for r in rows)
    assert cost_guard.estimate_training_cost(1_000_000, "gpt-4o-mini-2024-07-18", n_epochs=1) == pytest.approx(3.0)
    assert cost_guard.estimate_training_cost(tokens, "gpt-4o-mini-2024-07-18") == pytest.approx(tokens * 3 * 3e-6)
    ok = cost_guard.check_budget(path, "gpt-4o-mini-2024-07-18", max_budget_usd=1.0)
    assert ok.within_budget and ok.token_count == tokens and ok.n_epochs == 3 and ok.n_examples == 4
    with pytest.raises(BudgetExceededError, match="exceeds the budget"):
        cost_guard.check_budget(10_000_000, "gpt-4o", max_budget_usd=1.0)
    with pytest.raises(ConfigError, match="token_count"):
        cost_guard.estimate_training_cost(-1, "gpt-4o")
    with pytest.raises(ConfigError, match="not in the fine-tuning price table"):
        cost_guard.check_budget(path, "no-such-model", max_budget_usd=1.0)
    with pytest.raises(DataError, match="does not exist"):
        cost_guard.count_tokens_in_jsonl(tmp_path / "missing.jsonl")


def test_hook_version_manager_shares_the_store_the_watcher_follows(vt_env, tmp_path):
    from vt_middleware.synthesize import HookVersionStore
    from vt_middleware.synthesizer import HookScriptGenerator, HookVersionManager
    from vt_middleware.types import Rule

    manager = HookVersionManager()  # the configured hooks_dir
    assert manager.versions_dir == Path(vt_env.hooks_dir) and manager.list_versions() == []
    assert manager.get_active_version() is None
    rule = Rule("r1", "", "", 'Replace "a" with "b"')
    path = HookScriptGenerator().generate([rule], vt_env.hooks_dir)  # versioned by default
    first = manager.get_active_version()
    assert first["version_id"] == "v0001" and first["rules_count"] == 1
    source = Path(path).read_text(encoding="utf-8").replace("HOOK_VERSION = 'v0001'", "HOOK_VERSION = 'mine'")
    second = manager.save_version(source, rules_count=1)
    store = HookVersionStore(vt_env.hooks_dir)
    assert second == "v0002" and store.active_version() == "v0002"
    assert Path(path).read_text(encoding="utf-8") == source  # the seed's script follows the active version
    listed = manager.list_versions()
    assert [v["version_id"] for v in listed] == ["v0001", "v0002"] and [v["active"] for v in listed] == [False, True]
    assert {"timestamp", "rules_count", "path"} <= set(listed[0])
    assert manager.rollback() == "v0001" and store.active_version() == "v0001"
    assert "HOOK_VERSION = 'v0001'" in Path(path).read_text(encoding="utf-8")
    assert manager.rollback("v0002") == "v0002"
    with pytest.raises(ValueError, match="v0009"):
        manager.rollback("v0009")
    with pytest.raises(ValueError, match="not a hook version name"):
        manager.rollback("../etc")
    with pytest.raises(ValueError, match="not valid Python"):
        manager.save_version("def (:", 0)
    assert store.active_version() == "v0002" and len(manager.list_versions()) == 2  # bad input lost nothing


def test_pipeline_monitor_keeps_the_seeds_state():
    from vt_middleware.dashboard import PipelineMonitor

    monitor = PipelineMonitor()
    assert monitor.current_stage is None and monitor.stage_results == {} and monitor.logs == []
    monitor.on_stage_start("extract")
    assert monitor.current_stage == "extract"
    monitor.on_stage_progress("extract", 1, 2, "half")
    monitor.on_log("selected 3")
    monitor.on_stage_complete("extract", {"steady": 3})
    monitor.on_stage_start("train")
    monitor.on_stage_error("train", RuntimeError("boom"))
    summary = monitor.summary()
    assert summary["current_stage"] is None and summary["stages"] == ["extract", "train"]
    assert summary["stage_results"]["extract"]["result"] == {"steady": 3}
    assert summary["stage_results"]["extract"]["progress"]["total"] == 2
    assert summary["completed"] == ["extract"] and summary["failed"] == ["train"]
    assert summary["errors"] == {"train": "RuntimeError: boom"}
    assert [(line["stage"], line["message"]) for line in summary["logs"]] == [
        ("extract", "selected 3"),
        ("train", "train failed: RuntimeError: boom"),
    ]


def test_cli_dashboard_summary_prints_and_returns_the_state():
    from io import StringIO

    from rich.console import Console

    from vt_middleware.dashboard import CLIDashboard

    out = StringIO()
    dashboard = CLIDashboard(console=Console(file=out, width=120))
    dashboard.on_stage_start("extract")
    dashboard.on_log("hello")
    dashboard.on_stage_complete("extract", {"steady": 2, "anomalies": 1, "golden_examples": 3})
    summary = dashboard.summary()
    assert summary["stage_results"]["extract"]["status"] == "succeeded"
    assert summary["golden"]["steady"] == 2 and summary["logs"][0]["message"] == "hello"
    assert "Pipeline stages" in out.getvalue() and "extract" in out.getvalue()


def test_no_logs_gives_empty_selections_and_a_log_line(vt_env, caplog):
    from vt_middleware.extractor import DensityBasedExtractor
    from vt_middleware.store.executions import get_store

    extractor = DensityBasedExtractor(get_store(), epsilon=0.3, top_k=50)
    with caplog.at_level(logging.WARNING, logger="vt_middleware.select"):
        assert extractor.select_steady_state("nothing_logged") == []
        assert extractor.select_anomalies("nothing_logged") == []
    assert "no logged calls of 'nothing_logged'" in caplog.text and "steady-state selection is empty" in caplog.text
