"""vt_middleware offline demo: an LLM app that improves itself while it runs.

    python examples/demo.py            # SmolLM2-135M on CPU, a few minutes
    python examples/demo.py --quick    # tiny random model, fewer requests (smoke run)

1. Starts the local OpenAI-compatible server (vt_middleware.server) on SmolLM2-135M.
2. Runs the sample app ``generate_review_summary(review)`` through ``vt.wrap(OpenAI(...))``
   over a stream of product reviews; every call is captured into LanceDB under ``--dir``.
   The app's prompt carries a chatty example answer, so the model opens with filler.
3. A scripted reviewer corrects the answers, with two systematic fixes a real reviewer of this
   app would make: remove filler phrases ("Sure! Here is a summary:", "As an AI language model,")
   and end with the review's star rating as a "Rating: N/5" line (N from the review's prompt).
   Corrections are stored with ``vt.feedback(run_id, fixed_output)``.
4. Runs one evolution cycle (TrainingPipeline: extract, synthesize, prepare, LoRA train,
   evaluate, promote) with the rich CLI dashboard. On SmolLM2 the learned prompt guidance derails
   the 135M model, so the gate rejects the first candidate and promotes its output rules alone.
5. Replays held-out reviews (never corrected) and prints quality before vs after: the share of
   answers the reviewer would not need to fix, and the embedding similarity to the reviewer's
   corrected answers. The "before" answers are asked without capture (no hooks or routes are
   active yet, so the wrapped app would send the same request), so the held-out reviews never
   reach the logs that the evolution cycle learns from.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VECTORWAVE_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread: on a small shared CPU, spinning worker threads made each SmolLM2 answer
# 4-5x slower (10-12 s vs 2.2 s per answer at load average 6 on 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FUNCTION = "generate_review_summary"
PRODUCTS = ["blender", "kettle", "desk lamp", "office chair", "toaster", "standing desk", "wifi router", "backpack",
            "rain jacket", "monitor", "keyboard", "speaker", "camera", "heater", "stand mixer", "pillow"]
PROS = ["is sturdy", "is very quiet", "looks elegant", "was easy to set up", "feels well made", "is fast"]
CONS = ["the cable is short", "it scratches easily", "the manual is confusing", "it is a bit heavy",
        "support was slow", "it runs hot"]
FILLERS = ("Sure! Here is a summary:", "Sure, here is a summary:", "Sure!", "Certainly!", "As an AI language model,",
           "Here is a summary of the review:", "Here's a summary:", "Here is a summary:")
SYSTEM = "You are a friendly assistant. You summarise product reviews in one or two sentences."
# The developer's example answer is chatty; the model copies its opening.
EXAMPLE = [{"role": "user", "content": "Summarise this review (4 stars): The mug looks elegant, but it leaks."},
           {"role": "assistant", "content": "Here is a summary: The mug looks elegant, but it leaks."}]


def make_reviews(n: int, seed: int = 7) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    reviews = []
    for i in range(n):
        stars = rng.randint(1, 5)
        product = rng.choice(PRODUCTS)
        text = f"The {product} {rng.choice(PROS)}, but {rng.choice(CONS)}."
        reviews.append({"id": i, "stars": stars, "product": product, "text": text})
    return reviews


def prompt_of(review: Dict[str, Any]) -> str:
    return f"Summarise this review ({review['stars']} stars): {review['text']}"


def reviewer_fix(output: str, review: Dict[str, Any]) -> str:
    """The scripted reviewer: drop filler openings, end with the review's rating line."""
    text = output.strip()
    changed = True
    while changed:
        changed = False
        for filler in FILLERS:
            if text.lower().startswith(filler.lower()):
                text, changed = text[len(filler):].lstrip(), True
    text = re.sub(r"\n*Rating: \d/5\s*$", "", text).rstrip()
    return f"{text}\n\nRating: {review['stars']}/5"


def parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vt_middleware offline demo (see the module docstring).")
    parser.add_argument("--dir", default=".vt-demo", help="store, hooks and state of the demo (default .vt-demo)")
    parser.add_argument("--quick", action="store_true", help="tiny random model and fewer requests (smoke run)")
    parser.add_argument("--requests", type=int, default=None, help="requests in the stream (default 40, quick 16)")
    parser.add_argument("--train-steps", type=int, default=None, help="LoRA steps (default 12, quick 2)")
    parser.add_argument("--keep", action="store_true", help="keep earlier demo data instead of starting fresh")
    return parser.parse_args(argv)


