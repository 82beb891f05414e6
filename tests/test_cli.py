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

COMMANDS = ["serve", "demo", "dashboard", "extract", "synthesize", "train", "evolve", "status", "hooks", "doctor"]
HOOK_COMMANDS = ["list", "show", "rollback"]
REPO = Path(__file__).resolve().parents[1]


def vt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a fresh process (what the `vt` script runs)."""
    return subprocess.run(
        [sys.executable, "-c", "from vt_middleware.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    import vt_middleware as vt
    from dashboard_seed import seed_dashboard_state

    state = seed_dashboard_state(tmp_path_factory.mktemp("cli-seed"))
    yield state
    vt.reset()


def paths(seeded) -> list[str]:
    return [
        "--store-path",
        seeded.env["VT_STORE_PATH"],
        "--hooks-dir",
        seeded.env["VT_HOOKS_DIR"],
        "--state-dir",
        seeded.env["VT_STATE_DIR"],
    ]


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


def test_installed_vt_script_runs_main_and_reports_the_installed_version():
    from importlib.metadata import entry_points, version

    from vt_middleware.cli import main

    (script,) = entry_points(group="console_scripts", name="vt")
    assert script.load() is main
    executable = Path(sys.executable).with_name("vt")
    if not executable.exists():
        pytest.skip(f"no vt script beside {sys.executable} (package not installed in this environment)")
    result = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vt_middleware {version('vt_middleware')}"


def test_no_args_shows_help_and_fails():
    result = vt()
    assert result.returncode != 0
    assert "Usage:" in result.stdout + result.stderr


def test_errors_are_one_clear_line_and_non_zero(tmp_path):
    env = {
        "VT_STORE_PATH": str(tmp_path / "lance"),
        "VT_HOOKS_DIR": str(tmp_path / "hooks"),
        "VT_STATE_DIR": str(tmp_path / "state"),
    }
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
    data.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n"
    )
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


# --- the long-running commands, really run -------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_vt_serve_answers_the_openai_sdk(tmp_path):
    import signal
    import time

    import httpx
    from openai import OpenAI

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from vt_middleware.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--model",
            "vt-tiny-random",
            "--data-dir",
            str(tmp_path / "server"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "vt serve did not come up"
            time.sleep(0.2)
        client = OpenAI(base_url=base_url, api_key="sk-local", max_retries=0)
        assert "vt-tiny-random" in [m.id for m in client.models.list()]
        reply = client.chat.completions.create(
            model="vt-tiny-random", max_tokens=4, messages=[{"role": "user", "content": "Summarise: great phone."}]
        )
        assert reply.model == "vt-tiny-random" and reply.choices[0].finish_reason in ("stop", "length")
        assert isinstance(reply.choices[0].message.content, str) and reply.usage.completion_tokens >= 1
        with pytest.raises(Exception, match="model"):  # an unknown model is a clear 404 over the wire
            client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        client.close()
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down cleanly
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output
    assert f"http://127.0.0.1:{port}/v1" in output and "vt-tiny-random" in output


def test_vt_train_fine_tunes_the_tiny_model(seeded, tmp_path):
    out = tmp_path / "models"
    result = vt(
        "train",
        str(seeded.golden_path),
        "--base-model",
        "vt-tiny-random",
        "--max-steps",
        "2",
        "--output-dir",
        str(out),
        env=seeded.env,
    )
    assert result.returncode == 0, result.stderr
    model_id = result.stdout.strip().splitlines()[-1].removeprefix("fine-tuned model: ")
    assert model_id.startswith("ft:vt-tiny-random:")
    assert "prepare succeeded" in result.stdout and "train succeeded" in result.stdout
    assert "train 2/2 train_loss=" in result.stdout  # progress with the loss, step by step
    adapters = list((out / "models").glob("*/adapter_model.safetensors"))
    assert len(adapters) == 1 and adapters[0].stat().st_size > 0


@pytest.fixture
def evolve_env(tmp_path):
    """A store with 16 captured calls of ``cli_evolve`` (good answers) and feedback on bad ones."""
    import vt_middleware as vt
    from synth_data import make_pairs
    from vt_middleware.store.embedding import get_embedder
    from vt_middleware.store.executions import get_store
    from vt_middleware.types import CallRecord

    config = vt.reset(
        store_path=tmp_path / "lance",
        journal_path=tmp_path / "journal",
        hooks_dir=tmp_path / "hooks",
        state_dir=tmp_path / "state",
        strict=True,
    )
    cases = [p for p, family in make_pairs(60, seed=11) if family in ("preamble", "currency")][:16]
    records = [
        CallRecord(
            "cli_evolve",
            {"messages": [{"role": "user", "content": p.input_prompt}]},
            p.fixed_output,
            kind="openai",
            model_requested="vt-tiny-random",
            model_used="vt-tiny-random",
        )
        for p in cases
    ]
    vectors = get_embedder(config.embedding_model).embed([r.embedding_text() for r in records])
    get_store().write_calls(
        [{"uuid": r.run_id, "properties": r.to_properties(), "vector": v.tolist()} for r, v in zip(records, vectors)]
    )
    for pair in cases:
        pair.context = {"function_name": "cli_evolve"}
        get_store().add_feedback(pair)
    yield {
        "VT_STORE_PATH": str(config.store_path),
        "VT_HOOKS_DIR": str(config.hooks_dir),
        "VT_STATE_DIR": str(config.state_dir),
        "VT_JOURNAL_PATH": str(config.journal_path),
    }
    vt.reset()


def test_vt_evolve_runs_one_cycle_with_training_on_the_local_server(evolve_env, local_server, tmp_path):
    from vt_middleware.train.local_models import TINY_ID

    result = vt(
        "evolve",
        "cli_evolve",
        "--backend",
        "openai",
        "--base-url",
        local_server.base_url,
        "--base-model",
        TINY_ID,
        "--min-group-size",
        "1",
        "--gate-items",
        "2",
        "--gate-max-tokens",
        "4",
        "--output-dir",
        str(tmp_path / "evolve"),
        env=evolve_env,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Pipeline stages" in result.stdout and "gate decision" in result.stdout
    run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("run record: "))
    record = json.loads((run_dir / "run.json").read_text())
    stages = record["stages"]
    assert [
        s for s in ("extract", "synthesize", "prepare", "train", "evaluate") if stages[s]["status"] != "succeeded"
    ] == []
    assert stages["extract"]["result"]["golden_examples"] >= 8
    fine_tuned = stages["train"]["result"]["fine_tuned_model"]
    assert fine_tuned.startswith(f"ft:{TINY_ID}:") and fine_tuned in local_server.backend.list_models()
    assert fine_tuned in result.stdout
    assert Path(record["result"]["golden_data_path"]).stat().st_size > 0
    assert Path(record["result"]["hook_script_path"]).exists()
    assert record["decision"]["promoted"] == (stages["promote"]["status"] == "succeeded")


def test_vt_dashboard_once_prints_status_and_the_last_run(seeded):
    from dashboard_seed import FINE_TUNED

    result = CliRunner().invoke(app, [*paths(seeded), "dashboard", "--once"], terminal_width=200)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "vt status" in out and f"last run {seeded.run_id}" in out
    for heading in ("Pipeline stages", "Outcome", "gate decision"):
        assert heading in out
    assert FINE_TUNED in out and "candidate beats incumbent by 0.29" in out
    train_row = next(line for line in out.splitlines() if line.startswith("│ train "))
    assert "failed" in train_row and "TrainingError: fine-tuning job ftjob-1" in train_row  # as recorded
    assert "streamlit" not in out.lower()  # no server started
