"""Capture benchmarks: caller-thread overhead, throughput, store outage, exit, vs VectorWave.

    python benchmarks/bench_capture.py [--calls 200] [--threads 8] [--per-thread 250]
    python benchmarks/bench_capture.py --only compare [--seconds 15] [--app-threads 4]

1. Latency per chat call against the local server (tiny model, max_tokens=1), bare openai
   client vs vt.wrap, interleaved in the same run while a thread keeps the worker busy;
   plus the wrapper's own time on the caller's thread (excluding the HTTP call).
2. Sustained capture: N threads calling a @vt.track function; records/s written to
   LanceDB with the capture embedder's vectors; written == called; CPU per 1,000 records
   against the same calls with capture off. Then a burst (``--burst``) as fast as the
   threads can call: spilled, dropped, and when the store has caught up.
3. The same with the store failing for the middle of the run (journal, then replay).
4. A subprocess that exits right after its last call (``--exit-calls``): time until it is
   gone, rows in the store and the journal, then the next start's replay.
5. Baseline: VectorWave's own @vectorize (lite mode, same MiniLM model injected as its
   vectorizer): caller-thread latency and rows present after an immediate exit.
6. ``--only api``: per-API latency (chat/responses create, 200-chunk streams, time to first
   chunk), see ``benchmarks/bench_api.py``.
7. ``--only compare``: no vt / vt.wrap / Langfuse in separate processes (capture_compare.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vt_middleware as vt  # noqa: E402
from vt_middleware.types import CallRecord  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def us(values):
    return f"{statistics.median(values) * 1e6:9.1f} {pct(values, 0.99) * 1e6:9.1f}"


def bench_latency(tmp: Path, calls: int) -> list:
    import openai

    from vt_middleware.capture import openai_wrapper
    from vt_middleware.server.runner import LocalServer
    from vt_middleware.train.local_models import TINY_ID

    vt.reset(store_path=tmp / "lat" / "lance", journal_path=tmp / "lat" / "journal")
    rows = []
    with LocalServer(model=TINY_ID, data_dir=tmp / "server") as server:
        bare = openai.OpenAI(base_url=server.base_url, api_key="sk-bench", max_retries=0)
        wrapped = vt.wrap(
            openai.OpenAI(base_url=server.base_url, api_key="sk-bench", max_retries=0), function_name="bench_latency"
        )
        kwargs = dict(
            model=TINY_ID, messages=[{"role": "user", "content": "Summarise: the soup was cold."}], max_tokens=1
        )
        for _ in range(5):
            bare.chat.completions.create(**kwargs), wrapped.chat.completions.create(**kwargs)
        stop = threading.Event()

        def keep_worker_busy():
            from vt_middleware.capture.worker import submit

            while not stop.is_set():
                for i in range(32):
                    submit(CallRecord(function_name="busy", inputs={"args": {"i": i}}, output="x" * 200))
                time.sleep(0.05)

        busy = threading.Thread(target=keep_worker_busy, daemon=True)
        busy.start()
        openai_wrapper.overhead_probe = []
        bare_t, wrapped_t = [], []
        for _ in range(calls):
            t = time.perf_counter()
            bare.chat.completions.create(**kwargs)
            bare_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            wrapped.chat.completions.create(**kwargs)
            wrapped_t.append(time.perf_counter() - t)
        own = [ns / 1e9 for ns in openai_wrapper.overhead_probe]
        openai_wrapper.overhead_probe = None
        stop.set()
        busy.join()
        written_during = vt.capture_stats()["written"]
        vt.flush(60)
        rows.append(("bare openai client, end to end", us(bare_t), ""))
        rows.append(
            (
                "vt.wrap client, end to end",
                us(wrapped_t),
                f"diff of medians {(statistics.median(wrapped_t) - statistics.median(bare_t)) * 1e6:.0f} us",
            )
        )
        rows.append(("vt.wrap own time on caller thread", us(own), f"worker wrote {written_during} rows meanwhile"))
        stored = vt.get_store().count("bench_latency")
        rows.append(("wrapped calls stored", "", f"{stored} of {calls + 5}"))
    return rows


def _produce(n_threads: int, per_thread: int, name: str) -> list:
    """``n_threads`` threads calling a @vt.track function ``per_thread`` times; caller times."""

    @vt.track(function_name=name)
    def answer(question: str, user: int) -> str:
        return f"Answer to {question} for user {user}: the order ships in 3 days."

    caller_times: list = []
    lock = threading.Lock()

    def produce(t: int) -> None:
        local = []
        for i in range(per_thread):
            s = time.perf_counter()
            answer(f"question {i} about order {t * 100_000 + i}", user=t)
            local.append(time.perf_counter() - s)
        with lock:
            caller_times.extend(local)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return caller_times


def _track_run(n_threads: int, per_thread: int, name: str, outage: bool = False) -> tuple:
    from vt_middleware.errors import StoreError

    store = vt.get_store()
    real_write = store.write_calls
    state = {"down": False}
    if outage:

        def flaky(items, fresh=False):
            if state["down"]:
                raise StoreError("store killed")
            return real_write(items, fresh=fresh)

        store.write_calls = flaky

    def kill_store_midway() -> None:  # down once a third is written, for 3 s
        while vt.capture_stats()["written"] < n_threads * per_thread // 3:
            time.sleep(0.05)
        state["down"] = True
        time.sleep(3.0)
        state["down"] = False

    if outage:
        threading.Thread(target=kill_store_midway, daemon=True).start()
    start = time.perf_counter()
    caller_times = _produce(n_threads, per_thread, name)
    calls_done = time.perf_counter() - start
    from vt_middleware.capture import worker

    worker.get_worker().delivery.reset_backoff()
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        vt.flush(30)
        if vt.get_store().count(name) >= n_threads * per_thread:
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - start
    count = vt.get_store().count(name)
    store.write_calls = real_write
    return count, elapsed, calls_done, caller_times, vt.capture_stats()


def bench_throughput(tmp: Path, n_threads: int, per_thread: int, burst: int) -> list:
    rows = []
    total = n_threads * per_thread
    vt.reset(store_path=tmp / "off" / "lance", journal_path=tmp / "off" / "journal", capture_enabled=False)
    cpu = time.process_time()
    _produce(n_threads, per_thread, "bench_off")
    cpu_off = time.process_time() - cpu
    vt.reset(store_path=tmp / "tp" / "lance", journal_path=tmp / "tp" / "journal")
    from vt_middleware.store.embedding import get_embedder

    model = vt.get_config().capture_embedding_model
    get_embedder(model).embed(["warm up"])
    cpu = time.process_time()
    count, elapsed, _, caller, stats = _track_run(n_threads, per_thread, "bench_tp")
    cpu_on = time.process_time() - cpu
    rows.append((f"@vt.track x{n_threads} threads, caller time", us(caller), ""))
    rows.append(
        (
            f"  written to LanceDB (+{model} vectors)",
            f"{count / elapsed:9.0f} rec/s",
            f"{count}/{total} written; CPU {(cpu_on - cpu_off) / count * 1000:.2f} s per 1,000 records "
            f"(process CPU with capture minus the same calls with capture off)",
        )
    )
    vt.reset(store_path=tmp / "burst" / "lance", journal_path=tmp / "burst" / "journal")
    get_embedder(model).embed(["warm up"])
    count, elapsed, calls_done, caller, stats = _track_run(n_threads, burst // n_threads, "bench_burst")
    rows.append(
        (
            f"burst of {burst} calls, caller time",
            us(caller),
            f"calls took {calls_done:.1f} s; {stats['spilled_queue_full']} spilled to the journal "
            f"(queue full), {stats['dropped']} dropped",
        )
    )
    rows.append(
        (
            "  store caught up",
            f"{count / elapsed:9.0f} rec/s",
            f"{count}/{burst} in the store {elapsed:.1f} s after the burst began; replayed {stats['replayed']}",
        )
    )
    vt.reset(store_path=tmp / "out" / "lance", journal_path=tmp / "out" / "journal", strict=False)
    count, elapsed, _, caller, stats = _track_run(n_threads, per_thread, "bench_outage", outage=True)
    rows.append(
        (
            "store killed for middle third",
            f"{count / elapsed:9.0f} rec/s",
            f"{count}/{total} written; journaled {stats['journaled']}, replayed {stats['replayed']}, "
            f"dropped {stats['dropped']}",
        )
    )
    vt.reset()
    return rows


EXIT_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
import vt_middleware as vt
vt.configure(store_path={store!r}, journal_path={journal!r})
@vt.track(function_name="exit_fn")
def f(i):
    return "answer %d" % i
t = time.perf_counter()
for i in range({n}):
    f(i)
print((time.perf_counter() - t) / {n})
print("LAST_CALL", time.time(), flush=True)
"""

