"""vt_middleware offline demo: an LLM app that evolves itself while it serves requests.

    python examples/demo.py            # SmolLM2-135M on CPU, a few minutes
    python examples/demo.py --quick    # tiny random model, fewer requests (smoke run)

1. Starts the local OpenAI-compatible server (vt_middleware.server) on SmolLM2-135M.
2. The sample app ``generate_review_summary(review)`` runs through ``vt.wrap(OpenAI(...))`` and
   serves a stream of product reviews from several threads; every call is captured into
   LanceDB under ``--dir``.
3. A scripted reviewer reads every answer and corrects the ones that break the support team's
   policy, about one in five: a 1-star review is a complaint about an order, and its summary
   must open with the complaint's category ("Main complaint: overheating.", a judgement that
   differs per review and is not in the text: no text rule can write it) and end with the
   order number (``Order: #4821``, read from the request). Corrections are stored with
   ``vt.feedback(run_id, fixed_output)``.
4. ``vt.Evolver`` runs in its background thread, triggered by the arriving corrections: it
   selects golden data, synthesises hooks, fine-tunes a LoRA adapter, gates the candidate on
   held-out data (four rows: incumbent, new hooks only, new model only, both) and hot-swaps
   the parts that passed, while the app keeps serving.
5. Prints the calls served before and after the swap, the swap moment, the failed calls
   (none), and, on held-out reviews that were never captured, the four-row ablation: the share
   of answers the reviewer would leave as they are and the similarity to the reviewer's fix of each answer.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread: on a small shared CPU, spinning worker threads made each SmolLM2 answer
# 4-5x slower (10-12 s vs 2.2 s per answer at load average 6 on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FUNCTION = "generate_review_summary"
PRODUCTS = [
    "blender",
    "kettle",
    "desk lamp",
    "office chair",
    "toaster",
    "standing desk",
    "wifi router",
    "backpack",
    "rain jacket",
    "monitor",
    "keyboard",
    "speaker",
    "camera",
    "heater",
    "stand mixer",
    "pillow",
]
PROS = ["is sturdy", "is very quiet", "looks elegant", "was easy to set up", "feels well made", "is fast"]
# complaint -> its category, as the support team files it (not a phrase of the review)
COMPLAINTS = {
    "the cable is short": "cable length",
    "it scratches easily": "durability",
    "the manual is confusing": "instructions",
    "it is a bit heavy": "weight",
    "support was slow": "customer service",
    "it runs hot": "overheating",
}
SYSTEM = "You are a helpful assistant. You summarise product reviews in one sentence."
EXAMPLE = [
    {"role": "user", "content": "Summarise this review (4 stars): The mug looks elegant, but it leaks."},
    {"role": "assistant", "content": "The mug looks elegant, but it leaks."},
]
STAR_WEIGHTS = (20, 15, 20, 25, 20)  # 1..5 stars: one review in five is a complaint


@dataclass
class Settings:
    model: str
    live: int  # corrections that trigger the evolution run
    held_out: int
    threads: int
    after_calls: int  # calls served after the swap before the demo stops
    steps: int
    epochs: int
    lr: float
    repeats: int
    max_tokens: int = 40
    max_wait_s: float = 1200.0
    temperature: float = 0.0
    pace_s: float = 0.0  # pause between one thread's requests
    prompt_rules: bool = True


def settings(args: argparse.Namespace) -> Settings:
    from vt_middleware.train.local_models import SMOLLM2_ID, TINY_ID

    if args.quick:
        # the tiny random model says nothing at temperature 0; sampled, it says random words
        base = Settings(
            TINY_ID,
            live=6,
            held_out=6,
            threads=3,
            after_calls=9,
            steps=2,
            epochs=1,
            lr=2e-4,
            repeats=1,
            max_tokens=12,
            max_wait_s=300.0,
            temperature=1.0,
            pace_s=0.1,
            prompt_rules=False,
        )  # it cannot read guidance
    else:
        base = Settings(
            SMOLLM2_ID,
            live=16,
            held_out=12,
            threads=3,
            after_calls=12,
            steps=24,
            epochs=2,
            lr=1e-3,
            repeats=3,
            pace_s=1.0,
        )
    if args.train_steps:
        base.steps = args.train_steps
    if args.corrections:
        base.live = args.corrections
    return base


# --- the app's traffic and its reviewer ------------------------------------------------------
def make_reviews(n: int, seed: int) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    reviews = []
    for i in range(n):
        stars = rng.choices(range(1, 6), weights=STAR_WEIGHTS)[0]
        complaint = rng.choice(list(COMPLAINTS))
        reviews.append(
            {
                "id": f"{seed}-{i}",
                "stars": stars,
                "product": rng.choice(PRODUCTS),
                "pro": rng.choice(PROS),
                "complaint": complaint,
                "order": rng.randint(1000, 9999),
            }
        )
    return reviews


def prompt_of(review: Dict[str, Any]) -> str:
    text = f"The {review['product']} {review['pro']}, but {review['complaint']}."
    if review["stars"] == 1:
        return f"Summarise this review (1 star, order #{review['order']}): {text}"
    return f"Summarise this review ({review['stars']} stars): {text}"


def messages_of(review: Dict[str, Any]) -> List[Dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, *EXAMPLE, {"role": "user", "content": prompt_of(review)}]


def reviewer_fix(output: str, review: Dict[str, Any]) -> str:
    """The reviewer's answer: a complaint opens with its category and ends with its order number."""
    if review["stars"] != 1:
        return output
    text = output.strip()
    opening = f"Main complaint: {COMPLAINTS[review['complaint']]}. "
    closing = f"\n\nOrder: #{review['order']}"
    text = text[len(opening) :] if text.startswith(opening) else text
    text = text[: -len(closing)].rstrip() if text.endswith(closing.strip()) else text
    return f"{opening}{text}{closing}"


