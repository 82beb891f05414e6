"""`vt demo --quick` as a user runs it: the offline demo end to end on the tiny model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_runs_one_cycle_and_reports_before_after(tmp_path):
    demo_dir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-c", "from vt_middleware.cli import main; main()", "demo", "--quick", "--dir", str(demo_dir)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for text in ("Pipeline stages", "Outcome", "gate decision", "Held-out quality", "answers needing no correction"):
        assert text in out, text
    report = json.loads((demo_dir / "demo_report.json").read_text())
    assert report["n"] >= 4
    # the reviewer's systematic fix (a rating line) is learned: held-out answers get closer to the corrections
    assert report["after"]["similarity"] > report["before"]["similarity"]
    assert report["after"]["fix_rate"] >= report["before"]["fix_rate"]
    runs = list((demo_dir / "state" / "runs").glob("*/run.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["status"] == "succeeded"
