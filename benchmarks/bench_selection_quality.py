"""Selection quality on synthetic calls with known clusters and planted rare-but-valid
groups: vt_middleware's selection vs the seed's top-k rules, same data, same densities.

    python benchmarks/bench_selection_quality.py [--n 5000] [--seeds 3]

Rows: exact path ("vt_middleware"), approximate path (k-NN graph, forced at this n) and
the seed's rules on the exact densities.
With ``--embedders static,minilm,hash`` a second table runs the same selection on *text*
calls (task families of templated prompts, planted rare tasks, word-salad noise) embedded
by each embedder, so the capture embedder's effect on selection is measured.
Metrics: clusters covered by steady-state picks (of the successful clusters), near-duplicate
rate among steady picks (pairs with cosine > 0.95 over all pairs), recall of the planted
valid groups among anomalies, isolated noise among anomalies, failures selected.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seed_reference import seed_anomalies, seed_top_k
from synthetic_calls import NOISE_LABEL, RARE_LABEL_BASE, SyntheticCalls, make_calls
from vt_middleware.select.clusters import SelectionParams
from vt_middleware.select.core import select_golden
from vt_middleware.types import STATUS_ERROR, STATUS_SUCCESS

# Task families: (template, slot values); members differ in their slot fills.
FAMILIES = [
    (
        "Summarise this review ({a} stars): the {b} is {c} and arrived {d}.",
        ["1", "2", "3", "4", "5"],
        ["kettle", "lamp", "chair", "toaster", "desk", "router", "tent", "mug"],
        ["sturdy", "quiet", "noisy", "elegant", "flimsy", "heavy"],
        ["late", "early", "damaged", "on time"],
    ),
    (
        "Translate into {a}: '{b} {c} {d}'",
        ["French", "German", "Spanish", "Italian"],
        ["good morning,", "thank you,", "see you soon,", "where is"],
        ["my friend", "the station", "the hotel"],
        ["please", "today", "tomorrow"],
    ),
    (
        "Write a SQL query that selects {a} from {b} where {c} is {d}",
        ["all rows", "the names", "the totals"],
        ["orders", "customers", "invoices", "payments"],
        ["status", "region", "owner"],
        ["open", "null", "'EU'"],
    ),
    (
        "What is the weather forecast for {a} on {b}? I plan to {c} {d}.",
        ["Paris", "Berlin", "Seoul", "Lima"],
        ["Monday", "Friday", "the weekend"],
        ["go hiking", "cycle", "sail"],
        ["with kids", "alone", "early"],
    ),
    (
        "Fix this Python error: {a} in line {b} of {c} when calling {d}",
        ["KeyError", "TypeError", "IndexError"],
        ["12", "40", "7", "88"],
        ["app.py", "utils.py", "models.py"],
        ["load()", "save()", "parse()"],
    ),
    (
        "Suggest a recipe with {a}, {b} and {c} for {d}",
        ["chicken", "tofu", "salmon", "lentils"],
        ["rice", "pasta", "potatoes"],
        ["garlic", "lemon", "ginger", "chili"],
        ["dinner", "lunch", "two people"],
    ),
    (
        "Draft a polite email to my {a} asking to {b} the {c} {d}",
        ["landlord", "manager", "teacher"],
        ["move", "cancel", "postpone"],
        ["meeting", "inspection", "appointment"],
        ["to next week", "until May"],
    ),
    (
        "Explain {a} to a {b} using {c} {d}",
        ["photosynthesis", "inflation", "gravity", "recursion"],
        ["child", "beginner", "grandparent"],
        ["a simple", "an everyday"],
        ["example", "analogy", "story"],
    ),
    (
        "Classify the sentiment of the tweet: '{a} {b} {c} {d}'",
        ["I love", "I hate", "Not sure about"],
        ["the new", "this", "that"],
        ["phone", "movie", "update", "album"],
        ["!!", "today", "so much"],
    ),
    (
        "Convert {a} {b} to {c} and round to {d}",
        ["12", "250", "3.5", "1000"],
        ["miles", "pounds", "litres"],
        ["kilometres", "kilograms", "gallons"],
        ["two decimals", "an integer"],
    ),
    (
        "Give me a workout plan for {a} days a week focused on {b}, {c}, {d}",
        ["three", "four", "five"],
        ["strength", "endurance", "mobility"],
        ["no equipment", "dumbbells only"],
        ["30 minutes", "an hour"],
    ),
    (
        "Extract the invoice number, date and total from: INV-{a} dated {b} total {c} {d}",
        ["1001", "2044", "3090"],
        ["2024-01-05", "2023-11-30", "2024-06-17"],
        ["$120.00", "EUR 99.90", "$3,400"],
        ["due now", "paid"],
    ),
    (
        "Write a haiku about {a} in {b} with {c} {d}",
        ["autumn", "the ocean", "a city", "snow"],
        ["the morning", "the night"],
        ["a quiet", "a sad", "a bright"],
        ["mood", "ending", "image"],
    ),
    (
        "Which {a} should I buy for {b} under {c}? I care about {d}.",
        ["laptop", "camera", "bike"],
        ["travel", "students", "gaming"],
        ["$500", "$1000", "$1500"],
        ["battery life", "weight", "price"],
    ),
    (
        "Summarise the meeting notes: {a} agreed to {b} the {c} by {d}",
        ["Anna", "the team", "Marketing"],
        ["ship", "review", "rewrite"],
        ["roadmap", "budget", "release"],
        ["Friday", "end of month"],
    ),
    (
        "Generate a regex that matches {a} {b} {c} {d}",
        ["US phone numbers", "email addresses", "dates"],
        ["with", "without"],
        ["country codes", "dashes", "spaces"],
        ["only", "as well"],
    ),
    (
        "Plan a {a}-day trip to {b} with a budget of {c} for {d}",
        ["3", "5", "7"],
        ["Rome", "Tokyo", "Lisbon"],
        ["$800", "$2000"],
        ["a couple", "a family", "students"],
    ),
    (
        "Review this pull request diff and point out {a} in the {b} {c} {d}",
        ["bugs", "style issues", "risks"],
        ["auth", "payment", "cache"],
        ["module", "handler"],
        ["please", "briefly"],
    ),
    (
        "Tell me a fun fact about {a} and {b} for {c} {d}",
        ["octopuses", "volcanoes", "honey bees"],
        ["space", "history"],
        ["my class", "a quiz"],
        ["today", "tonight"],
    ),
    (
        "Rewrite the sentence in a {a} tone: '{b} {c} {d}'",
        ["formal", "friendly", "neutral"],
        ["we cannot", "you must", "please do not"],
        ["refund", "ship", "change"],
        ["the order", "your plan"],
    ),
]
RARE = [
    "Compose a limerick about a lighthouse keeper's {a} cat",
    "Estimate the orbital period of a moon {a} km away",
    "Name Baroque composers influenced by {a} fugues",
    "Describe how to repair a {a} mechanical watch escapement",
    "List medieval siege engines that used {a} counterweights",
    "Explain tidal locking of {a} exoplanets",
    "How do I graft a {a} apple tree onto rootstock",
    "Identify the chess opening after 1.e4 c5 2.{a}",
    "Which enzymes break down {a} lignin in fungi",
    "Outline the rules of {a} curling scoring",
    "How is {a} saffron harvested by hand",
    "Translate this Sumerian {a} cuneiform sign",
    "Compute the Betti numbers of a {a} torus",
    "How do beekeepers treat {a} varroa mites",
    "Design a {a} dovetail joint for a drawer",
]
WORDS = (
    "alpha zebra quantum violet marble crater sonnet lattice ember nylon pivot saga tundra "
    "oxide fable gizmo harbor ionic jigsaw kelp lumen mosaic nectar orbit quartz"
).split()


def make_text_calls(n: int, seed: int) -> tuple[list, np.ndarray, list]:
    """Texts with the structure of ``make_calls``: Zipf-sized families, rare groups of 3
    (one failed), 1% noise, 20% near-duplicates, 5% random failures."""
    rng = np.random.default_rng(seed)
    n_rare, n_noise = len(RARE), n // 100
    n_clustered = n - n_noise - 3 * n_rare
    weights = 1.0 / np.arange(1, len(FAMILIES) + 1)
    sizes = np.maximum(1, np.floor(weights / weights.sum() * n_clustered)).astype(int)
    sizes[0] += n_clustered - sizes.sum()
    texts, labels = [], []
    for c, size in enumerate(sizes):
        template, *slots = FAMILIES[c]
        for _ in range(size):
            if texts and labels[-1] == c and rng.random() < 0.2:
                texts.append(texts[-1] + " thanks")  # a near copy of the previous member
            else:
                texts.append(template.format(**{k: rng.choice(v) for k, v in zip("abcd", slots)}))
            labels.append(c)
    for g, template in enumerate(RARE):
        for fill in ("old", "small", "rare"):
            texts.append(template.format(a=fill))
            labels.append(RARE_LABEL_BASE + g)
    for _ in range(n_noise):
        texts.append(" ".join(rng.choice(WORDS, size=6)))
        labels.append(NOISE_LABEL)
    labels_arr = np.asarray(labels)
    statuses = np.full(len(texts), STATUS_SUCCESS, dtype=object)
    statuses[labels_arr == len(FAMILIES) - 1] = STATUS_ERROR
    statuses[rng.random(len(texts)) < 0.05] = STATUS_ERROR
    statuses[labels_arr >= RARE_LABEL_BASE] = STATUS_SUCCESS
    statuses[labels_arr == RARE_LABEL_BASE + n_rare - 1] = STATUS_ERROR
    return texts, labels_arr, [str(s) for s in statuses]


def text_rows(n: int, seeds: int, embedders: List[str], top_k: int) -> None:
    import time

    from vt_middleware.store.embedding import get_embedder

    print(
        f"\ntext calls: n={n}, {len(FAMILIES)} task families, {len(RARE)} rare tasks x3 (one failed), "
        f"1% noise, 20% near copies; exact path, mean over {seeds} seeds"
    )
    header = (
        f"{'embedder':<10} {'eps':>5} {'clusters covered':>17} {'near-dup rate':>14} {'planted recall':>15} "
        f"{'noise in anomalies':>19} {'failures':>9} {'picks':>6} {'embed us/text':>14}"
    )
    print(header)
    print("-" * len(header))
    for name in embedders:
        embedder = get_embedder(name)
        embedder.embed(["warm up"])
        for eps in (0.3, 0.15):
            found, cost = [], []
            for seed in range(seeds):
                texts, labels, statuses = make_text_calls(n, seed)
                start = time.perf_counter()
                vectors = embedder.embed(texts)
                cost.append((time.perf_counter() - start) / len(texts))
                data = SyntheticCalls(np.asarray(vectors, dtype=np.float32), statuses, labels, np.full(n, -1))
                selection = select_golden(data.vectors, statuses, eps, SelectionParams(top_k=top_k), method="exact")
                found.append(metrics(data, [p.index for p in selection.steady], [p.index for p in selection.anomalies]))
            mean = {k: float(np.mean([r[k] for r in found])) for k in found[0]}
            print(
                f"{name:<10} {eps:>5} {mean['clusters']:>17.2f} {mean['dup']:>14.3f} {mean['recall']:>15.2f} "
                f"{mean['noise']:>19.2f} {mean['failures']:>9.0f} {mean['picks']:>6.0f} "
                f"{np.median(cost) * 1e6:>14.1f}"
            )


def metrics(data, steady: List[int], anomalies: List[int]) -> Dict[str, float]:
    labels, statuses = data.labels, data.statuses
    ok_clusters = {int(lab) for lab, s in zip(labels, statuses) if 0 <= lab < RARE_LABEL_BASE and s == STATUS_SUCCESS}
    covered = {int(labels[i]) for i in steady} & ok_clusters
    if len(steady) > 1:
        sims = data.vectors[steady] @ data.vectors[steady].T
        upper = sims[np.triu_indices(len(steady), 1)]
        dup_rate = float((upper > 0.95).mean())
    else:
        dup_rate = 0.0
    found = {int(labels[i]) for i in anomalies} & set(data.rare_groups)
    return {
        "clusters": len(covered) / max(1, len(ok_clusters)),
        "dup": dup_rate,
        "recall": len(found) / max(1, len(data.rare_groups)),
        "noise": sum(labels[i] == NOISE_LABEL for i in anomalies) / max(1, len(anomalies)),
        "failures": sum(statuses[i] != STATUS_SUCCESS for i in steady + anomalies),
        "picks": len(steady) + len(anomalies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--embedders", default="", help="comma-separated, e.g. static,minilm,hash: text calls")
    parser.add_argument("--text-n", type=int, default=2000)
    args = parser.parse_args()
    if args.embedders:
        text_rows(args.text_n, args.seeds, args.embedders.split(","), args.top_k)
        return
    rows: Dict[str, List[Dict[str, float]]] = {"vt_middleware": [], "vt approximate": [], "seed top-k": []}
    for seed in range(args.seeds):
        data = make_calls(n=args.n, n_clusters=20, n_rare=15, failure_fraction=0.05, seed=seed)
        for name, method in (("vt approximate", "approximate"), ("vt_middleware", "exact")):
            selection = select_golden(
                data.vectors, data.statuses, 0.3, SelectionParams(top_k=args.top_k), method=method
            )
            rows[name].append(
                metrics(data, [p.index for p in selection.steady], [p.index for p in selection.anomalies])
            )
        densities = selection.graph.densities
        rows["seed top-k"].append(
            metrics(
                data,
                seed_top_k(densities, data.statuses, args.top_k),
                seed_anomalies(densities, data.statuses, args.top_k),
            )
        )
    print(
        f"n={args.n}, 20 Zipf-sized clusters (one all-failure), 15 planted valid groups of 3, "
        f"2 failed groups, 1% noise, 20% near-duplicates, 5% random failures; "
        f"top_k={args.top_k}; mean over {args.seeds} seeds"
    )
    header = (
        f"{'rule':<15} {'clusters covered':>17} {'near-dup rate':>14} {'planted recall':>15} "
        f"{'noise in anomalies':>19} {'failures':>9} {'picks':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, found in rows.items():
        mean = {k: float(np.mean([r[k] for r in found])) for k in found[0]}
        print(
            f"{name:<15} {mean['clusters']:>17.2f} {mean['dup']:>14.3f} {mean['recall']:>15.2f} "
            f"{mean['noise']:>19.2f} {mean['failures']:>9.0f} {mean['picks']:>6.0f}"
        )


if __name__ == "__main__":
    main()
