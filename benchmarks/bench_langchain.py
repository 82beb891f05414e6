"""LangChain overhead: what vt adds on the caller's thread to an agent step and a chat model call.

    python benchmarks/bench_langchain.py [--calls 2000]

Real LangChain classes with an in-process model (``GenericFakeChatModel``, no HTTP, so the
figures are LangChain's and ours, not the network's). Measured, interleaved in one run:

1. an agent step: ``create_agent(model, [tool]).invoke(...)`` (one model call), bare vs with
   ``vt.AgentMiddleware()``, and with a pass-through ``AgentMiddleware`` (LangChain's own
   middleware machinery, for reference);
2. a chat model ``invoke``: the model vs ``vt.middleware(model)``.

Medians are compared; a difference of p99s is only indicative (tails are scheduling noise
on a loaded machine).

Active hooks (a prompt and an output rule) and routing are on; capture is on (the worker
embeds and writes the records meanwhile). vt's own time inside ``wrap_model_call`` (the
model call excluded) is timed by a probe subclass in an agent of its own, interleaved with
the others, so its timing stays out of the ``vt.AgentMiddleware`` rows. The bare baseline also runs in a separate process that
never imports vt's LangChain support (its run-scope tracker is installed in every
LangChain callback manager of a process that does).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOOKS = (
    "def intercept_prompt(t, c):\n    return t.replace('plz', 'please')\n\n"
    "def intercept_output(t, c):\n    return t.replace('Here is a summary: ', '')\n"
)
PROMPT = {"messages": [{"role": "user", "content": "Summarise plz: the soup was cold but the staff were kind."}]}


def _fake_model() -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class NamedFake(GenericFakeChatModel):
        model_name: str = "bench-model"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # answers without calling them
            return self.bind(tools=[t.name for t in tools])

    return NamedFake(messages=itertools.cycle([AIMessage(content="Here is a summary: cold soup, kind staff.")]))


def _agent(middleware: List[Any]) -> Any:
    """An agent with one tool (a tools node, as real agents have) whose model answers at once."""
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return "shipped"

    return create_agent(_fake_model(), [lookup], middleware=middleware)


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pct(values: List[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bare_only(calls: int) -> Dict[str, List[float]]:
    """Bare agent step and model invoke, in a process without vt's LangChain support."""
    agent, model = _agent([]), _fake_model()
    for _ in range(50):
        agent.invoke(PROMPT), model.invoke(PROMPT["messages"])
    from vt_middleware.capture import langchain_callbacks  # installs the run-scope tracker only

    tracker = langchain_callbacks._tracker_var
    out: Dict[str, List[float]] = {"agent": [], "model": [], "agent_tracker": [], "model_tracker": []}
    for _ in range(calls):  # interleaved: the tracker hidden (as before the import), then shown
        tracker.set(None)
        out["agent"].append(_time(lambda: agent.invoke(PROMPT)))
        out["model"].append(_time(lambda: model.invoke(PROMPT["messages"])))
        tracker.set(langchain_callbacks.SCOPE_TRACKER)
        out["agent_tracker"].append(_time(lambda: agent.invoke(PROMPT)))
        out["model_tracker"].append(_time(lambda: model.invoke(PROMPT["messages"])))
    return out


