"""Per-API caller-thread latency of vt.wrap vs the bare openai client, in the same run.

    python benchmarks/bench_api.py [--calls 300] [--chunks 200] [--streams 30]
    python benchmarks/bench_capture.py --only api      # the same, as part of bench_capture

Against the local server on a scripted backend (no model compute, so HTTP is the floor):
1. ``chat.completions.create`` and ``responses.create``: bare and wrapped calls interleaved;
   the wrapper's own time on the caller's thread (``overhead_probe``: routing, prompt hook,
   snapshot, queueing; the HTTP call excluded) and the end-to-end difference of medians;
   without hooks and with a hook module active.
2. A stream of ``--chunks`` chunks: the wrapper's own time per chunk, measured on chunks
   fetched beforehand (so HTTP noise is out): iterating the bare chunks vs through the
   wrapper's stream proxy, without hooks, with a look-ahead stream processor and with a
   module held to the end; chat chunks and Responses events.
3. Time to first chunk over HTTP: bare vs wrapped (no hooks, stream processor).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vt_middleware as vt  # noqa: E402
from vt_middleware.server.backends import Completion, FaultPlan, StreamedCompletion  # noqa: E402

HOOKS = '''
def intercept_prompt(user_input, context):
    return user_input

def intercept_output(model_output, context):
    return model_output.replace("Here is a summary: ", "") + " Rating: 4/5"
'''
STREAM_HOOKS = HOOKS + '''
OPENER = "Here is a summary: "

class _Stream:
    def __init__(self):
        self.held, self.decided = "", False

    def feed(self, text):
        if self.decided:
            return text
        self.held += text
        if len(self.held) < len(OPENER) and OPENER.startswith(self.held):
            return ""
        self.decided = True
        out, self.held = self.held.replace(OPENER, "", 1), ""
        return out

    def finish(self):
        return self.held + " Rating: 4/5"

def intercept_output_stream(context):
    return _Stream()
'''


class _Backend:
    """Answers at once: a short text, or a stream of ``chunks`` words."""

    def __init__(self, chunks: int) -> None:
        self.chunks, self.faults = chunks, FaultPlan()

    def list_models(self) -> List[str]:
        return ["bench"]

    def has_model(self, model_id: str) -> bool:
        return model_id == "bench"

    def complete(self, params: Any) -> Completion:
        return Completion("The soup was cold.", 8, 5)

    def stream(self, params: Any) -> StreamedCompletion:
        pieces = [f"w{i} " for i in range(self.chunks)]
        return StreamedCompletion(iter(pieces), lambda _t: self.chunks, 8, 1 << 30)


def _us(values: List[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
    return f"{statistics.median(values) * 1e6:9.1f} {p99 * 1e6:9.1f}"


def _activate(tmp: Path, source: str, version: str) -> None:
    from vt_middleware.runtime.hooks import LoadedHooks

    path = tmp / f"{version}.py"
    path.write_text(source)
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(path, version), routes={})


def _calls(bare: Any, wrapped: Any, calls: int, label: str) -> List[tuple]:
    from vt_middleware.capture import openai_wrapper

    apis = {
        "chat.completions.create": lambda c: c.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": "Summarise: the soup was cold."}], max_tokens=4),
        "responses.create": lambda c: c.responses.create(model="bench", input="Summarise: the soup was cold.",
                                                         max_output_tokens=4),
    }
    rows = []
    for name, call in apis.items():
        for _ in range(10):
            call(bare), call(wrapped)
        vt.flush(60)  # the worker's first records (embedder load) are not part of the run
        openai_wrapper.overhead_probe = []
        bare_t, wrapped_t = [], []
        for _ in range(calls):
            t = time.perf_counter()
            call(bare)
            bare_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            call(wrapped)
            wrapped_t.append(time.perf_counter() - t)
        own = [ns / 1e9 for ns in openai_wrapper.overhead_probe]
        openai_wrapper.overhead_probe = None
        diff = (statistics.median(wrapped_t) - statistics.median(bare_t)) * 1e6
        rows.append((f"{name}, {label}: wrapper's own time", _us(own),
                     f"end to end bare {statistics.median(bare_t) * 1e3:.2f} ms, diff of medians {diff:+.0f} us"))
    return rows


def _per_chunk(bare: Any, wrapped: Any, chunks: int, streams: int, label: str) -> List[tuple]:
    """Own time per chunk of the wrapper's stream proxy, on chunks fetched beforehand."""
    from vt_middleware.capture import openai_wrapper
    from vt_middleware.capture.openai_streams import ChatStreamState, RecordingStream, ResponseStreamState
    from vt_middleware.capture.openai_responses import read_response

    class _Fetched:  # a fetched stream: iterates copies of its chunks
        def __init__(self, items: List[Any]) -> None:
            self._it = iter([i.model_copy(deep=True) for i in items])

        def __next__(self) -> Any:
            return next(self._it)

        def close(self) -> None:
            pass

    chat = list(bare.chat.completions.create(model="bench", messages=[{"role": "user", "content": "x"}],
                                             stream=True))
    events = list(bare.responses.create(model="bench", input="x", stream=True))
    rows = []
    for name, items, state_of in (
            ("chat stream", chat, ChatStreamState),
            ("responses stream", events, lambda call: ResponseStreamState(call, read_response))):
        bare_t, wrapped_t = [], []
        for _ in range(streams):
            source = _Fetched(items)
            t = time.perf_counter()
            for _item in iter(source.__next__, None):
                pass
            bare_t.append(time.perf_counter() - t)
            attempt = openai_wrapper._Attempt(openai_wrapper.CHAT, "bench_stream", (),
                                              {"model": "bench", "messages": [{"role": "user", "content": "x"}],
                                               "stream": True})
            proxy = RecordingStream(_Fetched(items), state_of(attempt.call))
            t = time.perf_counter()
            for _item in proxy:
                pass
            wrapped_t.append(time.perf_counter() - t)
        per = [(w - b) / len(items) for w, b in zip(wrapped_t, bare_t)]
        rows.append((f"{name} ({len(items)} items), {label}: added per chunk", _us(per),
                     "includes the record's submit at the end"))
    return rows