@dataclass
class Traffic:
    """What the serving threads saw (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: List[Dict[str, Any]] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    corrections: int = 0
    swaps: List[Dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)


def serve(
    client: Any,
    cfg: Settings,
    reviews: queue.Queue[Dict[str, Any]],
    traffic: Traffic,
    reviewed: queue.Queue[tuple],
    stop: threading.Event,
) -> None:
    """One app thread: answer reviews until told to stop."""
    from vt_middleware.call_context import last_run_id

    while not stop.wait(cfg.pace_s):
        review = reviews.get()
        started = traffic.now()
        try:
            answer = client.chat.completions.create(
                model=cfg.model,
                max_tokens=cfg.max_tokens,
                seed=0,
                temperature=cfg.temperature,
                messages=messages_of(review),
            )
        except Exception as exc:  # noqa: BLE001 - the demo counts failed calls; it expects none
            with traffic.lock:
                traffic.failed.append(f"{type(exc).__name__}: {exc}")
            continue
        text = answer.choices[0].message.content or ""
        with traffic.lock:
            traffic.calls.append(
                {
                    "started": started,
                    "ended": traffic.now(),
                    "model": answer.model,
                    "thread": threading.current_thread().name,
                    "review": review["id"],
                }
            )
        reviewed.put((last_run_id(), text, review))


def review_answers(reviewed: queue.Queue[tuple], traffic: Traffic, stop: threading.Event) -> None:
    """The reviewer: reads every answer, stores a correction where the policy needs one."""
    import vt_middleware as vt

    while not stop.is_set() or not reviewed.empty():
        try:
            run_id, text, review = reviewed.get(timeout=0.2)
        except queue.Empty:
            continue
        fixed = reviewer_fix(text, review)
        if fixed != text and run_id:
            vt.flush(10.0)  # the correction names a captured call: let it land first
            vt.feedback(run_id, fixed)
            with traffic.lock:
                traffic.corrections += 1


# --- the demo ------------------------------------------------------------------------------------
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vt_middleware offline demo (see the module docstring).")
    parser.add_argument("--dir", default=".vt-demo", help="store, hooks and state of the demo (default .vt-demo)")
    parser.add_argument("--quick", action="store_true", help="tiny random model and fewer requests (smoke run)")
    parser.add_argument(
        "--corrections", type=int, default=None, help="corrections that trigger the evolution run (default 16, quick 6)"
    )
    parser.add_argument("--train-steps", type=int, default=None, help="LoRA steps (default 24, quick 2)")
    parser.add_argument("--keep", action="store_true", help="keep earlier demo data instead of starting fresh")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from openai import OpenAI
    from rich.console import Console

    import vt_middleware as vt
    from vt_middleware.server.runner import LocalServer

    console = Console()
    cfg = settings(args)
    root = Path(args.dir)
    if root.exists() and not args.keep:
        shutil.rmtree(root)
    vt.configure(
        store_path=root / "lance", journal_path=root / "journal", hooks_dir=root / "hooks", state_dir=root / "state"
    )
    console.rule(f"vt_middleware demo · model {cfg.model} · {cfg.threads} app threads · data in {root}")
    traffic = Traffic()
    server = LocalServer(model=cfg.model, data_dir=root / "server").start()
    raw_client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
    client = vt.wrap(OpenAI(base_url=server.base_url, api_key="local", max_retries=0), function_name=FUNCTION)
    vt.get_runtime().subscribe(
        lambda old, new: traffic.swaps.append(
            {
                "t": traffic.now(),
                "generation": new.generation,
                "hook_version": new.hook_version,
                "routes": dict(new.routes),
            }
        )
    )
    evolver = make_evolver(cfg, root, server, raw_client, traffic, console)
    stop = threading.Event()
    reviews: queue.Queue[Dict[str, Any]] = queue.Queue()
    for review in make_reviews(2000, seed=7):
        reviews.put(review)
    reviewed: queue.Queue[tuple] = queue.Queue()
    workers = [
        threading.Thread(
            target=serve, name=f"app-{i}", daemon=True, args=(client, cfg, reviews, traffic, reviewed, stop)
        )
        for i in range(cfg.threads)
    ]
    workers.append(
        threading.Thread(target=review_answers, name="reviewer", daemon=True, args=(reviewed, traffic, stop))
    )
    try:
        console.print(
            f"[bold]serving[/]: {cfg.threads} threads answer reviews; the reviewer corrects what breaks "
            f"the policy; the evolver runs after {cfg.live} corrections"
        )
        evolver.start()
        for worker in workers:
            worker.start()
        result = wait_for_evolution(evolver, traffic, cfg, console)
        stop.set()
        for worker in workers:
            worker.join(120)
        evolver.stop(60)
        vt.flush(30.0)
        if result is None:
            console.print(f"[red]the evolution run failed: {evolver.status()['last_error']}[/]")
            return 1
        report = build_report(cfg, traffic, result, raw_client, root)
        print_report(console, report, root)
        (root / "demo_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        return 0 if report["traffic"]["failed"] == 0 and report["swap"] else 1
    finally:
        stop.set()
        evolver.stop(5)
        vt.flush(5.0)
        server.stop()


def make_evolver(cfg: Settings, root: Path, server: Any, raw_client: Any, traffic: Traffic, console: Any) -> Any:
    import vt_middleware as vt
    from vt_middleware.dashboards import PipelineMonitor
    from vt_middleware.evolve.gate import EvaluationGate, GateConfig
    from vt_middleware.evolve.pipeline import TrainingPipeline
    from vt_middleware.extractor import DensityBasedExtractor
    from vt_middleware.train import LocalTrainer

    class StageLines(PipelineMonitor):
        """The evolver's stages as lines between the app's traffic."""

        def on_stage_start(self, stage: str, total: Optional[int] = None) -> None:
            console.print(f"[dim]{traffic.now():7.1f}s[/] evolver: {stage} …")

        def on_stage_complete(self, stage: str, result: Optional[Dict[str, Any]] = None) -> None:
            brief = (result or {}).get("reason") if (result or {}).get("skipped") else _brief(stage, result or {})
            console.print(f"[dim]{traffic.now():7.1f}s[/] evolver: {stage} [green]done[/] {brief}")

        def on_stage_error(self, stage: str, error: Any) -> None:
            console.print(f"[dim]{traffic.now():7.1f}s[/] evolver: {stage} [red]failed[/]: {error}")

    trainer = LocalTrainer(
        root / "models",
        base_model=cfg.model,
        epochs=cfg.epochs,
        max_steps=cfg.steps,
        batch_size=2,
        lr=cfg.lr,
        max_length=160,
    ).register_with(server.backend)
    pipeline = TrainingPipeline(
        # the summaries are alike: near-duplicates only above 0.99, so a few accepted answers are kept
        DensityBasedExtractor(vt.get_store(), epsilon=0.3, top_k=8, dedup_threshold=0.99),
        synthesizer_output_dir=root / "hooks",
        trainer=trainer,
        monitor=StageLines(),
        base_model=cfg.model,
        eval_client=raw_client,
        gate=EvaluationGate(
            config=GateConfig(max_eval_items=8, max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=0)
        ),
        synthesis_options={"prompt_rules": cfg.prompt_rules},
        correction_repeats=cfg.repeats,
        poll_interval=0.5,
        train_timeout=1800,
    )
    return vt.Evolver(
        pipeline,
        FUNCTION,
        min_new_calls=None,
        min_new_feedback=cfg.live,
        check_interval=1.0,
        sync=False,
        output_dir=root / "evolve",
    )


def _brief(stage: str, result: Dict[str, Any]) -> str:
    if stage == "extract":
        return f"{result.get('golden_examples')} golden, {result.get('train')} to train on"
    if stage == "synthesize":
        return f"{result.get('rules')} rules ({result.get('hook_version')})"
    if stage == "train":
        metrics = result.get("metrics") or {}
        return (
            f"{result.get('fine_tuned_model')} (loss {metrics.get('first_train_loss', 0):.2f} → "
            f"{metrics.get('final_train_loss', 0):.2f})"
        )
    if stage in ("evaluate", "promote"):
        return " + ".join(result.get("parts") or []) or "nothing"
    return ""


def wait_for_evolution(evolver: Any, traffic: Traffic, cfg: Settings, console: Any) -> Optional[Dict[str, Any]]:
    """Serve until the evolver's first run ended and ``after_calls`` calls were served after the swap."""
    from vt_middleware.evolve.run_records import load_run

    result = None
    deadline = time.monotonic() + cfg.max_wait_s
    while time.monotonic() < deadline:
        time.sleep(0.1)
        status = evolver.status()
        if result is None and status["runs"] >= 1:
            evolver.stop(0)  # one cycle is the story; the app keeps serving
            run = load_run(status["last_run"]["run_id"])
            if status["last_run"]["status"] != "succeeded":
                return None
            result = run["result"]
            if not result.get("promoted"):
                return result
            console.print(
                f"[dim]{traffic.now():7.1f}s[/] [bold]swapped[/] {' + '.join(result['promoted_parts'])} "
                f"while serving; {len(traffic.calls)} calls so far"
            )
        if result is not None:
            swap_t = traffic.swaps[-1]["t"] if traffic.swaps else None
            with traffic.lock:
                after = [c for c in traffic.calls if swap_t is not None and c["started"] > swap_t]
            if len(after) >= cfg.after_calls:
                return result
    console.print(f"[red]no evolution run ended within {cfg.max_wait_s:.0f}s[/]")
    return result


