"""Start-up sync cost: how long a fresh process's first ``get_runtime().current()`` takes
(what the first call through ``vt.wrap`` pays) and how long until the promoted routes are
live, when nothing is stored (baseline: never), when the last promotion is mirrored next to a
lite store, and when only the store has it (read in a background thread).

    python benchmarks/bench_boot.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")

PROBE = """
import json, sys, time
t0 = time.perf_counter()
from vt_middleware.runtime.active import get_runtime
t1 = time.perf_counter()
pair = get_runtime().current()
t2 = time.perf_counter()
while sys.argv[1] == "wait" and not pair.routes and time.perf_counter() - t2 < 120:  # a background store read may still land
    time.sleep(0.01)
    pair = get_runtime().current()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_current_s": t2 - t1, "routed_s": t3 - t1, "routes": dict(pair.routes),
                  "hooks": pair.hook_version,
                  "heavy": [m for m in ("vectorwave", "libcst", "torch") if m in sys.modules]}))
"""

HOOK = "def intercept_prompt(t, c):\n    return t\n\n\ndef intercept_output(t, c):\n    return t + ' [x]'\n"


def probe(root: Path, wait: bool) -> Dict[str, object]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "VT_STORE_PATH": str(root / "lance"),
        "VT_HOOKS_DIR": str(root / "hooks"),
        "VT_STATE_DIR": str(root / "state"),
        "VT_CAPTURE_ENABLED": "false",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "wait" if wait else "-"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import vt_middleware as vt
    from vt_middleware.evolve.swap import Promoter
    from vt_middleware.runtime.active import Runtime
    from vt_middleware.synthesize.versions import HookVersionStore

    with tempfile.TemporaryDirectory() as tmp:
        empty, promoted = Path(tmp) / "empty", Path(tmp) / "promoted"
        vt.reset(
            store_path=promoted / "lance",
            hooks_dir=promoted / "hooks",
            state_dir=promoted / "state",
            journal_path=promoted / "journal",
        )
        version = HookVersionStore(promoted / "hooks").create_version(HOOK, validation={"ok": True})["version"]
        promoter = Promoter(runtime=Runtime())
        promoter.promote("base", "ft-1", version)
        promoter.flush_files()  # the mirror is written in the background
        mirror = promoted / "lance" / "VTPromotions.latest.json"
        saved = mirror.read_text()

        rows = []
        for name, root, keep_mirror in (
            ("nothing stored (baseline)", empty, True),
            ("promotion, lite mirror", promoted, True),
            ("promotion, store only", promoted, False),
        ):
            runs = []
            for _ in range(args.repeat):  # the probe's sync re-mirrors the row: reset it each time
                if keep_mirror:
                    mirror.write_text(saved)
                elif mirror.exists():
                    mirror.unlink()
                runs.append(probe(root, wait=root is promoted))
            rows.append(
                (
                    name,
                    statistics.median(r["import_s"] for r in runs),
                    statistics.median(r["first_current_s"] for r in runs),
                    statistics.median(r["routed_s"] for r in runs) if runs[-1]["routes"] else None,
                    runs[-1],
                )
            )

    print(
        f"{'case':28} {'import s':>9} {'first current() s':>18} {'routed after s':>15}  applied"
        "                  heavy imports"
    )
    for name, imp, first, routed, last in rows:
        applied = f"{last['routes'] or '-'} {last['hooks'] or ''}".strip()
        routed_text = "-" if routed is None else f"{routed:.3f}"
        print(f"{name:28} {imp:9.3f} {first:18.3f} {routed_text:>15}  {applied:24} {','.join(last['heavy']) or '-'}")
    print(f"(median of {args.repeat} fresh processes each; load: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
