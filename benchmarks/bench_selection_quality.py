"""Selection quality on synthetic calls with known clusters and planted rare-but-valid
groups: vt_middleware's selection vs the seed's top-k rules, same data, same densities.

    python benchmarks/bench_selection_quality.py [--n 5000] [--seeds 3]

Rows: exact path ("vt_middleware"), approximate path (k-NN graph, forced at this n) and
the seed's rules on the exact densities.
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

from seed_reference import seed_anomalies, seed_top_k  # noqa: E402
from vt_middleware.select.clusters import SelectionParams  # noqa: E402
from vt_middleware.select.core import select_golden  # noqa: E402
from synthetic_calls import NOISE_LABEL, RARE_LABEL_BASE, make_calls  # noqa: E402
from vt_middleware.types import STATUS_SUCCESS  # noqa: E402


def metrics(data, steady: List[int], anomalies: List[int]) -> Dict[str, float]:
    labels, statuses = data.labels, data.statuses
    ok_clusters = {int(l) for l, s in zip(labels, statuses) if 0 <= l < RARE_LABEL_BASE and s == STATUS_SUCCESS}
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
    args = parser.parse_args()
    rows: Dict[str, List[Dict[str, float]]] = {"vt_middleware": [], "vt approximate": [], "seed top-k": []}
    for seed in range(args.seeds):
        data = make_calls(n=args.n, n_clusters=20, n_rare=15, failure_fraction=0.05, seed=seed)
        for name, method in (("vt approximate", "approximate"), ("vt_middleware", "exact")):
            selection = select_golden(data.vectors, data.statuses, 0.3, SelectionParams(top_k=args.top_k),
                                      method=method)
            rows[name].append(metrics(data, [p.index for p in selection.steady],
                                      [p.index for p in selection.anomalies]))
        densities = selection.graph.densities
        rows["seed top-k"].append(metrics(data, seed_top_k(densities, data.statuses, args.top_k),
                                          seed_anomalies(densities, data.statuses, args.top_k)))
    print(f"n={args.n}, 20 Zipf-sized clusters (one all-failure), 15 planted valid groups of 3, "
          f"2 failed groups, 1% noise, 20% near-duplicates, 5% random failures; "
          f"top_k={args.top_k}; mean over {args.seeds} seeds")
    header = (f"{'rule':<15} {'clusters covered':>17} {'near-dup rate':>14} {'planted recall':>15} "
              f"{'noise in anomalies':>19} {'failures':>9} {'picks':>6}")
    print(header)
    print("-" * len(header))
    for name, found in rows.items():
        mean = {k: float(np.mean([r[k] for r in found])) for k in found[0]}
        print(f"{name:<15} {mean['clusters']:>17.2f} {mean['dup']:>14.3f} {mean['recall']:>15.2f} "
              f"{mean['noise']:>19.2f} {mean['failures']:>9.0f} {mean['picks']:>6.0f}")


if __name__ == "__main__":
    main()
