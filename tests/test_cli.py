"""The `vt` command as a user runs it: help everywhere, exit codes, clear errors, and the
status/hooks/synthesize commands against a seeded store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vt_middleware.cli import app

COMMANDS = ["serve", "demo", "dashboard", "extract", "synthesize", "train", "evolve", "status", "hooks"]
HOOK_COMMANDS = ["list", "show", "rollback"]
REPO = Path(__file__).resolve().parents[1]


def vt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a fresh process (what the `vt` script runs)."""
    return subprocess.run([sys.executable, "-c", "from vt_middleware.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    from dashboard_seed import seed_dashboard_state

    import vt_middleware as vt

    state = seed_dashboard_state(tmp_path_factory.mktemp("cli-seed"))
    yield state
    vt.reset()


def paths(seeded) -> list[str]:
    return ["--store-path", seeded.env["VT_STORE_PATH"], "--hooks-dir", seeded.env["VT_HOOKS_DIR"],
            "--state-dir", seeded.env["VT_STATE_DIR"]]


def test_top_level_help_lists_every_command():
    result = vt("--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", [[c] for c in COMMANDS] + [["hooks", h] for h in HOOK_COMMANDS])
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output


def test_pyproject_script_points_at_main():
    text = (REPO / "pyproject.toml").read_text()
    assert 'vt = "vt_middleware.cli:main"' in text


def test_no_args_shows_help_and_fails():
    result = vt()
    assert result.returncode != 0
    assert "Usage:" in result.stdout + result.stderr


def test_errors_are_one_clear_line_and_non_zero(tmp_path):
    env = {"VT_STORE_PATH": str(tmp_path / "lance"), "VT_HOOKS_DIR": str(tmp_path / "hooks"),
           "VT_STATE_DIR": str(tmp_path / "state")}
    result = vt("synthesize", env=env)
    assert result.returncode == 1
    assert "error: DataError: no feedback pairs" in result.stderr
    assert "Traceback" not in result.stderr
    result = vt("hooks", "rollback", env=env)
    assert result.returncode == 1 and "nothing to roll back to" in result.stderr
    result = vt("hooks", "show", env=env)
    assert result.returncode == 1 and "no active hook version" in result.stderr
    result = vt("train", str(tmp_path / "missing.jsonl"), env=env)
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = vt("train", str(tmp_path), env=env)  # a directory, not a file
    assert result.returncode == 2


def test_train_rejects_an_unknown_backend(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    result = CliRunner().invoke(app, ["train", str(data), "--backend", "gpu-cloud"])
    assert result.exit_code == 1
    assert "--backend must be 'local' or 'openai'" in result.output


def test_status_reports_the_seeded_store(seeded):
    result = CliRunner().invoke(app, [*paths(seeded), "status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["calls"] == {"generate_review_summary": len(seeded.call_ids)}
    assert info["feedback_pairs"] == len(seeded.call_ids)
    assert info["hook_versions"] == seeded.versions
    assert info["active_hook_version"] == seeded.versions[-1]
    assert info["runs"][0]["run_id"] == seeded.run_id
    assert info["evolver"]["triggers"]["min_new_calls"] == 50
    table = CliRunner().invoke(app, [*paths(seeded), "status"])
    assert table.exit_code == 0 and seeded.run_id in table.output


def test_hooks_list_and_show(seeded):
    result = CliRunner().invoke(app, [*paths(seeded), "hooks", "list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ v")}
    assert set(lines) == set(seeded.versions)
    assert "*" in lines[seeded.versions[-1]] and "*" not in lines[seeded.versions[0]]
    shown = CliRunner().invoke(app, [*paths(seeded), "hooks", "show", seeded.versions[0]])
    assert shown.exit_code == 0, shown.output
    assert "def intercept_output" in shown.output
    assert "rules of hook version v0001" in shown.output
    bad = CliRunner().invoke(app, [*paths(seeded), "hooks", "show", "v9999"])
    assert bad.exit_code == 1 and "v9999 does not exist" in bad.output


def test_synthesize_then_rollback_change_the_active_version_on_disk(seeded):
    from vt_middleware.synthesize.versions import HookVersionStore

    store = HookVersionStore(seeded.env["VT_HOOKS_DIR"])
    result = CliRunner().invoke(app, [*paths(seeded), "synthesize", "--function", "generate_review_summary"])
    assert result.exit_code == 0, result.output
    assert "hook version v0003 (not active)" in result.output
    assert (Path(seeded.env["VT_HOOKS_DIR"]) / "v0003" / "manifest.json").exists()
    assert store.active_version() == seeded.versions[-1]
    rolled = CliRunner().invoke(app, [*paths(seeded), "hooks", "rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert store.active_version() == seeded.versions[0]
    assert "active hook version: v0001" in rolled.output
    to = CliRunner().invoke(app, [*paths(seeded), "hooks", "rollback", "--to", "v0003"])
    assert to.exit_code == 0 and store.active_version() == "v0003"
