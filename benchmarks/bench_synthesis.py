"""Benchmark: do synthesised hooks fix outputs nobody corrected, and how fast are synthesis and hook calls?

Two feedback sets, each split in half (rules from the first half, measured on the second):
  own families   tests/synth_families.py: 13 defect families of this project's design (number,
                 date and time notations, unit forms, values copied from the input, lines added
                 after a heading or at the end, lines removed, list markers, spacing, quotes),
                 one to four per answer.
  independent    benchmarks/synth_eval_independent.py: support replies and review summaries
                 written apart from the miner and never used to tune it, one to four defects per answer.
Harm: answers that needed no fix (half of them are passed to synthesis as negatives, the other
half measure harm). Beside the new synthesiser, in the same run: the previous miner (its code
loaded from git history) and the seed's literal sentence rules. The k-fold self-estimate is
printed beside the measured held-out rate. Then: synthesis time from 1,000 and 10,000 pairs
(wall and CPU seconds, with the machine's load) and hook latency per call with 100 rules.

    python benchmarks/bench_synthesis.py [--pairs 600] [--skip-10k]
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import synth_eval_independent as independent  # noqa: E402
import synth_families as own  # noqa: E402
from synth_families import load_hook  # noqa: E402
from vt_middleware.synthesize import (  # noqa: E402
    FeedbackDiffAnalyzer,
    RuleSetSynthesizer,
    build_module,
)
from vt_middleware.synthesize.rules import eval_context  # noqa: E402
from vt_middleware.types import Rule  # noqa: E402

PREVIOUS_MINER = "3c6101878e6e64619ee6e5fc12e65ead2d373147"  # main before verified rule induction
SENTENCE = re.compile(r"[^.!?\n]+[.!?]?|\n+")


class SeedLiteralRules:
    """The seed's approach: when the output contains exactly a corrected sentence, swap it."""

    def __init__(self, pairs):
        self.rules = {}
        for pair in pairs:
            bad, fixed = SENTENCE.findall(pair.bad_output), SENTENCE.findall(pair.fixed_output)
            for tag, b0, b1, f0, f1 in difflib.SequenceMatcher(a=bad, b=fixed, autojunk=False).get_opcodes():
                if tag == "replace" and "".join(bad[b0:b1]).strip():
                    self.rules["".join(bad[b0:b1])] = "".join(fixed[f0:f1])

    def apply(self, text, context=None):
        for old, new in self.rules.items():
            if old and old in text:
                text = text.replace(old, new)
        return text