def _first_chunk(bare: Any, wrapped: Any, streams: int, label: str) -> List[tuple]:
    """Time from the call to the first chunk, and to the first chunk carrying text, over HTTP."""
    def measure(client: Any) -> tuple:
        t = time.perf_counter()
        stream = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": "x"}],
                                                stream=True)
        first = text = None
        for chunk in stream:
            now = time.perf_counter() - t
            first = now if first is None else first
            if text is None and chunk.choices and chunk.choices[0].delta.content:
                text = now
        return first, text

    for _ in range(3):
        measure(bare), measure(wrapped)
    bare_m, wrapped_m = zip(*[(measure(bare), measure(wrapped)) for _ in range(streams)])
    rows = []
    for i, what in enumerate(("first chunk", "first text chunk")):
        b = [m[i] for m in bare_m]
        w = [m[i] for m in wrapped_m]
        rows.append((f"time to {what}, {label}: bare", _us(b), ""))
        rows.append((f"time to {what}, {label}: wrapped", _us(w),
                     f"diff of medians {(statistics.median(w) - statistics.median(b)) * 1e6:+.0f} us"))
    return rows


def bench_api(tmp: Path, calls: int = 300, chunks: int = 200, streams: int = 30) -> List[tuple]:
    import openai

    from vt_middleware.server.runner import LocalServer

    vt.reset(store_path=tmp / "api" / "lance", journal_path=tmp / "api" / "journal",
             hooks_dir=tmp / "api" / "hooks", state_dir=tmp / "api" / "state")
    rows: List[tuple] = []
    with LocalServer(_Backend(chunks), data_dir=tmp / "api-server") as server:
        bare = openai.OpenAI(base_url=server.base_url, api_key="sk-bench", max_retries=0)
        wrapped = vt.wrap(openai.OpenAI(base_url=server.base_url, api_key="sk-bench", max_retries=0),
                          function_name="bench_api")
        rows += _calls(bare, wrapped, calls, "no hooks")
        rows += _per_chunk(bare, wrapped, chunks, streams, "no hooks")
        rows += _first_chunk(bare, wrapped, streams, "no hooks")
        _activate(tmp, HOOKS, "v0001")
        rows += _calls(bare, wrapped, calls, "hooks")
        rows += _per_chunk(bare, wrapped, chunks, streams, "hooks held to the end")
        _activate(tmp, STREAM_HOOKS, "v0002")
        rows += _per_chunk(bare, wrapped, chunks, streams, "stream processor")
        rows += _first_chunk(bare, wrapped, streams, "stream processor")
        vt.flush(60)
    return rows


def print_rows(rows: List[tuple]) -> None:
    print(f"{'':72} {'median us':>9} {'p99 us':>9}")
    for name, numbers, note in rows:
        print(f"{name:72} {numbers:>19}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--streams", type=int, default=30)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        print_rows(bench_api(Path(tmp), args.calls, args.chunks, args.streams))


if __name__ == "__main__":
    main()
