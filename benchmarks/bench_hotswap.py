"""Hot swap under load: 8 threads call the local server through ``vt.wrap`` while the
promoter promotes and rolls back N times. Prints failed calls, calls served by a mixed
(model, hooks) pair, call latency against a same-run baseline without swaps, and swap
latency (the runtime swap alone, and the whole promote/rollback incl. the store record).

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

TAG_HOOK = '''
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output + " [hook:{tag}]"
'''


def pct(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


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
                    model="app-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
            except Exception:  # noqa: BLE001 - counted
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

    def __enter__(self) -> "Load":
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
    parser.add_argument("--baseline-s", type=float, default=3.0)
    parser.add_argument("--gap-s", type=float, default=0.02, help="pause between swaps")
    args = parser.parse_args()

    import vt_middleware as vt
    from openai import OpenAI
    from vt_middleware.evolve.swap import Promoter
    from vt_middleware.server.runner import LocalServer
    from vt_middleware.synthesize.versions import HookVersionStore
    from vt_middleware.train.local_models import TINY_ID

    root = Path(tempfile.mkdtemp(prefix="vt-bench-hotswap-"))
    vt.reset(store_path=root / "lance", journal_path=root / "journal", hooks_dir=root / "hooks",
             state_dir=root / "state")
    server = LocalServer(model=TINY_ID, data_dir=root / "server").start()
    for alias in ("app-model", "vt-ft-a", "vt-ft-b"):
        server.backend.alias(alias, TINY_ID)
    versions = HookVersionStore(root / "hooks")
    va = versions.create_version(TAG_HOOK.replace("{tag}", "vt-ft-a"), validation={"ok": True})["version"]
    vb = versions.create_version(TAG_HOOK.replace("{tag}", "vt-ft-b"), validation={"ok": True})["version"]
    client = vt.wrap(OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0), function_name="bench")
    promoter = Promoter()
    promoter.promote("app-model", "vt-ft-a", va)

    rows = []
    with Load(client, args.threads):  # warm-up: model load, connection pool (not measured)
        time.sleep(1.5)
    with Load(client, args.threads) as baseline:
        time.sleep(args.baseline_s)
    rows.append(("baseline (no swaps)", baseline, [], [], args.baseline_s))

    swap_s: List[float] = []
    op_s: List[float] = []
    with Load(client, args.threads) as load:
        t0 = time.perf_counter()
        for i in range(args.swaps):
            time.sleep(args.gap_s)
            started = time.perf_counter()
            if i % 2 == 0:
                promoter.promote("app-model", "vt-ft-b", vb)
            else:
                promoter.rollback()
            op_s.append(time.perf_counter() - started)
            swap_s.append(promoter.last_swap_s or 0.0)
        time.sleep(0.2)
        duration = time.perf_counter() - t0
    rows.append((f"{args.swaps} promote/rollback", load, swap_s, op_s, duration))
    server.stop()
    vt.reset()

    print(f"\nhot swap under load: {args.threads} threads via vt.wrap -> local server ({TINY_ID}, max_tokens=2)")
    header = (f"{'phase':<24}{'calls':>7}{'calls/s':>9}{'failed':>8}{'mixed':>7}{'call p50 ms':>13}"
              f"{'call p99 ms':>13}{'swap p50 us':>13}{'swap p99 us':>13}{'op p50 ms':>11}{'op p99 ms':>11}")
    print(header)
    print("-" * len(header))
    for name, result, swaps, ops, seconds in rows:
        calls = len(result.latencies)
        print(f"{name:<24}{calls:>7}{calls / seconds:>9.1f}{result.failed:>8}{result.mixed:>7}"
              f"{pct(result.latencies, .5) * 1e3:>13.1f}{pct(result.latencies, .99) * 1e3:>13.1f}"
              f"{pct(swaps, .5) * 1e6:>13.1f}{pct(swaps, .99) * 1e6:>13.1f}"
              f"{pct(ops, .5) * 1e3:>11.2f}{pct(ops, .99) * 1e3:>11.2f}")
    print(f"served by model during swaps: {dict(sorted(rows[1][1].served.items()))}")
    print("swap = Runtime.activate (the atomic pair swap); op = whole promote/rollback incl. the "
          "ACTIVE pointer and the store record")
    if rows[1][1].latencies:
        print(f"mean call latency change vs baseline: "
              f"{(statistics.mean(rows[1][1].latencies) / statistics.mean(baseline.latencies) - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