def previous_miner():
    """The synthesize package as it was at PREVIOUS_MINER, importable as ``prev_synth``."""
    folder = Path(tempfile.mkdtemp(prefix="prev-synth-")) / "prev_synth"
    folder.mkdir()
    (folder / "__init__.py").write_text("", encoding="utf-8")
    for name in ("analyzer", "candidates", "conflicts", "hook_runtime", "rules", "slots", "llm"):
        source = subprocess.run(
            ["git", "show", f"{PREVIOUS_MINER}:vt_middleware/synthesize/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        source = source.replace("from ..", "from vt_middleware.").replace("from . import", "from prev_synth import")
        source = source.replace("from .", "from prev_synth.")
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module("prev_synth.analyzer"), importlib.import_module("prev_synth.rules")


def context_of(pair):
    return eval_context({"context": pair.context, "input_prompt": pair.input_prompt})


def evaluate(apply, held_out, goods, families):
    per_family = {f: [0, 0] for f in families}
    per_count = {k: [0, 0] for k in range(1, 5)}
    exact = 0
    for pair, chosen in held_out:
        ok = apply(pair.bad_output, context_of(pair)) == pair.fixed_output
        exact += ok
        for family in chosen:
            per_family[family][0] += ok
            per_family[family][1] += 1
        per_count[len(chosen)][0] += ok
        per_count[len(chosen)][1] += 1
    harmed = sum(apply(text, context) != text for text, context in goods)
    return {"exact": exact / len(held_out), "families": per_family, "counts": per_count, "harm": harmed / len(goods)}


def run_set(console, title, data, goods, families, prev):
    half = len(data) // 2
    train, held_out = data[:half], data[half:]
    negatives, harm_goods = goods[: len(goods) // 2], goods[len(goods) // 2 :]
    pairs = [p for p, _ in train]
    synth = RuleSetSynthesizer()
    started = time.perf_counter()
    rules = synth.synthesize(FeedbackDiffAnalyzer().analyze_many(pairs), negatives=negatives)
    seconds = time.perf_counter() - started
    hook = load_hook(rules)
    ours = evaluate(hook["intercept_output"], held_out, harm_goods, families)
    prev_analyzer, prev_rules = prev
    from vt_middleware.store.embedding import get_embedder

    old_rules = prev_rules.RuleSetSynthesizer().synthesize(
        prev_analyzer.FeedbackDiffAnalyzer(embedder=get_embedder("hash")).analyze_many(pairs)
    )
    old_runtime = importlib.import_module("prev_synth.hook_runtime")  # its own interpreter: its patterns are unbounded
    old_entries = old_runtime._compile_rules([prev_rules.to_hook_dict(r) for r in old_rules if r.target == "output"])
    previous = evaluate(
        lambda text, ctx: old_runtime._apply_rules(old_entries, text, ctx), held_out, harm_goods, families
    )
    seed = SeedLiteralRules(pairs)
    literal = evaluate(seed.apply, held_out, harm_goods, families)
    estimate = synth.last_estimate
    table = Table(
        title=f"{title}: {half} train / {len(held_out)} held-out pairs, {len(negatives)} negatives, "
        f"{len(harm_goods)} good answers for harm (synthesis {seconds:.1f} s)"
    )
    for column in ("held-out", "new synthesiser", "previous miner", "seed literal rules"):
        table.add_column(column, justify="right" if column != "held-out" else "left")
    table.add_row(
        "output rules",
        str(sum(r.target == "output" for r in rules)),
        str(sum(r.target == "output" for r in old_rules)),
        str(len(seed.rules)),
    )
    table.add_row(
        "exact-fix rate, all (mixtures)", f"{ours['exact']:.1%}", f"{previous['exact']:.1%}", f"{literal['exact']:.1%}"
    )
    table.add_row(
        "  self-estimate (k-fold CV)",
        f"{estimate.get('fix_rate') or 0:.1%} ({estimate.get('folds')} folds, {estimate.get('sampled_pairs')} pairs)",
        "-",
        "-",
    )
    for count in range(1, 5):
        row = [f"  answers with {count} defect(s)"]
        for result in (ours, previous, literal):
            hit, total = result["counts"][count]
            row.append(f"{hit / total:.0%} of {total}" if total else "-")
        table.add_row(*row)
    for family in families:
        row = [f"  family {family}"]
        for result in (ours, previous, literal):
            hit, total = result["families"][family]
            row.append(f"{hit / total:.0%}" if total else "-")
        table.add_row(*row)
    table.add_row("harm rate on good answers", *(f"{r['harm']:.2%}" for r in (ours, previous, literal)))
    table.add_row("  self-estimate of harm (CV)", f"{estimate.get('harm_rate') or 0:.2%}", "-", "-")
    table.add_row(
        "  harm on the negatives (training)", f"{estimate['training'].get('negative_harm_rate') or 0:.2%}", "-", "-"
    )
    console.print(table)
    return rules


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def timing(console, sizes):
    table = Table(
        title=f"Synthesis time (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        "CPU seconds are this process's own)"
    )
    for column in (
        "pairs",
        "analyse wall/CPU s",
        "mine+search+CV wall/CPU s",
        "codegen s",
        "total wall/CPU s",
        "rules",
        "training exact",
    ):
        table.add_column(column, justify="right")
    for size in sizes:
        pairs = [p for p, _ in own.make_mixed(size // 2, seed=11)] + [
            p for p, _ in independent.make_independent(size - size // 2, seed=12)
        ]
        diffs, t_an, c_an = timed(lambda: FeedbackDiffAnalyzer().analyze_many(pairs))
        synth = RuleSetSynthesizer()
        rules, t_syn, c_syn = timed(lambda: synth.synthesize(diffs))
        _, t_gen, _ = timed(lambda: build_module(rules, version="bench"))
        training = synth.last_estimate["training"]
        table.add_row(
            f"{size:,}",
            f"{t_an:.2f} / {c_an:.2f}",
            f"{t_syn:.2f} / {c_syn:.2f}",
            f"{t_gen:.2f}",
            f"{t_an + t_syn + t_gen:.2f} / {c_an + c_syn:.2f}",
            str(len(rules)),
            f"{training['exact_fixed']}/{training['pairs']}",
        )
    console.print(table)


def latency_us(fn, text, context, calls=5_000):
    fn(text, context)
    start = time.perf_counter()
    for _ in range(calls):
        fn(text, context)
    return (time.perf_counter() - start) / calls * 1e6


def hundred_rules(rules):
    output = [r for r in rules if r.target == "output"]
    extra = [
        Rule(
            f"replace-bench{i:03d}",
            "bench",
            {"scope": None, "pattern": rf"\bterm{i}\ ", "anchor": f"term{i} "},
            {"parts": [["lit", f"word{i} ", ""]]},
            priority=5,
            kind="replace",
            sources=["a", "b"],
            support=2,
        )
        for i in range(100 - len(output))
    ]
    return output + extra


def latency(console, rules, sample):
    hook = load_hook(hundred_rules(rules))
    seed = SeedLiteralRules([])
    seed.rules = {f"Sentence number {i} is wrong.": f"Sentence {i} is right." for i in range(100)}
    text, context = sample.bad_output, context_of(sample)
    long_text = "\n".join([sample.fixed_output] * 10)

    def streamed(value, ctx):
        stream = hook["intercept_output_stream"](ctx)
        out = [stream.feed(value[i : i + 20]) for i in range(0, len(value), 20)]
        return "".join(out) + stream.finish()

    adversarial = "1," * 51_200
    start = time.perf_counter()
    hook["intercept_output"](adversarial, context)
    adversarial_ms = (time.perf_counter() - start) * 1000
    table = Table(title="Hook apply latency per call, 100 output rules (goal < 100 us)")
    table.add_column("call")
    table.add_column("us/call", justify="right")
    short_us = latency_us(hook["intercept_output"], text, context)
    table.add_row(f"intercept_output, {len(text)}-char answer", f"{short_us:.1f}")
    table.add_row(
        f"intercept_output, {len(long_text)}-char answer",
        f"{latency_us(hook['intercept_output'], long_text, context, 1_000):.1f}",
    )
    table.add_row(
        f"intercept_output_stream, {len(text)} chars in 20-char chunks",
        f"{latency_us(streamed, text, context, 1_000):.1f}",
    )
    table.add_row("seed literal rules (100), same answer", f"{latency_us(seed.apply, text, context):.1f}")
    table.add_row("no hook (identity function)", f"{latency_us(lambda t, c: t, text, context):.2f}")
    table.add_row("adversarial 100 KiB output ('1,' repeated), one call", f"{adversarial_ms * 1000:.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--skip-10k", action="store_true", help="time 1,000 pairs only")
    args = parser.parse_args()
    console = Console()
    prev = previous_miner()
    own_rules = run_set(
        console, "Own families", own.make_mixed(args.pairs, seed=7), own.mixed_goods(400, seed=99), own.FAMILIES, prev
    )
    goods = [(g.fixed_output, context_of(g)) for g in independent.independent_goods(400, seed=98)]
    run_set(
        console,
        "Independent evaluation set",
        independent.make_independent(args.pairs, seed=8),
        goods,
        independent.FAMILIES,
        prev,
    )
    timing(console, [1_000] if args.skip_10k else [1_000, 10_000])
    latency(console, own_rules, own.make_mixed(1, seed=5)[0][0])


if __name__ == "__main__":
    main()
