"""`vt demo --quick` as a user runs it: the sample app serves from several threads while the
evolver, triggered by the reviewer's corrections, learns and hot-swaps mid-traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = ("incumbent", "new hooks only", "new model only", "new model + new hooks")


@pytest.mark.slow
def test_quick_demo_swaps_mid_traffic_without_a_failed_call(tmp_path):
    demo_dir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-c", "from vt_middleware.cli import main; main()", "demo", "--quick", "--dir", str(demo_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    report = json.loads((demo_dir / "demo_report.json").read_text())
    traffic, swap = report["traffic"], report["swap"]
    # zero failed calls, and the app served on both sides of the swap from several threads
    assert traffic["failed"] == 0 and "failed calls: 0" in out
    assert traffic["threads"] >= 3 and traffic["before_swap"] >= 10 and traffic["after_swap"] >= 5
    assert swap["hook_version"] and f"swap at {swap['t']:.1f}s" in out
    # the evolution was triggered by the corrections and promoted the parts its gate passed
    evolution = report["evolution"]
    assert traffic["corrections"] >= 6 and evolution["promoted_parts"] and "hooks" in evolution["promoted_parts"]
    assert (
        swap["hook_version"]
        == json.loads((demo_dir / "state" / "runs" / evolution["run_id"] / "run.json").read_text())["result"][
            "hook_version"
        ]
    )
    assert "Order: #{N}" in " ".join(evolution["rules"])  # the order number is read from each request
    # four rows, in the gate's ablation and on held-out reviews, printed
    assert set(evolution["gate_rows"]) == {"incumbent", "hooks", "model", "both"}
    assert list(report["held_out"]["rows"])[:4] == list(ROWS)
    for table in ("Gate ablation", "Held-out reviews never captured"):
        assert table in out
    for row in ROWS:
        assert out.count(f"│ {row} ") >= 2, row
