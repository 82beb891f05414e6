"""Cross-process capture comparison (``bench_capture.py --only compare``).

The same app workload runs in three processes, in turns: no vt at all, ``vt.wrap``, and
Langfuse's drop-in OpenAI wrapper (``langfuse.openai``, installed by this script into
its own virtual environment under ``.benchmarks/`` with the same openai version; the row
is skipped with a note where that install fails). This process only hosts the model
server (and a sink that answers Langfuse's trace exports), so capture work in an app
process cannot hide in its own baseline.

Per process, the same workload: two openai clients called in turns, the second one wrapped
(vt.wrap or Langfuse) or, in the no-vt process, a second plain client.
- caller-thread cost: one thread, the clients on a mocked HTTP transport (no network, no
  server): the wrapped client's call time minus the plain client's, in the same process,
  and minus the no-vt process's second client, quantile by quantile (plus, for vt, the
  wrapper's own time measured inside it);
- app calls: ``threads`` threads call the local server for ``seconds``; each thread
  alternates a wrapped and an unwrapped call (the unwrapped calls show what capture
  costs the rest of the process); median and p99 of each, calls/s, CPU seconds.
Importing ``langfuse.openai`` instruments the ``openai`` module itself, so in its process
the plain client's calls go to the SDK's own method under Langfuse's wrapper
(``__wrapped__``), untraced. ``--rounds`` repeats the three processes in turns (load drifts).
"""

from __future__ import annotations

import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import venv
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
LANGFUSE = "langfuse==5.0.4"

APP = r"""
import json, os, resource, statistics, sys, threading, time
cfg = json.loads(sys.argv[1])
import httpx, openai

def completion(request):
    body = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "The soup was cold."}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}
    return httpx.Response(200, json=body)

def client(factory, url, mock=False):
    kwargs = {"base_url": url, "api_key": "sk-bench", "max_retries": 0}
    if mock:
        kwargs["http_client"] = httpx.Client(transport=httpx.MockTransport(completion))
    return factory(**kwargs)

mode = cfg["mode"]
probe = None
if mode == "vt":
    sys.path.insert(0, cfg["root"])
    import vt_middleware as vt
    from vt_middleware.capture import openai_wrapper
    vt.configure(store_path=cfg["store"], journal_path=cfg["journal"])
    make = lambda url, mock=False: vt.wrap(client(openai.OpenAI, url, mock), function_name="bench_app")
elif mode == "langfuse":
    from langfuse.openai import OpenAI as LangfuseOpenAI
    make = lambda url, mock=False: client(LangfuseOpenAI, url, mock)
else:
    make = lambda url, mock=False: client(openai.OpenAI, url, mock)  # the same workload, nothing wrapped

def messages(i, tag):
    return [{"role": "system", "content": "You summarise reviews."},
            {"role": "user", "content": "Summarise review %s-%d: the soup was cold and the staff slow." % (tag, i)}]

def call(c, i, tag):
    return c.chat.completions.create(model=cfg["model"], max_tokens=1, messages=messages(i, tag))

if mode == "langfuse":  # the plain client's calls skip Langfuse's instrumentation of the SDK
    from openai.resources.chat.completions import Completions
    _sdk_create = Completions.create.__wrapped__

    def call_plain(c, i, tag):
        return _sdk_create(c.chat.completions, model=cfg["model"], max_tokens=1, messages=messages(i, tag))
else:
    call_plain = call

out = {"mode": mode}
# 1. caller-thread cost on a mocked transport (bare and wrapped in turns, one thread)
bare_m = client(openai.OpenAI, "http://mock/v1", mock=True)
wrapped_m = make("http://mock/v1", mock=True)
for i in range(200):
    call_plain(bare_m, i, "w")
    call(wrapped_m, i, "w")
if mode == "vt":
    openai_wrapper.overhead_probe = probe = []
bare_t, wrapped_t = [], []
for i in range(cfg["mocked_calls"]):
    t = time.perf_counter(); call_plain(bare_m, i, "b"); bare_t.append(time.perf_counter() - t)
    t = time.perf_counter(); call(wrapped_m, i, "m"); wrapped_t.append(time.perf_counter() - t)
if mode == "vt":
    openai_wrapper.overhead_probe = None
out["mock_bare"], out["mock_wrapped"] = bare_t, wrapped_t
out["probe"] = [ns / 1e9 for ns in probe] if probe is not None else []
if mode == "vt":
    vt.flush(30)
# 2. the app: threads call the local server, wrapped and unwrapped calls in turns
bare_s = client(openai.OpenAI, cfg["url"])
wrapped_s = make(cfg["url"])
for i in range(5):
    call_plain(bare_s, i, "warm"); call(wrapped_s, i, "warm")
lat = {"unwrapped": [], "wrapped": []}
lock = threading.Lock()
stop_at = time.monotonic() + cfg["seconds"]
cpu0 = time.process_time()
def loop(t):
    mine = {"unwrapped": [], "wrapped": []}
    i = 0
    while time.monotonic() < stop_at:
        for kind, c, fn in (("unwrapped", bare_s, call_plain), ("wrapped", wrapped_s, call)):
            s = time.perf_counter(); fn(c, i, "t%d" % t); mine[kind].append(time.perf_counter() - s)
        i += 1
    with lock:
        for k in lat: lat[k].extend(mine[k])
start = time.monotonic()
threads = [threading.Thread(target=loop, args=(t,)) for t in range(cfg["threads"])]
for th in threads: th.start()
for th in threads: th.join()
out["elapsed"] = time.monotonic() - start
out["cpu_s"] = time.process_time() - cpu0
out.update(lat)
if mode == "vt":
    t = time.perf_counter(); vt.flush(60); out["flush_s"] = time.perf_counter() - t
    out["stats"] = {k: v for k, v in vt.capture_stats().items() if isinstance(v, (int, float, bool))}
print("RESULT " + json.dumps(out))
"""