VW_SCRIPT = """
import os, sys, time
os.environ["VECTORWAVE_MODE"] = "lite"; os.environ["VECTORWAVE_LITE_PATH"] = {store!r}
os.environ["VECTORWAVE_QUIET"] = "1"; os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, {root!r})
from vt_middleware.store.embedding import get_embedder
embedder = get_embedder("minilm")
class MiniLM:
    def embed(self, text):
        return embedder.embed([text])[0].tolist()
    def embed_batch(self, texts):
        return embedder.embed(texts).tolist()
import vectorwave.monitoring.tracer as tracer
tracer.get_vectorizer = lambda: MiniLM()
from vectorwave import vectorize
@vectorize(capture_return_value=True)
def f(i):
    return "answer %d" % i
f(-1)
t = time.perf_counter()
for i in range({n}):
    f(i)
print((time.perf_counter() - t) / {n})
"""


def _count_lance(store: str, function_name: str) -> int:
    import lancedb

    db = lancedb.connect(store)
    names = getattr(db.list_tables(), "tables", [])
    if "VectorWaveExecutions" not in names:
        return 0
    table = db.open_table("VectorWaveExecutions")
    return sum(1 for p in table.to_arrow()["payload"].to_pylist() if f'"function_name": "{function_name}"' in (p or ""))


