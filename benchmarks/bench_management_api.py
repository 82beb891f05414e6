"""Management API latency over HTTP against a real LanceDB store of 10k and 100k captured calls.

For each store size: ``GET /calls`` (first page, a page deep in the store, one function's page)
and ``GET /feedback`` (first page; right after the pairs were written one by one, and after the
compaction the store runs in the background), p50/p95 over ``--repeat`` requests. Same-run baseline:
the whole-table read the dashboards' recent-calls view does (read every call, sort, cut),
in the same process. Then the time from ``POST /pipeline/run`` to the run record being
readable at ``GET /runs/{run_id}`` (a small function, hooks-only cycle).

    python benchmarks/bench_management_api.py [--sizes 10000 100000] [--repeat 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")

import numpy as np  # noqa: E402

TOKEN = "bench-token"
FUNCTIONS = ("summarize", "classify", "translate", "extract")
BATCH = 10_000


def fill_store(n: int, n_feedback: int) -> None:
    """``n`` calls over 4 functions with cheap random unit vectors, written in big batches,
    plus ``n_feedback`` feedback pairs linked to some of them."""
    import vt_middleware as vt
    from vt_middleware.types import CallRecord, FeedbackPair

    store = vt.get_store()
    rng = np.random.default_rng(0)
    linked: List[CallRecord] = []
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        vectors = rng.standard_normal((size, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            CallRecord(
                FUNCTIONS[i % 4],
                {"messages": [{"role": "user", "content": f"request {start + i}"}]},
                f"answer {start + i}",
                kind="openai",
                model_requested="gpt-4o-mini",
            )
            for i in range(size)
        ]
        store.write_calls(
            [{"uuid": r.run_id, "properties": r.to_properties(), "vector": v} for r, v in zip(records, vectors)],
            fresh=True,
        )
        linked.extend(records[: max(1, n_feedback * size // n)])
    for record in linked[:n_feedback]:
        store.add_feedback(
            FeedbackPair(
                input_prompt=str(record.inputs),
                bad_output=record.output or "",
                fixed_output=f"{record.output}!",
                run_id=record.run_id,
                context={"function_name": record.function_name},
            )
        )


def timed(fn: Callable[[], object], repeat: int) -> Dict[str, float]:
    fn()  # warm
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {"p50": statistics.median(samples), "p95": samples[min(len(samples) - 1, int(0.95 * len(samples)))]}


def measure(client, n: int, repeat: int) -> List[tuple]:
    from vt_middleware.api import service

    def get(path: str, **params: object) -> Callable[[], object]:
        def call() -> object:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response.json()

        return call

    rows = [
        ("GET /calls?limit=50 (newest)", timed(get("/calls", limit=50), repeat)),
        ("GET /calls?limit=50&offset=n/2", timed(get("/calls", limit=50, offset=n // 2), repeat)),
        ("GET /calls?function_name=summarize", timed(get("/calls", limit=50, function_name="summarize"), repeat)),
        ("GET /feedback?limit=50 (after a burst of single writes)", timed(get("/feedback", limit=50), repeat)),
        (
            "baseline: read all calls, sort, first 50",
            timed(lambda: service.recent_calls(limit=50), max(3, repeat // 5)),
        ),
    ]
    import vt_middleware as vt
    from vt_middleware.store.executions import FEEDBACK

    vt.get_store().backend.compact(FEEDBACK, timeout=300)  # what the store does in the background
    rows.append(("GET /feedback?limit=50 (compacted)", timed(get("/feedback", limit=50), repeat)))
    return [(n, name, stats) for name, stats in rows]


def run_latency(client, runs: int) -> List[float]:
    """Seconds from POST /pipeline/run to GET /runs/{run_id} answering 200."""
    import vt_middleware as vt
    from vt_middleware.types import CallRecord

    records = [CallRecord("bench_run", {"args": {"i": i}}, f"out {i}") for i in range(20)]
    vt.get_store().write_calls(
        [{"uuid": r.run_id, "properties": r.to_properties(), "vector": None} for r in records], fresh=True
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.post("/pipeline/run", json={"function_name": "bench_run"}, headers=headers).raise_for_status()
        while True:
            run_id = client.get("/pipeline/status").json().get("run_id")
            if run_id and client.get(f"/runs/{run_id}").status_code == 200:
                break
            time.sleep(0.002)
        out.append(time.perf_counter() - t0)
        while client.get("/pipeline/status").json()["busy"]:
            time.sleep(0.05)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--feedback-share", type=float, default=0.01, help="feedback pairs per stored call")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import httpx

    import vt_middleware as vt
    from vt_middleware.api.app import create_app
    from vt_middleware.server.runner import ThreadedServer

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1/5 min), cpus: {os.cpu_count()}")
    results: List[tuple] = []
    run_times: List[float] = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="vt-bench-api-") as root:
            vt.reset(
                store_path=Path(root) / "lance",
                journal_path=Path(root) / "journal",
                hooks_dir=Path(root) / "hooks",
                state_dir=Path(root) / "state",
            )
            t0 = time.perf_counter()
            fill_store(n, int(n * args.feedback_share))
            print(
                f"{n:,} calls + {int(n * args.feedback_share):,} feedback pairs written in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            with (
                ThreadedServer(create_app(token=TOKEN)) as server,
                httpx.Client(base_url=server.url, timeout=120) as client,
            ):
                results += measure(client, n, args.repeat)
                if n == args.sizes[-1] and args.runs:
                    run_times = run_latency(client, args.runs)
            vt.reset()
    print()
    print("| stored calls | request | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for n, name, stats in results:
        print(f"| {n:,} | {name} | {stats['p50']:.1f} | {stats['p95']:.1f} |")
    if run_times:
        print()
        print(
            f"POST /pipeline/run -> run record readable ({len(run_times)} runs, {args.sizes[-1]:,} stored calls): "
            f"median {statistics.median(run_times) * 1000:.0f} ms, max {max(run_times) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