def pct(values: List[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _langfuse_python(notes: List[str]) -> Optional[str]:
    """A venv under .benchmarks/ with langfuse and this environment's openai version."""
    import openai

    home = ROOT / ".benchmarks" / "langfuse-venv"
    python = home / "bin" / "python"
    marker = home / f"ready-{LANGFUSE}-openai-{openai.__version__}"
    if marker.exists():
        return str(python)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                LANGFUSE,
                f"openai=={openai.__version__}",
                "httpx",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        notes.append(f"Langfuse row skipped: could not install {LANGFUSE}: {detail.strip().splitlines()[-1:]}")
        return None
    marker.touch()
    return str(python)


class _Sink(http.server.BaseHTTPRequestHandler):
    """Accepts Langfuse's OTLP trace exports (and anything else) with 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


def _run_app(python: str, cfg: Dict, env: Dict[str, str]) -> Tuple[Optional[Dict], str]:
    done = subprocess.run([python, "-c", APP, json.dumps(cfg)], capture_output=True, text=True, env=env, timeout=300)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:]), ""
    return None, (done.stderr.strip().splitlines() or ["no output"])[-1][:100]


def _cost(wrapped: List[float], bare: List[float]) -> List[float]:
    n = min(len(wrapped), len(bare))
    return [w - b for w, b in zip(sorted(wrapped)[:n], sorted(bare)[:n])]


def us(values: List[float]) -> str:
    return f"{statistics.median(values) * 1e6:9.1f} {pct(values, 0.99) * 1e6:9.1f}" if values else "        -         -"


def ms(values: List[float]) -> str:
    return f"{statistics.median(values) * 1e3:9.2f} {pct(values, 0.99) * 1e3:9.2f}"


def bench_compare(seconds: float, threads: int, mocked_calls: int, rounds: int = 2) -> Tuple[list, List[str]]:
    from vt_middleware.server.runner import LocalServer
    from vt_middleware.train.local_models import TINY_ID

    notes: List[str] = []
    rows: list = []
    lf_python = _langfuse_python(notes)
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VECTORWAVE_QUIET": "1",
        "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
        "LANGFUSE_SECRET_KEY": "sk-lf-bench",
        "LANGFUSE_BASE_URL": f"http://127.0.0.1:{sink.server_address[1]}",
        "LANGFUSE_HOST": f"http://127.0.0.1:{sink.server_address[1]}",
    }
    results: Dict[str, List[Dict]] = {"no vt": [], "vt.wrap": [], "langfuse": []}
    with tempfile.TemporaryDirectory() as d, LocalServer(model=TINY_ID, data_dir=Path(d) / "server") as server:
        for r in range(rounds):
            for name, mode, python in (
                ("no vt", "none", sys.executable),
                ("vt.wrap", "vt", sys.executable),
                ("langfuse", "langfuse", lf_python),
            ):
                if python is None:
                    continue
                cfg = {
                    "mode": mode,
                    "root": str(ROOT),
                    "url": server.base_url,
                    "model": TINY_ID,
                    "seconds": seconds,
                    "threads": threads,
                    "mocked_calls": mocked_calls,
                    "store": str(Path(d) / f"lance-{r}"),
                    "journal": str(Path(d) / f"journal-{r}"),
                }
                result, error = _run_app(python, cfg, env)
                if result is None:
                    notes.append(f"{name}: app process failed: {error}")
                else:
                    results[name].append(result)
    sink.shutdown()
    merged = {
        name: {
            k: [v for res in runs for v in res.get(k, [])]
            for k in ("mock_bare", "mock_wrapped", "probe", "unwrapped", "wrapped")
        }
        for name, runs in results.items()
        if runs
    }
    base = merged.get("no vt")
    costs: Dict[str, Tuple[float, float]] = {}  # name -> median cost (same process, vs no-vt process)
    for name, m in merged.items():
        runs = results[name]
        calls = sum(len(r["wrapped"]) + len(r["unwrapped"]) for r in runs)
        elapsed = sum(r["elapsed"] for r in runs)
        cpu = sum(r["cpu_s"] for r in runs)
        same = _cost(m["mock_wrapped"], m["mock_bare"])
        rows.append(
            (
                f"{name}: caller-thread cost, same process",
                us(same),
                "second client's call minus the plain client's, quantile by quantile"
                + (" (both plain: the floor)" if name == "no vt" else ""),
            )
        )
        if name == "no vt" and len(runs) > 1:
            medians = [statistics.median(r["mock_bare"]) * 1e6 for r in runs]
            rows.append(
                (
                    "no vt: plain call, spread between processes",
                    "",
                    f"medians {min(medians):.1f}-{max(medians):.1f} us over {len(runs)} identical processes",
                )
            )
        if base and name != "no vt":
            cross = _cost(m["mock_wrapped"], base["mock_wrapped"])
            rows.append(
                (
                    f"{name}: caller-thread cost vs no-vt process",
                    us(cross),
                    "wrapped call minus the no-vt process's second client's call, quantile by quantile",
                )
            )
            costs[name] = (statistics.median(same), statistics.median(cross))
        if m["probe"]:
            rows.append((f"{name}: wrapper's own time (probe)", us(m["probe"]), "measured inside the wrapper"))
        note = f"{calls / elapsed:.0f} calls/s, CPU {cpu:.1f} s"
        if base and name != "no vt":
            inflation = pct(m["unwrapped"], 0.99) / pct(base["unwrapped"], 0.99) - 1
            note += f"; unwrapped p99 {inflation:+.1%} vs no vt"
        rows.append((f"{name}: app's unwrapped calls (ms)", ms(m["unwrapped"]), note))
        if name != "no vt":
            rows.append((f"{name}: app's wrapped calls (ms)", ms(m["wrapped"]), ""))
        for r in runs:
            if "stats" in r:
                s = r["stats"]
                rows.append(
                    (
                        "vt.wrap: records",
                        "",
                        f"{s.get('written', 0)} written, {s.get('journaled', 0)} "
                        f"journaled, {s.get('dropped', 0)} dropped; flush after the run {r['flush_s']:.2f} s",
                    )
                )
    if "vt.wrap" in costs and "langfuse" in costs:
        (vt_same, vt_cross), (lf_same, lf_cross) = costs["vt.wrap"], costs["langfuse"]
        rows.append(
            (
                "Langfuse / vt.wrap caller-thread cost",
                "",
                f"same process {lf_same / max(vt_same, 1e-9):.1f}x, vs no-vt process {lf_cross / max(vt_cross, 1e-9):.1f}x"
                " (medians)",
            )
        )
    return rows, notes
