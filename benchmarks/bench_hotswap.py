"""Hot swap under load: 8 threads call the local server (in a child process, so this process
runs only the app and vt_middleware) through ``vt.wrap`` while the promoter promotes and rolls
back N times. Prints failed calls, calls served by a mixed (model, hooks) pair, the app's call
latency during swaps against same-run phases without swaps (before and after), and the latency
of promote and rollback (the whole operation: load check, journaling the record row, swap), of
the reference swap alone, and how far behind the store write of the row follows (in the
background: journaled -> in the store).

    python benchmarks/bench_hotswap.py [--swaps 100] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")

TAG_HOOK = """
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output + " [hook:{tag}]"
"""


SERVER = """
import sys, time
from vt_middleware.server.runner import LocalServer
from vt_middleware.train.local_models import TINY_ID
server = LocalServer(model=TINY_ID, data_dir=sys.argv[1]).start()
for alias in ("app-model", "vt-ft-a", "vt-ft-b"):
    server.backend.alias(alias, TINY_ID)
print(server.base_url, flush=True)
while True:
    time.sleep(60)
"""


def start_server(data_dir: Path):
    """The local model server in a child process; returns (process, base_url)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.DEVNULL,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("http"):
        proc.kill()
        raise SystemExit("the local server did not start")
    return proc, line


