"""Benchmark: do synthesised hooks generalise, and how fast are synthesis and hook calls?

Feedback set (tests/synth_data.py), seven defect families, each with varying
products, qualities, prices and star ratings:
  preamble    "As an AI language model, the ..." -> "The ..."      (remove + re-capitalise)
  currency    "costs USD 123" -> "costs $123"                      (replace, any number)
  rating      missing "\n\nRating: N/5", N taken from the prompt    (templated suffix)
  spaces      doubled/tripled spaces                               (format normalisation)
  quotes      curly quotes -> straight quotes                      (format normalisation)
  json        {'name': 'x', 'price': 5,} -> {"name": "x", "price": 5}  (JSON repair)
  disclaimer  stock summaries must end "This is not financial advice." (constant suffix)

Rules are synthesised from the first half; intercept_output is applied to the
other half's bad outputs (new products/prices/ratings), and to already-good
outputs for the harm rate. The seed's literal approach (exact sentence ->
sentence replacement learned from the same training half) runs on the same split.

    python benchmarks/bench_synthesis.py [--pairs 700]
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rapidfuzz.distance import Levenshtein  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from synth_data import FAMILIES, good_outputs, make_pairs  # noqa: E402
from vt_middleware.store.embedding import get_embedder  # noqa: E402
from vt_middleware.synthesize import FeedbackDiffAnalyzer, RuleSetSynthesizer, build_module  # noqa: E402
from vt_middleware.types import Rule  # noqa: E402

SENTENCE = re.compile(r"[^.!?\n]+[.!?]?|\n+")


class SeedLiteralRules:
    """The seed's approach: when the output contains exactly a corrected sentence, swap it."""

    def __init__(self, pairs):
        self.rules = {}
        for pair in pairs:
            bad, fixed = SENTENCE.findall(pair.bad_output), SENTENCE.findall(pair.fixed_output)
            for tag, b0, b1, f0, f1 in difflib.SequenceMatcher(a=bad, b=fixed, autojunk=False).get_opcodes():
                if tag == "replace":
                    self.rules["".join(bad[b0:b1])] = "".join(fixed[f0:f1])

    def apply(self, text):
        for old, new in self.rules.items():
            if old and old in text:
                text = text.replace(old, new)
        return text


def load_hook(rules):
    namespace: dict = {}
    exec(compile(build_module(rules, version="bench").code, "<hook>", "exec"), namespace)
    return namespace


def evaluate(apply, held_out, goods, embedder):
    per_family = {f: [0, 0] for f in FAMILIES}
    before_sim, after_sim, outs = [], [], []
    for pair, family in held_out:
        context = {**pair.context, "user_input": pair.input_prompt}
        out = apply(pair.bad_output, context)
        outs.append(out)
        per_family[family][0] += out == pair.fixed_output
        per_family[family][1] += 1
        before_sim.append(Levenshtein.normalized_similarity(pair.bad_output, pair.fixed_output))
        after_sim.append(Levenshtein.normalized_similarity(out, pair.fixed_output))
    fixed_vecs = embedder.embed([p.fixed_output for p, _ in held_out])
    bad_vecs = embedder.embed([p.bad_output for p, _ in held_out])
    out_vecs = embedder.embed(outs)
    harmed = sum(apply(text, ctx) != text for text, ctx in goods)
    return {
        "exact": sum(v[0] for v in per_family.values()) / len(held_out),
        "families": {f: v[0] / max(v[1], 1) for f, v in per_family.items()},
        "edit_sim": (statistics.mean(before_sim), statistics.mean(after_sim)),
        "emb_sim": (float((bad_vecs * fixed_vecs).sum(1).mean()), float((out_vecs * fixed_vecs).sum(1).mean())),
        "harm": harmed / len(goods),
    }


def latency_us(fn, text, context, calls=20_000):
    fn(text, context)
    start = time.perf_counter()
    for _ in range(calls):
        fn(text, context)
    return (time.perf_counter() - start) / calls * 1e6


