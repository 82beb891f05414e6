"""No import-order races: in fresh processes, many threads touch capture and the store for
the first time at once (``@vt.track``, ``vt.get_store()``, ``vt.feedback``, ``vt.flush``,
``vt.capture_stats``); no thread sees an error and every call and correction is stored.
VectorWave's modules import each other in cycles, so concurrent first imports used to hand
threads partially initialised modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "first_use_app.py"
RUNS, THREADS = 3, 16


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    env.update(
        PYTHONPATH=str(REPO),
        VT_STORE_PATH=str(root / "lance"),
        VT_JOURNAL_PATH=str(root / "journal"),
        VT_HOOKS_DIR=str(root / "hooks"),
        VT_STATE_DIR=str(root / "state"),
        VT_EMBEDDING_MODEL="hash",
    )
    return env


@pytest.mark.timeout(900)
def test_many_threads_first_use_at_once_in_fresh_processes(tmp_path):
    # the runs overlap: each one's imports load the machine the others start on
    procs = [
        subprocess.Popen(
            [sys.executable, str(APP), str(THREADS)],
            env=_env(tmp_path / f"run{i}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(RUNS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=800)
        assert proc.returncode == 0, err[-3000:]
        assert "partially initialized" not in err and "ImportError" not in err, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result in results:
        assert result["errors"] == [] and result["internal"] == {}, result
        assert result["flushed"] is True
        assert result["ids"] == result["stored"] == THREADS
        assert result["feedback"] == THREADS // 4