def main(argv: List[str] | None = None) -> int:
    args = parse_args(argv)
    from openai import OpenAI
    from rich.console import Console

    import vt_middleware as vt
    from vt_middleware.call_context import last_run_id
    from vt_middleware.dashboard import CLIDashboard
    from vt_middleware.evolve.gate import EvaluationGate, GateConfig
    from vt_middleware.evolve.pipeline import TrainingPipeline
    from vt_middleware.server.runner import LocalServer
    from vt_middleware.train import LocalTrainer
    from vt_middleware.train.local_models import SMOLLM2_ID, TINY_ID

    console = Console()
    root = Path(args.dir)
    if root.exists() and not args.keep:
        shutil.rmtree(root)
    model = TINY_ID if args.quick else SMOLLM2_ID
    n_requests = args.requests or (16 if args.quick else 40)
    steps = args.train_steps or (2 if args.quick else 12)
    vt.configure(store_path=root / "lance", journal_path=root / "journal", hooks_dir=root / "hooks",
                 state_dir=root / "state")
    started = time.monotonic()
    console.rule(f"vt_middleware demo · model {model} · {n_requests} requests · data in {root}")

    server = LocalServer(model=model, data_dir=root / "server").start()
    raw_client = OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
    client = vt.wrap(OpenAI(base_url=server.base_url, api_key="local", max_retries=0), function_name=FUNCTION)

    def generate_review_summary(review: Dict[str, Any], via: Any = client) -> Tuple[str, str]:
        """The sample app: one chat call per review; returns (answer, run_id)."""
        answer = via.chat.completions.create(
            model=model, max_tokens=40, temperature=0.0,
            messages=[{"role": "system", "content": SYSTEM}, *EXAMPLE, {"role": "user", "content": prompt_of(review)}])
        return answer.choices[0].message.content or "", last_run_id() or ""

    try:
        reviews = make_reviews(n_requests)
        n_held = max(4, n_requests // 4)
        live, held_out = reviews[:-n_held], reviews[-n_held:]

        console.print(f"[bold]1. Before:[/] held-out quality of the base model on {len(held_out)} reviews")
        before = [generate_review_summary(r, via=raw_client)[0] for r in held_out]

        console.print(f"[bold]2. Live traffic:[/] {len(live)} requests, the reviewer corrects every answer")
        with console.status("serving requests ...") as status:
            for i, review in enumerate(live, 1):
                output, run_id = generate_review_summary(review)
                vt.flush()
                fixed = reviewer_fix(output, review)
                if fixed != output and run_id:
                    vt.feedback(run_id, fixed)
                status.update(f"serving requests ... {i}/{len(live)}")
        vt.flush()
        console.print(f"   stored {len(vt.get_store().list_feedback(FUNCTION))} corrections")

        console.print("[bold]3. One evolution cycle[/]")
        dashboard = CLIDashboard(console)
        trainer = LocalTrainer(root / "models", base_model=model, epochs=1, max_steps=steps, batch_size=2,
                               max_length=256).register_with(server.backend)
        pipeline = TrainingPipeline(make_extractor(), synthesizer_output_dir=root / "hooks", trainer=trainer,
                                    monitor=dashboard, base_model=model, eval_client=raw_client,
                                    gate=EvaluationGate(config=GateConfig(max_eval_items=6, max_tokens=40)),
                                    poll_interval=0.5, train_timeout=900)
        cycle_started = time.monotonic()
        try:
            result = pipeline.run(FUNCTION, output_dir=str(root / "evolve"))
        except Exception as exc:  # noqa: BLE001 - show the table and the reason, then fail
            dashboard.summary(pipeline.last_result)
            console.print(f"[red]evolution failed: {type(exc).__name__}: {exc}[/]")
            return 1
        cycle_s = time.monotonic() - cycle_started
        dashboard.summary(result)

        console.print(f"[bold]4. After:[/] the same {len(held_out)} held-out reviews through the evolved app")
        after = [generate_review_summary(r)[0] for r in held_out]
        report = quality_report(held_out, before, after)
        report["evolution"] = {"promoted": bool(result.get("promoted")),
                               "gate_reason": (result.get("gate") or {}).get("reason"),
                               "rules": [r.get("description") for r in result.get("rules") or []],
                               "cycle_s": round(cycle_s, 1), "total_s": round(time.monotonic() - started, 1)}
        print_report(console, report, result, root)
        (root / "demo_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        return 0
    finally:
        vt.flush()
        server.stop()


def make_extractor() -> Any:
    from vt_middleware.extractor import DensityBasedExtractor
    from vt_middleware.store.executions import get_store

    return DensityBasedExtractor(get_store(), epsilon=0.3, top_k=50)


def quality_report(reviews: List[Dict[str, Any]], before: List[str], after: List[str]) -> Dict[str, Any]:
    """Fix rate (answers the reviewer leaves as they are) and similarity to the corrected answers."""
    from vt_middleware.store.embedding import get_embedder

    references = [reviewer_fix(b, r) for b, r in zip(before, reviews)]
    embedder = get_embedder("minilm")
    ref = embedder.embed(references)
    sim = lambda outs: float((embedder.embed(outs) * ref).sum(axis=1).mean())  # noqa: E731
    ok = lambda outs: sum(reviewer_fix(o, r).strip() == o.strip() for o, r in zip(outs, reviews)) / len(reviews)  # noqa: E731
    return {"n": len(reviews), "before": {"fix_rate": ok(before), "similarity": sim(before)},
            "after": {"fix_rate": ok(after), "similarity": sim(after)},
            "examples": [{"review": prompt_of(r), "before": b, "after": a} for r, b, a in zip(reviews[:2], before, after)]}


def print_report(console: Any, report: Dict[str, Any], result: Dict[str, Any], root: Path) -> None:
    from rich.table import Table

    table = Table(title=f"Held-out quality ({report['n']} reviews never corrected)")
    for column in ("", "before", "after"):
        table.add_column(column)
    table.add_row("answers needing no correction", f"{report['before']['fix_rate']:.0%}", f"{report['after']['fix_rate']:.0%}")
    table.add_row("similarity to corrected answer", f"{report['before']['similarity']:.3f}", f"{report['after']['similarity']:.3f}")
    console.print(table)
    for example in report["examples"]:
        console.print(f"[dim]{example['review']}[/]\n  before: {example['before']!r}\n  after:  {example['after']!r}")
    console.print(f"promoted: {result.get('promoted')} · hook version {result.get('hook_version')} · "
                  f"fine-tuned model {(result.get('train') or {}).get('fine_tuned_model')}")
    evolution = report["evolution"]
    console.print(f"evolution cycle {evolution['cycle_s']:.0f}s · whole demo {evolution['total_s']:.0f}s")
    console.print(f"explore it: vt --store-path {root}/lance --hooks-dir {root}/hooks --state-dir {root}/state dashboard")


if __name__ == "__main__":
    raise SystemExit(main())