def hundred_rules(rules):
    extra = [
        Rule(f"replace-bench{i:03d}", "bench", {"scope": None, "pattern": rf"\bterm{i}\ ", "anchor": f"term{i} "},
             {"parts": [["lit", f"word{i} ", ""]]}, priority=50, kind="replace", sources=["a", "b"], support=2)
        for i in range(100 - len(rules))
    ]
    return rules + extra


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=700)
    args = parser.parse_args()
    console = Console()
    embedder = get_embedder("minilm")
    data = make_pairs(args.pairs, seed=7)
    half = len(data) // 2
    train, held_out = [p for p, _ in data[:half]], data[half:]
    goods = good_outputs(500, seed=99)

    analyzer = FeedbackDiffAnalyzer(embedder=embedder)
    rules = RuleSetSynthesizer().synthesize(analyzer.analyze_many(train))
    hook = load_hook([r for r in rules])
    seed = SeedLiteralRules(train)
    ours = evaluate(hook["intercept_output"], held_out, goods, embedder)
    literal = evaluate(lambda text, ctx: seed.apply(text), held_out, goods, embedder)

    table = Table(title=f"Held-out generalisation ({half} train / {len(held_out)} held-out pairs, 500 good outputs)")
    table.add_column("metric")
    table.add_column("synthesised hook", justify="right")
    table.add_column("seed literal rules", justify="right")
    table.add_row("rules", str(len(rules)), str(len(seed.rules)))
    table.add_row("exact-fix rate", f"{ours['exact']:.1%}", f"{literal['exact']:.1%}")
    for family in FAMILIES:
        table.add_row(f"  {family}", f"{ours['families'][family]:.0%}", f"{literal['families'][family]:.0%}")
    for key, label in (("edit_sim", "edit similarity to fixed"), ("emb_sim", "MiniLM cosine to fixed")):
        table.add_row(f"{label} before -> after", f"{ours[key][0]:.3f} -> {ours[key][1]:.3f}",
                      f"{literal[key][0]:.3f} -> {literal[key][1]:.3f}")
    table.add_row("harm rate on good outputs", f"{ours['harm']:.2%}", f"{literal['harm']:.2%}")
    console.print(table)

    big = [p for p, _ in make_pairs(1000, seed=11)]
    start = time.perf_counter()
    diffs = analyzer.analyze_many(big)
    t_analyze = time.perf_counter() - start
    start = time.perf_counter()
    big_rules = RuleSetSynthesizer().synthesize(diffs)
    t_rules = time.perf_counter() - start
    start = time.perf_counter()
    result = build_module(big_rules, version="bench")
    t_codegen = time.perf_counter() - start
    hash_analyzer = FeedbackDiffAnalyzer(embedder=get_embedder("hash"))
    start = time.perf_counter()
    hash_analyzer.analyze_many(big)
    t_hash = time.perf_counter() - start
    timing = Table(title="Synthesis time, 1,000 pairs")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    timing.add_row("analyse (MiniLM embeddings + diffs)", f"{t_analyze:.2f}")
    timing.add_row("analyse (hash embedder baseline)", f"{t_hash:.2f}")
    timing.add_row(f"mine + score + resolve ({len(big_rules)} rules)", f"{t_rules:.2f}")
    timing.add_row(f"libcst codegen ({len(result.code or '') // 1024} KiB)", f"{t_codegen:.2f}")
    timing.add_row("total", f"{t_analyze + t_rules + t_codegen:.2f}")
    console.print(timing)

    hook100 = load_hook(hundred_rules(list(rules)))
    seed100 = SeedLiteralRules([])
    seed100.rules = {f"Sentence number {i} is wrong.": f"Sentence {i} is right." for i in range(100)}
    sample = held_out[1][0]
    text, context = sample.bad_output, {**sample.context, "user_input": sample.input_prompt}
    long_text = " ".join(p.fixed_output for p, _ in held_out[:8])
    lat = Table(title="Hook apply latency per call, 100 rules (goal < 100 us)")
    lat.add_column("call")
    lat.add_column("us/call", justify="right")
    lat.add_row(f"intercept_output, {len(text)}-char output", f"{latency_us(hook100['intercept_output'], text, context):.1f}")
    lat.add_row(f"intercept_output, {len(long_text)}-char output",
                f"{latency_us(hook100['intercept_output'], long_text, context):.1f}")
    lat.add_row("intercept_prompt (prompt rules included)", f"{latency_us(hook100['intercept_prompt'], sample.input_prompt, context):.1f}")
    lat.add_row("seed literal rules (100), same short output", f"{latency_us(lambda t, c: seed100.apply(t), text, context):.1f}")
    lat.add_row("no hook (identity function)", f"{latency_us(lambda t, c: t, text, context):.2f}")
    console.print(lat)


if __name__ == "__main__":
    main()