def bench_exit(tmp: Path, n: int) -> list:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    store, journal = str(tmp / "exit" / "lance"), str(tmp / "exit" / "journal")
    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT.format(root=str(ROOT), store=store, journal=journal, n=n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    gone = time.time()
    lines = out.stdout.strip().splitlines()
    per_call = float(lines[-2]) if out.returncode == 0 else float("nan")
    exit_s = gone - float(lines[-1].split()[1]) if out.returncode == 0 else float("nan")
    from vt_middleware.capture.journal import Journal

    journaled = Journal(Path(journal)).pending_count()
    stored = _count_lance(store, "exit_fn")
    rows.append(
        (
            "vt @track, exit right after last call",
            f"{per_call * 1e6:9.1f}        -",
            f"process gone {exit_s:.2f} s after the last call; {stored} in the store + {journaled} "
            f"in the journal = {stored + journaled}/{n}",
        )
    )
    vt.reset(store_path=store, journal_path=journal)
    vt.flush(120)
    rows.append(("  next start replays the journal", "", f"{vt.get_store().count('exit_fn')}/{n} in the store"))
    vt.reset()
    vw_store = str(tmp / "vw" / "lance")
    out = subprocess.run(
        [sys.executable, "-c", VW_SCRIPT.format(root=str(ROOT), store=vw_store, n=n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if out.returncode == 0:
        per_call = float(out.stdout.strip().splitlines()[-1])
        rows.append(
            (
                "VectorWave @vectorize (lite), same exit",
                f"{per_call * 1e6:9.1f}        -",
                f"{_count_lance(vw_store, 'f') - 1}/{n} rows after exit",
            )
        )
    else:
        rows.append(("VectorWave @vectorize (lite)", "failed", out.stderr.strip().splitlines()[-1][:80]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=250)
    parser.add_argument("--exit-calls", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="compare: app workload per process")
    parser.add_argument("--app-threads", type=int, default=4, help="compare: app threads")
    parser.add_argument("--mocked-calls", type=int, default=2000, help="compare: caller-cost calls")
    parser.add_argument("--rounds", type=int, default=2, help="compare: the three processes in turns, this often")
    parser.add_argument("--only", choices=("latency", "throughput", "exit", "api", "compare"), help="run one part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = []
        if args.only in (None, "latency"):
            rows += bench_latency(tmp, args.calls)
        if args.only in (None, "throughput"):
            rows += bench_throughput(tmp, args.threads, args.per_thread, args.burst)
        if args.only in (None, "exit"):
            rows += bench_exit(tmp, args.exit_calls)
        if args.only in (None, "api"):  # per-API latency (benchmarks/bench_api.py)
            from bench_api import bench_api, print_rows

            print_rows(bench_api(tmp, args.calls))
        notes: list = []
        if args.only == "compare":  # (not in the default run: three app processes in turns)
            from capture_compare import bench_compare

            compared, notes = bench_compare(args.seconds, args.app_threads, args.mocked_calls, args.rounds)
            rows += compared
    print(f"\n{'measurement':48} {'median':>9} {'p99':>9}  notes (us unless marked)")
    print("-" * 120)
    for name, numbers, note in rows:
        print(f"{name:48} {numbers:>19}  {note}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