def pct(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Load:
    """``threads`` callers through a wrapped client; each checks model <-> hook tag."""

    def __init__(self, client, threads: int) -> None:
        self.client, self.n = client, threads
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: List[float] = []
        self.failed = 0
        self.mixed = 0
        self.served: Dict[str, int] = {}

    def _call(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                response = self.client.chat.completions.create(
                    model="app-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
                )
            except Exception:
                with self.lock:
                    self.failed += 1
                continue
            elapsed = time.perf_counter() - started
            text = response.choices[0].message.content or ""
            tag = text.rsplit("[hook:", 1)[1].rstrip("]") if "[hook:" in text else None
            expected = None if response.model == "app-model" else response.model
            with self.lock:
                self.latencies.append(elapsed)
                self.served[response.model] = self.served.get(response.model, 0) + 1
                self.mixed += int(tag != expected)

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._call, daemon=True) for _ in range(self.n)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--baseline-s", type=float, default=3.0, help="each phase without swaps")
    parser.add_argument("--gap-s", type=float, default=0.02, help="pause between swaps")
    args = parser.parse_args()

    from openai import OpenAI

    import vt_middleware as vt
    from vt_middleware.evolve.swap import Promoter
    from vt_middleware.synthesize.versions import HookVersionStore
    from vt_middleware.train.local_models import TINY_ID

    root = Path(tempfile.mkdtemp(prefix="vt-bench-hotswap-"))
    vt.reset(
        store_path=root / "lance", journal_path=root / "journal", hooks_dir=root / "hooks", state_dir=root / "state"
    )
    proc, base_url = start_server(root / "server")
    versions = HookVersionStore(root / "hooks")
    va = versions.create_version(TAG_HOOK.replace("{tag}", "vt-ft-a"), validation={"ok": True})["version"]
    vb = versions.create_version(TAG_HOOK.replace("{tag}", "vt-ft-b"), validation={"ok": True})["version"]
    client = vt.wrap(OpenAI(base_url=base_url, api_key="sk-local", max_retries=0), function_name="bench")
    promoter = Promoter()
    promoter.promote("app-model", "vt-ft-a", va)
    if hasattr(promoter, "flush_records"):
        promoter.flush_records(60)  # the store opens behind the first promotion: not measured
    load_before = os.getloadavg()[0]

    rows = []
    with Load(client, args.threads):  # warm-up: model load, connection pool, capture worker (not measured)
        time.sleep(2.0)
    with Load(client, args.threads) as before:
        time.sleep(args.baseline_s)
    rows.append(("no swaps (before)", before, [], [], [], args.baseline_s))

    swap_s: List[float] = []
    record_s: List[float] = []
    landed_s: List[float] = []
    promote_s: List[float] = []
    rollback_s: List[float] = []
    with Load(client, args.threads) as load:
        t0 = time.perf_counter()
        for i in range(args.swaps):
            time.sleep(args.gap_s)
            started = time.perf_counter()
            if i % 2 == 0:
                promoter.promote("app-model", "vt-ft-b", vb)
                promote_s.append(time.perf_counter() - started)
            else:
                promoter.rollback()
                rollback_s.append(time.perf_counter() - started)
            swap_s.append(promoter.last_swap_s or 0.0)
            record_s.append(getattr(promoter, "last_record_s", None) or float("nan"))
            records = getattr(promoter, "records", None)
            if records is not None and records.last_landed_s is not None:
                landed_s.append(records.last_landed_s)
        time.sleep(0.2)
        duration = time.perf_counter() - t0
    rows.append((f"{args.swaps} promote/rollback", load, swap_s, promote_s, rollback_s, duration))
    with Load(client, args.threads) as after:
        time.sleep(args.baseline_s)
    rows.append(("no swaps (after)", after, [], [], [], args.baseline_s))
    files_ok = promoter.flush_files(10) if hasattr(promoter, "flush_files") else "n/a"
    landed_ok = promoter.flush_records(30) if hasattr(promoter, "flush_records") else "n/a"
    recorded = len(promoter.promotion_history())
    in_store = len(vt.get_store().promotions())
    proc.kill()
    proc.wait()
    proc.stdout.close()
    vt.reset()

    print(
        f"\nhot swap under load: {args.threads} threads via vt.wrap -> local server in a child process "
        f"({TINY_ID}, max_tokens=2); load {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'phase':<22}{'calls':>7}{'calls/s':>9}{'failed':>7}{'mixed':>6}{'call p50 ms':>12}"
        f"{'call p99 ms':>12}{'swap p50 us':>12}{'promote p50/p99 ms':>20}{'rollback p50/p99 ms':>21}"
    )
    print(header)
    print("-" * len(header))
    for name, result, swaps, promotes, rollbacks, seconds in rows:
        calls = len(result.latencies)
        ops = (
            (
                f"{pct(promotes, 0.5) * 1e3:>10.2f}/{pct(promotes, 0.99) * 1e3:<9.2f}"
                f"{pct(rollbacks, 0.5) * 1e3:>11.2f}/{pct(rollbacks, 0.99) * 1e3:<9.2f}"
            )
            if promotes
            else ""
        )
        print(
            f"{name:<22}{calls:>7}{calls / seconds:>9.1f}{result.failed:>7}{result.mixed:>6}"
            f"{pct(result.latencies, 0.5) * 1e3:>12.1f}{pct(result.latencies, 0.99) * 1e3:>12.1f}"
            f"{pct(swaps, 0.5) * 1e6 if swaps else float('nan'):>12.1f}{ops}"
        )
    print(
        f"served by model during swaps: {dict(sorted(rows[1][1].served.items()))}; "
        f"rows recorded: {recorded}, in the store after the flush: {in_store} (all landed: {landed_ok}); "
        f"derived files flushed: {files_ok}"
    )
    print(
        f"journaling the row inside them: p50 {pct(record_s, 0.5) * 1e3:.2f} ms, p99 {pct(record_s, 0.99) * 1e3:.2f} ms;"
        f" its store write behind them (journaled -> in the store): p50 {pct(landed_s, 0.5) * 1e3:.1f} ms, "
        f"p99 {pct(landed_s, 0.99) * 1e3:.1f} ms"
    )
    print(
        "promote/rollback = the whole operation (hook version check, journaling the row, swap); "
        "the store write, the mirror and ACTIVE files follow in the background"
    )
    quiet = before.latencies + after.latencies
    if load.latencies and quiet:
        print(
            f"call latency during swaps vs without (before+after): mean "
            f"{(statistics.mean(load.latencies) / statistics.mean(quiet) - 1) * 100:+.1f}%, p50 "
            f"{(pct(load.latencies, 0.5) / pct(quiet, 0.5) - 1) * 100:+.1f}%, p99 "
            f"{(pct(load.latencies, 0.99) / pct(quiet, 0.99) - 1) * 100:+.1f}%"
        )


if __name__ == "__main__":
    main()