def in_process(calls: int, tmp: Path) -> Dict[str, List[float]]:
    from langchain.agents.middleware import AgentMiddleware

    import vt_middleware as vt
    from vt_middleware.runtime.hooks import LoadedHooks

    vt.reset(store_path=tmp / "lance", journal_path=tmp / "journal", hooks_dir=tmp / "hooks", state_dir=tmp / "state")
    (tmp / "h.py").write_text(HOOKS)
    vt.get_runtime().activate(
        hooks=LoadedHooks.from_file(tmp / "h.py", "bench"), routes={"bench-model": "bench-model-ft"}
    )
    own: List[float] = []

    class Probe(vt.AgentMiddleware):  # vt's time inside wrap_model_call, the model call excluded
        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            inner = [0.0]

            def timed(req: Any) -> Any:
                t = time.perf_counter()
                result = handler(req)
                inner[0] = time.perf_counter() - t
                return result

            t = time.perf_counter()
            result = super().wrap_model_call(request, timed)
            own.append(time.perf_counter() - t - inner[0])
            return result

    class PassThrough(AgentMiddleware):
        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            return handler(request)

    bare, passthrough = _agent([]), _agent([PassThrough()])
    hooked, probed = (
        _agent([vt.AgentMiddleware(function_name="bench_agent")]),
        _agent([Probe(function_name="bench_agent")]),
    )
    model = _fake_model()
    wrapped = vt.middleware(_fake_model(), function_name="bench_chat")
    for agent in (hooked, probed):  # hooked; the probe measures the real path
        step = agent.invoke(PROMPT)["messages"][-1].content
        assert step == "cold soup, kind staff.", step
    for _ in range(50):
        bare.invoke(PROMPT), passthrough.invoke(PROMPT), hooked.invoke(PROMPT), probed.invoke(PROMPT)
        model.invoke(PROMPT["messages"]), wrapped.invoke(PROMPT["messages"])
    own.clear()
    out: Dict[str, List[float]] = {k: [] for k in ("agent", "agent_pass", "agent_vt", "model", "model_vt")}
    for _ in range(calls):
        out["agent"].append(_time(lambda: bare.invoke(PROMPT)))
        out["agent_pass"].append(_time(lambda: passthrough.invoke(PROMPT)))
        out["agent_vt"].append(_time(lambda: hooked.invoke(PROMPT)))
        probed.invoke(PROMPT)  # vt's own time, taken by the probe (its own timing kept out of the row above)
        out["model"].append(_time(lambda: model.invoke(PROMPT["messages"])))
        out["model_vt"].append(_time(lambda: wrapped.invoke(PROMPT["messages"])))
    out["own"] = list(own)
    assert vt.flush(120)
    stored = sum(len(p) for name in ("bench_agent", "bench_chat") for p in vt.get_store().iter_calls(name))
    out["stored"] = [float(stored)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--bare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_only:
        print(json.dumps(bare_only(args.calls)))
        return
    print(f"load average: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()}); {args.calls} calls each")
    child = subprocess.run(
        [sys.executable, __file__, "--bare-only", "--calls", str(args.calls)],
        capture_output=True,
        text=True,
        check=True,
    )
    separate = json.loads(child.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:
        r = in_process(args.calls, Path(tmp))

    def row(label: str, values: List[float], base: List[float]) -> str:
        m, p = statistics.median(values) * 1e6, pct(values, 0.99) * 1e6
        bm, bp = statistics.median(base) * 1e6, pct(base, 0.99) * 1e6
        return f"| {label} | {m:8.1f} | {p:8.1f} | {m - bm:+8.1f} | {p - bp:+8.1f} |"

    print("\n| caller-thread time (us) | median | p99 | added median | added p99 |")
    print("|---|---|---|---|---|")
    print(row("agent step, bare (same process)", r["agent"], r["agent"]))
    print(row("agent step, bare (own process, no vt)", separate["agent"], r["agent"]))
    print(row("agent step, bare + vt's run-scope tracker (own process)", separate["agent_tracker"], separate["agent"]))
    print(row("agent step, pass-through AgentMiddleware", r["agent_pass"], r["agent"]))
    print(row("agent step, vt.AgentMiddleware vs bare (same process)", r["agent_vt"], r["agent"]))
    print(row("agent step, vt.AgentMiddleware vs bare (own process)", r["agent_vt"], separate["agent"]))
    print(row("agent step, vt.AgentMiddleware vs pass-through", r["agent_vt"], r["agent_pass"]))
    own = r["own"]
    print(
        f"| vt's own time in wrap_model_call | {statistics.median(own) * 1e6:8.1f} | {pct(own, 0.99) * 1e6:8.1f} | | |"
    )
    print(row("chat model invoke, bare (same process)", r["model"], r["model"]))
    print(row("chat model invoke, bare (own process, no vt)", separate["model"], r["model"]))
    print(
        row(
            "chat model invoke, bare + vt's run-scope tracker (own process)",
            separate["model_tracker"],
            separate["model"],
        )
    )
    print(row("chat model invoke, vt.middleware vs bare (same process)", r["model_vt"], r["model"]))
    print(row("chat model invoke, vt.middleware vs bare (own process)", r["model_vt"], separate["model"]))
    expected = args.calls * 3 + 50 * 3 + 2
    print(f"\nrecords stored: {int(r['stored'][0])} / {expected} captured calls")


if __name__ == "__main__":
    main()
