"""CLIDashboard rendered into captured consoles: live terminal view and plain pipe output,
driven by callbacks and by a real TrainingPipeline run."""

from __future__ import annotations

import io
import re

from rich.console import Console

from vt_middleware.dashboard import CLIDashboard, PipelineMonitor

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def drive(dashboard: CLIDashboard) -> None:
    """A run that extracts, synthesises, trains with falling loss, then fails at evaluate."""
    dashboard.on_stage_start("extract")
    dashboard.on_stage_complete(
        "extract",
        {"steady": 7, "anomalies": 3, "golden_examples": 10, "train": 8, "holdout": 2, "path": "/tmp/g.jsonl"},
    )
    dashboard.on_stage_start("synthesize")
    dashboard.on_stage_complete("synthesize", {"skipped": True, "reason": "no feedback pairs"})
    dashboard.on_stage_start("prepare", 1)
    dashboard.on_log("Estimated training cost: $0.0123 for 8 examples")
    dashboard.on_stage_complete(
        "prepare", {"file_id": "file-abc", "cost": {"usd": 0.0123, "summary": "$0.0123 (8 examples)"}}
    )
    dashboard.on_stage_start("train")
    for step in range(1, 21):
        dashboard.on_stage_progress("train", step, 20, metrics={"train_loss": round(3.0 / step, 4)})
    dashboard.on_stage_complete("train", {"job_id": "ftjob-1", "fine_tuned_model": "ft:tiny:vt:1"})
    dashboard.on_stage_start("evaluate")
    dashboard.on_stage_error("evaluate", RuntimeError("gate client unreachable [503]"))


def test_is_a_pipeline_monitor():
    assert issubclass(CLIDashboard, PipelineMonitor)


def test_plain_pipe_has_no_control_codes_and_shows_every_stage():
    buffer = io.StringIO()
    dashboard = CLIDashboard(Console(file=buffer, force_terminal=False, width=120))
    drive(dashboard)
    info = dashboard.summary()
    out = buffer.getvalue()
    assert "\x1b" not in out
    for text in (
        "▶ extract started",
        "✓ extract succeeded",
        "– synthesize skipped",
        "no feedback pairs",
        "Estimated training cost: $0.0123",
        "train 20/20 train_loss=0.1500",
        "✗ evaluate failed",
        "gate client unreachable [503]",
    ):
        assert text in out, text
    # the train lines are thinned out in a pipe, not one per step
    assert 3 <= len(re.findall(r"^  train \d+/20", out, re.M)) <= 11
    # the summary table
    assert "steady 7, anomalies 3, examples 10" in out
    assert "ft:tiny:vt:1" in out and "$0.0123 (8 examples)" in out
    assert "3.0000 → 0.1500" in out
    assert info["fine_tuned_model"] == "ft:tiny:vt:1"
    assert info["errors"] == ["evaluate: RuntimeError: gate client unreachable [503]"]
    assert info["promoted"] is False


def test_terminal_shows_live_bars_loss_and_errors_in_red():
    buffer = io.StringIO()
    dashboard = CLIDashboard(Console(file=buffer, force_terminal=True, color_system="truecolor", width=140))
    drive(dashboard)
    dashboard.summary()
    raw = buffer.getvalue()
    text = ANSI.sub("", raw)
    assert "\x1b[" in raw  # a live, styled view
    assert "━" in text  # progress bars
    assert "train_loss=0.1500" in text
    assert "✗ evaluate failed: RuntimeError: gate client unreachable [503]" in text
    # the error line is styled red (31 = red foreground)
    error_line = next(line for line in raw.splitlines() if "gate client unreachable" in line)
    assert re.search(r"\x1b\[[0-9;]*31m", error_line)
    assert "Pipeline stages" in text and "Outcome" in text


def test_summary_reads_rules_by_kind_from_the_hook_manifest(vt_env):
    from synth_data import make_pairs
    from vt_middleware.synthesize.pipeline import synthesize_version

    pairs = [p for p, family in make_pairs(40, seed=2) if family in ("preamble", "rating")]
    synthesis = synthesize_version(pairs, vt_env.hooks_dir)
    kinds = {r.kind for r in synthesis.rules}
    assert kinds
    buffer = io.StringIO()
    dashboard = CLIDashboard(Console(file=buffer, width=140))
    dashboard.on_stage_start("synthesize")
    dashboard.on_stage_complete(
        "synthesize", {"hook_version": synthesis.version, "rules": len(synthesis.rules), "path": synthesis.hook_path}
    )
    info = dashboard.summary()
    assert set(info["rules_by_kind"]) == kinds
    assert sum(info["rules_by_kind"].values()) == len(synthesis.rules)
    assert synthesis.version in buffer.getvalue()


def test_real_pipeline_run_reports_through_the_dashboard(vt_env):
    """TrainingPipeline (real store, real synthesis, no trainer) drives the dashboard."""
    from synth_data import make_pairs
    from vt_middleware.errors import DataError
    from vt_middleware.evolve.pipeline import TrainingPipeline

    class NoLogs:  # the selection stage's answer for a function with no captured calls
        def select_steady_state(self, function_name):
            raise DataError(f"no logged calls of {function_name!r}")

        select_anomalies = extract_golden_data = select_steady_state

    pairs = [p for p, family in make_pairs(40, seed=4) if family in ("preamble", "rating")]
    buffer = io.StringIO()
    dashboard = CLIDashboard(Console(file=buffer, width=160))
    pipeline = TrainingPipeline(
        NoLogs(), synthesizer_output_dir=vt_env.hooks_dir, monitor=dashboard, state_dir=vt_env.state_dir
    )
    result = pipeline.run("review_summary", feedback_pairs=pairs, output_dir=str(vt_env.state_dir / "out"))
    info = dashboard.summary(result)
    out = buffer.getvalue()
    for stage in ("extract", "synthesize", "prepare", "train", "evaluate", "promote"):
        assert f"{stage} " in out, stage
    assert "no trainer configured" in out
    assert info["hook_version"] == result["hook_version"]
    assert sum(info["rules_by_kind"].values()) == len(result["rules"]) > 0
    assert info["promoted"] == result["promoted"]
    assert ("promote:" if result["promoted"] else "keep incumbent:") in out