def build_report(
    cfg: Settings, traffic: Traffic, result: Dict[str, Any], raw_client: Any, root: Path
) -> Dict[str, Any]:
    swap = traffic.swaps[-1] if traffic.swaps else None
    calls = sorted(traffic.calls, key=lambda c: c["started"])
    before = [c for c in calls if swap is None or c["ended"] <= swap["t"]]
    after = [c for c in calls if swap is not None and c["started"] > swap["t"]]
    spanning = [c for c in calls if swap is not None and c["started"] <= swap["t"] < c["ended"]]
    pool = make_reviews(cfg.held_out * 8, seed=99)  # a different stream: never served, never captured
    n_complaints = (2 * cfg.held_out) // 3  # most held-out reviews are complaints: that is where the fixes show
    held = [r for r in pool if r["stars"] == 1][:n_complaints] + [r for r in pool if r["stars"] != 1][
        : cfg.held_out - n_complaints
    ]
    return {
        "model": cfg.model,
        "traffic": {
            "calls": len(calls),
            "before_swap": len(before),
            "after_swap": len(after),
            "spanning_swap": len(spanning),
            "failed": len(traffic.failed),
            "errors": traffic.failed[:3],
            "corrections": traffic.corrections,
            "threads": cfg.threads,
            "models_after": sorted({c["model"] for c in after}),
        },
        "swap": swap,
        "evolution": {
            "run_id": result.get("run_id"),
            "promoted_parts": result.get("promoted_parts"),
            "gate_reason": (result.get("gate") or {}).get("reason"),
            "gate_rows": (result.get("gate") or {}).get("metrics", {}).get("rows"),
            "rules": [r.get("description") for r in result.get("rules") or []],
            "train": {k: (result.get("train") or {}).get(k) for k in ("fine_tuned_model", "status")},
            "loss": _loss(result),
            "steps": cfg.steps,
            "epochs": cfg.epochs,
            "train_examples": result.get("train_examples"),
            "cycle_s": (load_duration(result, root)),
        },
        "held_out": ablation(cfg, held, result, raw_client),
        "total_s": traffic.now(),
    }


