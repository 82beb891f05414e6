"""Soak: vt.wrap under sustained concurrent load against the local server, bounded in time.

    python benchmarks/bench_soak.py [--seconds 60] [--threads 8] [--tasks 16] [--interval 5]
    python benchmarks/bench_soak.py --seconds 180        # "several minutes" per variant

Two variants, each for ``--seconds``: N threads on a wrapped ``openai.OpenAI`` and an asyncio
variant (M concurrent tasks on a wrapped ``openai.AsyncOpenAI``), both on the local server's
tiny model with ``max_tokens=1``. Baseline in the same run: the bare client, same load, for a
fifth of the time. Per interval: calls/s, end-to-end latency p50/p99, the wrapper's own
caller-thread time p50/p99/max (sync: ``overhead_probe``), capture queue depth, records pending,
journal bytes on disk, process RSS. After a warm-up third, RSS and queue depth must not grow:
the last interval is compared with the first steady one and flagged. At the end every call
must be in the store exactly once (rows == calls, ids unique).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vt_middleware as vt  # noqa: E402
from vt_middleware.capture import openai_wrapper  # noqa: E402

MESSAGES = [{"role": "user", "content": "Summarise: the soup was cold but the staff were kind."}]
DISTINCT = False  # --distinct: every call's prompt differs, so no two records share a vector
_call_no = itertools.count()


def messages() -> List[Dict[str, str]]:
    if not DISTINCT:
        return MESSAGES
    return [{"role": "user", "content": f"{MESSAGES[0]['content']} (table {next(_call_no)})"}]


GROWTH_LIMIT = 0.10  # flag RSS growth above 10% between the first steady and the last interval


def pct(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class Recorder:
    """Latencies and call counts, swapped out per interval (thread-safe enough under the GIL)."""

    def __init__(self) -> None:
        self.latencies: List[float] = []
        self.calls = 0
        self.errors = 0
        self.run_ids: List[str] = []
        self._lock = threading.Lock()

    def done(self, latency: float, run_id: Optional[str]) -> None:
        with self._lock:
            self.latencies.append(latency)
            self.calls += 1
            if run_id is not None:
                self.run_ids.append(run_id)

    def take(self) -> List[float]:
        with self._lock:
            taken, self.latencies = self.latencies, []
        return taken


def sample_loop(
    rec: Recorder, seconds: float, interval: float, journal: Path, rows: List[Dict[str, Any]], stop: threading.Event
) -> None:
    started = last = time.monotonic()
    last_calls = 0
    while not stop.wait(max(0.0, last + interval - time.monotonic())):
        now = time.monotonic()
        probe = openai_wrapper.overhead_probe or []
        openai_wrapper.overhead_probe = []
        latencies = rec.take()
        stats = vt.capture_stats()
        calls = rec.calls
        rows.append(
            {
                "t": now - started,
                "calls_s": (calls - last_calls) / (now - last),
                "p50_ms": pct(latencies, 0.5) * 1e3,
                "p99_ms": pct(latencies, 0.99) * 1e3,
                "ovh_p50_us": pct(probe, 0.5) / 1e3,
                "ovh_p99_us": pct(probe, 0.99) / 1e3,
                "ovh_max_us": (max(probe) / 1e3) if probe else float("nan"),
                "queue": stats.get("queue_depth", 0),
                "pending": stats.get("pending", 0),
                "journal_kib": dir_bytes(journal) / 1024,
                "rss_mib": rss_mib(),
                "written": stats.get("written", 0),
            }
        )
        last, last_calls = now, calls
        if now - started >= seconds:
            break


def run_threads(make_client: Callable[[], Any], threads: int, seconds: float, rec: Recorder, wrapped: bool) -> None:
    from vt_middleware.call_context import last_run_id

    deadline = time.monotonic() + seconds

    def worker() -> None:
        client = make_client()
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                client.chat.completions.create(model=MODEL, messages=messages(), max_tokens=1)
            except Exception:
                rec.errors += 1
                continue
            rec.done(time.perf_counter() - t0, last_run_id() if wrapped else None)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def run_async(make_client: Callable[[], Any], tasks: int, seconds: float, rec: Recorder, wrapped: bool) -> None:
    from vt_middleware.call_context import last_run_id

    async def main() -> None:
        client = make_client()
        deadline = time.monotonic() + seconds

        async def task() -> None:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    await client.chat.completions.create(model=MODEL, messages=messages(), max_tokens=1)
                except Exception:
                    rec.errors += 1
                    continue
                rec.done(time.perf_counter() - t0, last_run_id() if wrapped else None)

        await asyncio.gather(*[task() for _ in range(tasks)])
        await client.close()

    asyncio.run(main())


def soak(
    name: str,
    runner: Callable[..., None],
    make_bare: Callable[[], Any],
    make_wrapped: Callable[[], Any],
    make_warmup: Callable[[], Any],
    concurrency: int,
    seconds: float,
    interval: float,
    tmp: Path,
) -> Dict[str, Any]:
    store, journal = tmp / name / "lance", tmp / name / "journal"
    vt.reset(store_path=store, journal_path=journal, state_dir=tmp / name / "state")
    runner(make_warmup, concurrency, 3.0, Recorder(), False)  # model, embedder, LanceDB table loaded
    vt.flush(120)
    base = Recorder()
    runner(make_bare, concurrency, max(2.0, seconds / 5), base, False)
    rec = Recorder()
    rows: List[Dict[str, Any]] = []
    stop = threading.Event()
    openai_wrapper.overhead_probe = []
    sampler = threading.Thread(target=sample_loop, args=(rec, seconds, interval, journal, rows, stop))
    sampler.start()
    all_latencies: List[float] = []
    original_take = rec.take

    def take_and_keep() -> List[float]:
        taken = original_take()
        all_latencies.extend(taken)
        return taken

    rec.take = take_and_keep  # type: ignore[method-assign]
    started = time.monotonic()
    runner(make_wrapped, concurrency, seconds, rec, True)
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    openai_wrapper.overhead_probe = None
    all_latencies.extend(original_take())
    t0 = time.monotonic()
    drained = vt.flush(120)
    drain_s = time.monotonic() - t0
    ids = [c.uuid for page in vt.get_store().iter_calls("soak") for c in page]
    print(f"\n== {name}: concurrency {concurrency}, {seconds:.0f}s (interval table) ==")
    print(
        f"{'t(s)':>6} {'calls/s':>8} {'p50ms':>7} {'p99ms':>7} {'ovh p50us':>9} {'ovh p99us':>9} "
        f"{'ovh max':>8} {'queue':>6} {'pend':>5} {'jrnlKiB':>8} {'RSS MiB':>8} {'written':>8}"
    )
    for r in rows:
        print(
            f"{r['t']:6.0f} {r['calls_s']:8.1f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['ovh_p50_us']:9.1f} "
            f"{r['ovh_p99_us']:9.1f} {r['ovh_max_us']:8.0f} {r['queue']:6d} {r['pending']:5d} "
            f"{r['journal_kib']:8.1f} {r['rss_mib']:8.1f} {r['written']:8d}"
        )
    steady = rows[len(rows) // 3 :] if len(rows) >= 3 else rows
    growth = (steady[-1]["rss_mib"] - steady[0]["rss_mib"]) / steady[0]["rss_mib"] if steady else float("nan")
    queue_end = steady[-1]["queue"] if steady else 0
    verdict = "GROWING" if growth > GROWTH_LIMIT else "flat"
    queue_start = steady[0]["queue"] if steady else 0
    span = (steady[-1]["t"] - steady[0]["t"]) if len(steady) > 1 else 0.0
    queue_rate = (queue_end - queue_start) / span if span else 0.0  # records/s the worker falls behind
    backlog = queue_end > 4 * vt.get_config().batch_size  # a few batches queued is normal jitter
    queue_verdict = f"GROWING {queue_rate:+.0f}/s" if queue_rate > 1.0 and backlog else "flat"
    base_tp = base.calls / max(2.0, seconds / 5)
    summary = {
        "variant": name,
        "calls": rec.calls,
        "errors": rec.errors,
        "calls_s": rec.calls / elapsed,
        "bare_calls_s": base_tp,
        "p50_ms": pct(all_latencies, 0.5) * 1e3,
        "p99_ms": pct(all_latencies, 0.99) * 1e3,
        "bare_p50_ms": pct(base.latencies, 0.5) * 1e3,
        "bare_p99_ms": pct(base.latencies, 0.99) * 1e3,
        "rss_growth": growth,
        "verdict": verdict,
        "queue_verdict": queue_verdict,
        "queue_end": queue_end,
        "drained": drained,
        "drain_s": drain_s,
        "stored": len(ids),
        "unique": len(set(ids)),
        "ids_match": sorted(ids) == sorted(rec.run_ids),
        "max_queue": max((r["queue"] for r in rows), default=0),
        "max_journal_kib": max((r["journal_kib"] for r in rows), default=0.0),
    }
    print(
        f"bare {base_tp:.1f} calls/s p50 {summary['bare_p50_ms']:.2f} ms p99 {summary['bare_p99_ms']:.2f} ms | "
        f"wrapped {summary['calls_s']:.1f} calls/s p50 {summary['p50_ms']:.2f} ms p99 {summary['p99_ms']:.2f} ms | "
        f"RSS steady growth {growth * 100:+.1f}% ({verdict}), queue {queue_start}->{queue_end} ({queue_verdict}) | stored {len(ids)}/{rec.calls} "
        f"unique={len(set(ids)) == len(ids)} ids match={summary['ids_match']} drained in {drain_s:.2f}s"
    )
    return summary


MODEL = ""


class ServerProcess:
    """``vt serve`` in a child process, so the RSS measured is the app's alone."""

    def __init__(self, model: str, data_dir: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._argv = [
            sys.executable,
            "-c",
            "from vt_middleware.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--model",
            model,
            "--data-dir",
            str(data_dir),
        ]
        self._proc: Any = None

    def __enter__(self) -> ServerProcess:
        import subprocess

        import httpx

        self._proc = subprocess.Popen(
            self._argv,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # access log
        deadline = time.monotonic() + 120
        while True:
            if self._proc.poll() is not None:
                raise SystemExit("vt serve exited before answering")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("vt serve did not come up within 120 s")
            time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        import signal

        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=30)
        except Exception:
            self._proc.kill()


def main() -> None:
    global MODEL, DISTINCT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each variant (default 60)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=16, help="concurrent asyncio tasks")
    parser.add_argument("--interval", type=float, default=None, help="sampling interval (default seconds/10)")
    parser.add_argument(
        "--distinct", action="store_true", help="a different prompt per call (no repeated texts for the embedder)"
    )
    parser.add_argument("--only", choices=("threads", "asyncio"), help="run one variant")
    parser.add_argument(
        "--server-thread",
        action="store_true",
        help="run the local model server inside this process (RSS then includes the server)",
    )
    args = parser.parse_args()
    if args.threads < 1 or args.tasks < 1 or args.seconds <= 0:
        parser.error("--threads, --tasks and --seconds must be positive")
    interval = args.interval or max(1.0, args.seconds / 10)
    DISTINCT = args.distinct

    import openai

    from vt_middleware.server.runner import LocalServer
    from vt_middleware.train.local_models import TINY_ID

    MODEL = TINY_ID
    results = []
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        (LocalServer if args.server_thread else ServerProcess)(model=TINY_ID, data_dir=Path(tmp_dir) / "srv") as srv,
    ):
        tmp = Path(tmp_dir)

        def bare() -> Any:
            return openai.OpenAI(base_url=srv.base_url, api_key="sk-soak", max_retries=0)

        def wrapped() -> Any:
            return vt.wrap(bare(), function_name="soak")

        def warm() -> Any:
            return vt.wrap(bare(), function_name="soak_warmup")

        def awarm() -> Any:
            return vt.wrap(abare(), function_name="soak_warmup")

        def abare() -> Any:
            return openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-soak", max_retries=0)

        def awrapped() -> Any:
            return vt.wrap(abare(), function_name="soak")

        if args.only in (None, "threads"):
            results.append(soak("threads", run_threads, bare, wrapped, warm, args.threads, args.seconds, interval, tmp))
        if args.only in (None, "asyncio"):
            results.append(soak("asyncio", run_async, abare, awrapped, awarm, args.tasks, args.seconds, interval, tmp))
        vt.reset()
    print("\n== summary ==")
    print(
        f"{'variant':8} {'calls':>7} {'err':>4} {'calls/s':>8} {'bare/s':>7} {'p50ms':>6} {'bare p50':>8} "
        f"{'p99ms':>6} {'bare p99':>8} {'maxQ':>5} {'maxJ KiB':>8} {'RSS grow':>8} {'queue trend':>14} {'stored':>7} {'exact':>5}"
    )
    for r in results:
        exact = r["stored"] == r["calls"] == r["unique"] and r["ids_match"]
        print(
            f"{r['variant']:8} {r['calls']:7d} {r['errors']:4d} {r['calls_s']:8.1f} {r['bare_calls_s']:7.1f} "
            f"{r['p50_ms']:6.2f} {r['bare_p50_ms']:8.2f} {r['p99_ms']:6.2f} {r['bare_p99_ms']:8.2f} "
            f"{r['max_queue']:5d} {r['max_journal_kib']:8.1f} {r['rss_growth'] * 100:+7.1f}% {r['queue_verdict']:>14} {r['stored']:7d} "
            f"{exact!s:>5}"
        )


if __name__ == "__main__":
    main()
