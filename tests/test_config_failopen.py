"""Configuration fails open: bad or misspelt ``VT_*`` variables never reach the host's call
(each is reported once, naming the variable and the default used); bad values passed in
code raise ``ConfigError``; ``vt hooks list`` explains a broken manifest and lists the rest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vt_middleware as vt
from vt_middleware.cli import app
from vt_middleware.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

APP = """
import logging, sys
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
import vt_middleware as vt

@vt.track(function_name="f")
def f(x):
    return x * 2

print("results", [f(i) for i in range(3)])
config = vt.get_config()
print("queue_size", config.queue_size, "flush", config.flush_interval_s, "patterns", config.redact_patterns)
print("flushed", vt.flush(60))
"""


def _run_app(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    base.update(
        PYTHONPATH=str(REPO),
        VT_STORE_PATH=str(tmp_path / "lance"),
        VT_JOURNAL_PATH=str(tmp_path / "j"),
        VT_HOOKS_DIR=str(tmp_path / "hooks"),
        VT_STATE_DIR=str(tmp_path / "state"),
        VT_EMBEDDING_MODEL="hash",
        **env,
    )
    return subprocess.run([sys.executable, "-c", APP], capture_output=True, text=True, timeout=180, env=base)


def test_invalid_and_unknown_env_values_are_reported_once_and_never_raise(tmp_path):
    result = _run_app(
        tmp_path, VT_QUEUE_SIZE="-1", VT_FLUSH_INTERVAL_S="soon", VT_REDACT_PATTERNS="not-json", VT_BATCH_SIZ="8"
    )
    assert result.returncode == 0, result.stderr
    assert "results [0, 2, 4]" in result.stdout
    assert "queue_size 10000 flush 0.5 patterns []" in result.stdout
    assert "flushed True" in result.stdout
    err = result.stderr
    assert err.count("VT_QUEUE_SIZE='-1' is invalid") == 1 and "using the default 10000" in err
    assert err.count("VT_FLUSH_INTERVAL_S='soon' is invalid") == 1 and "using the default 0.5" in err
    assert err.count("VT_REDACT_PATTERNS='not-json' cannot be parsed") == 1
    assert err.count("unknown environment variable VT_BATCH_SIZ") == 1 and "did you mean VT_BATCH_SIZE?" in err
    assert "Traceback" not in err


def test_valid_env_values_are_used_without_warnings(tmp_path):
    result = _run_app(tmp_path, VT_QUEUE_SIZE="7")
    assert result.returncode == 0, result.stderr
    assert "queue_size 7 " in result.stdout
    assert "vt_middleware config" not in result.stderr


def test_invalid_values_in_code_raise_a_clear_config_error(vt_env):
    with pytest.raises(ConfigError, match=r"queue_size=-1: Input should be greater than or equal to 1"):
        vt.configure(queue_size=-1)
    with pytest.raises(ConfigError, match=r"redact_patterns"):
        vt.configure(redact_patterns=["(unclosed"])
    with pytest.raises(ConfigError, match=r"no_such_option"):
        vt.configure(no_such_option=1)


def test_hooks_list_explains_a_broken_manifest_and_lists_the_rest(vt_env):
    from vt_middleware.synthesize.versions import HookVersionStore

    store = HookVersionStore(vt_env.hooks_dir)
    code = "def intercept_prompt(u, c):\n    return u\n\n\ndef intercept_output(o, c):\n    return o\n"
    for _ in range(3):
        store.create_version(code)
    store.activate("v0003")
    (vt_env.hooks_dir / "v0002" / "manifest.json").write_text('{"version": "v0002", "rule_count": ')
    result = CliRunner().invoke(app, ["--hooks-dir", str(vt_env.hooks_dir), "hooks", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ v")}
    assert set(rows) == {"v0001", "v0002", "v0003"}
    assert "broken" in rows["v0002"] and "*" in rows["v0003"]
    flat = " ".join(result.output.split())
    assert "v0002: hook version v0002 has a broken manifest" in flat
    assert "restore the file or delete the folder" in flat
    assert [v["version"] for v in store.list_versions()] == ["v0001", "v0003"]  # callers see usable ones only