def _loss(result: Dict[str, Any]) -> Optional[List[float]]:
    curve = ((result.get("train") or {}).get("metrics") or {}).get("train_loss_curve") or []
    return [round(curve[0], 3), round(curve[-1], 3)] if curve else None


def load_duration(result: Dict[str, Any], root: Path) -> Optional[float]:
    from vt_middleware.evolve.run_records import load_run

    record = load_run(result["run_id"], root / "state")
    return round(sum(s.get("duration_s") or 0 for s in record["stages"].values()), 1)


def ablation(cfg: Settings, held: List[Dict[str, Any]], result: Dict[str, Any], raw_client: Any) -> Dict[str, Any]:
    """The four rows on held-out reviews nobody captured, plus the live app after the swap."""
    import vt_middleware as vt
    from vt_middleware.evolve.gate import ROW_LABELS, Contender, EvalItem, EvaluationGate, GateConfig
    from vt_middleware.runtime.hooks import LoadedHooks
    from vt_middleware.store.embedding import get_embedder

    gate = EvaluationGate(
        client=raw_client, config=GateConfig(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=0)
    )
    items = [EvalItem(messages_of(r), "", "feedback") for r in held]
    hooks = (
        LoadedHooks.from_file(Path(result["hook_script_path"]), result["hook_version"])
        if result.get("hook_version")
        else None
    )
    tuned = (result.get("train") or {}).get("fine_tuned_model") or cfg.model
    cache: Dict[Any, str] = {}
    rows = {
        "incumbent": Contender("incumbent", cfg.model, None),
        "hooks": Contender("hooks", cfg.model, hooks),
        "model": Contender("model", tuned, None),
        "both": Contender("both", tuned, hooks),
    }
    live = vt.get_runtime().current()  # what the app serves now, after the swap
    rows["live"] = Contender("live", live.route(cfg.model), live.hooks)
    answers = {name: gate.answers(c, items, cache, FUNCTION) for name, c in rows.items()}
    embedder = get_embedder("minilm")
    table = {}
    for name, outs in answers.items():  # each answer against what the reviewer would make of it
        fixed = [reviewer_fix(o, r) for o, r in zip(outs, held)]
        ok = [f.strip() == o.strip() for f, o in zip(fixed, outs)]
        similarity = float((embedder.embed(outs) * embedder.embed(fixed)).sum(1).mean())
        table[ROW_LABELS.get(name, "live app after the swap")] = {
            "no_correction": round(sum(ok) / len(held), 3),
            "similarity": round(similarity, 4),
        }
    complaints = sum(r["stars"] == 1 for r in held)
    return {
        "n": len(held),
        "complaints": complaints,
        "rows": table,
        "examples": [
            {"review": prompt_of(r), "before": b, "after": a}
            for r, b, a in zip(held[:2], answers["incumbent"], answers["live"])
        ],
    }


def print_report(console: Any, report: Dict[str, Any], root: Path) -> None:
    from rich.table import Table

    t, swap, evo = report["traffic"], report["swap"], report["evolution"]
    console.rule("what happened")
    console.print(
        f"calls served: {t['calls']} from {t['threads']} threads · before the swap {t['before_swap']} · "
        f"in flight across it {t['spanning_swap']} · after it {t['after_swap']} · "
        f"[bold]failed calls: {t['failed']}[/]"
    )
    if swap:
        console.print(
            f"swap at {swap['t']:.1f}s: generation {swap['generation']}, hooks {swap['hook_version']}, "
            f"routes {swap['routes'] or '{}'}; calls after it answered by {', '.join(t['models_after'])}"
        )
    promoted = " + ".join(evo["promoted_parts"] or []) or "nothing"
    console.print(
        f"corrections stored: {t['corrections']} · promoted: {promoted}"
        f" · evolution cycle {evo['cycle_s']}s · LoRA {evo['steps']} steps, {evo['epochs']} epochs on "
        f"{evo['train_examples']} examples, loss {evo['loss']}"
    )
    console.print(f"gate: {evo['gate_reason']}")
    for rule in evo["rules"]:
        console.print(f"  rule: {rule}")
    gate_rows = Table(title="Gate ablation (held-out split of the captured calls and corrections)")
    for column in ("row", "score", "similarity to corrections", "similarity to accepted answers", "hook exact fixes"):
        gate_rows.add_column(column)
    from vt_middleware.evolve.gate import ROW_LABELS

    for name, row in (evo["gate_rows"] or {}).items():
        gate_rows.add_row(
            ROW_LABELS[name],
            _fmt(row.get("score")),
            _fmt(row.get("similarity_corrected")),
            _fmt(row.get("similarity_accepted")),
            _fmt(row.get("exact_rate")),
        )
    console.print(gate_rows)
    held = report["held_out"]
    table = Table(title=f"Held-out reviews never captured ({held['n']}, {held['complaints']} complaints)")
    for column in ("", "answers needing no correction", "similarity to the reviewer's fix of it"):
        table.add_column(column)
    for name, row in held["rows"].items():
        table.add_row(name, f"{row['no_correction']:.0%}", f"{row['similarity']:.3f}")
    console.print(table)
    for example in held["examples"]:
        console.print(f"[dim]{example['review']}[/]\n  before: {example['before']!r}\n  after:  {example['after']!r}")
    console.print(
        f"whole demo {report['total_s']:.0f}s · explore it: vt --store-path {root}/lance "
        f"--hooks-dir {root}/hooks --state-dir {root}/state dashboard"
    )


def _fmt(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
