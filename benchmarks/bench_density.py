"""Density computation: time and peak memory of the exact path, the approximate path
(pynndescent k-NN graph + sampled tail) and the seed's all-pairs Python loop, plus the
approximate path's error against exact.

    python benchmarks/bench_density.py                 # n = 1k, 10k, 100k (about 4-5 min on 2 cores)
    python benchmarks/bench_density.py --sizes 1000 10000

At 100k the full exact pass takes minutes on 2 cores, so exact is run on a random
subset of rows against all rows (those rows' densities are exact) and its time is
extrapolated linearly in rows (labelled "extrapolated"); Spearman at 100k is over that
subset. The seed loop runs up to ``--seed-max`` rows and is extrapolated as n^2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from typing import Callable, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vt_middleware.select.clusters import SelectionParams  # noqa: E402
from vt_middleware.select.core import select_golden  # noqa: E402
from vt_middleware.select.density import approximate_density, exact_density, normalise_rows  # noqa: E402
from vt_middleware.select.synthetic import make_calls  # noqa: E402

EPSILON = 0.3


def seed_all_pairs(vectors: np.ndarray, epsilon: float) -> list:
    """The seed's algorithm: every pair in Python, cosine per pair."""
    rows = [list(map(float, v)) for v in vectors]
    norms = [sum(x * x for x in r) ** 0.5 for r in rows]
    threshold = 1 - epsilon
    density = [0.0] * len(rows)
    for i, a in enumerate(rows):
        for j, b in enumerate(rows):
            if i == j:
                continue
            sim = sum(x * y for x, y in zip(a, b)) / (norms[i] * norms[j])
            if sim >= threshold:
                density[i] += sim
    return density


def measure(fn: Callable[[], object]) -> Tuple[object, float, float]:
    """(result, seconds, peak MiB of Python/numpy allocations)."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def exact_rows(vectors: np.ndarray, rows: np.ndarray, epsilon: float) -> np.ndarray:
    """Exact densities of ``rows`` only (against all rows)."""
    x, _ = normalise_rows(vectors)
    out = np.zeros(len(rows))
    for start in range(0, len(rows), 256):
        chunk = rows[start:start + 256]
        sims = x[chunk] @ x.T
        sims[np.arange(len(chunk)), chunk] = -np.inf
        out[start:start + 256] = np.where(sims >= 1 - epsilon, sims, 0).sum(axis=1)
    return out


def overlap(a: list, b: list) -> float:
    return len(set(a) & set(b)) / max(1, len(set(a)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed-max", type=int, default=1000)
    parser.add_argument("--exact-max", type=int, default=20_000, help="largest n run fully exact")
    parser.add_argument("--subset", type=int, default=2000)
    args = parser.parse_args()
    from scipy.stats import spearmanr

    t0 = time.perf_counter()
    approximate_density(make_calls(500, args.dim).vectors, EPSILON)  # numba compile, not timed below
    print(f"pynndescent/numba warm-up (compile): {time.perf_counter() - t0:.1f} s\n")
    header = f"{'n':>7} {'method':<26} {'time s':>9} {'peak MiB':>9} {'vs seed':>9}"
    print(header)
    print("-" * len(header))
    accuracy = []
    for n in args.sizes:
        data = make_calls(n, args.dim, n_clusters=max(12, n // 1000), n_rare=20, seed=1)
        vectors = data.vectors
        seed_n = min(n, args.seed_max)
        _, seed_s, seed_mem = measure(lambda: seed_all_pairs(vectors[:seed_n], EPSILON))
        seed_full = seed_s * (n / seed_n) ** 2
        label = "seed all-pairs Python" + ("" if seed_n == n else f" (extrap. from {seed_n})")
        print(f"{n:>7} {label:<26} {seed_full:>9.1f} {seed_mem if seed_n == n else float('nan'):>9.1f} {'1x':>9}")
        if n <= args.exact_max:
            exact, ex_s, ex_mem = measure(lambda: exact_density(vectors, EPSILON))
            rows = np.arange(n)
            exact_d = exact.densities
            ex_label = "exact (blocked numpy)"
        else:
            rows = np.sort(np.random.default_rng(0).choice(n, args.subset, replace=False))
            exact_d, ex_s, ex_mem = measure(lambda: exact_rows(vectors, rows, EPSILON))
            ex_s *= n / len(rows)
            exact = None
            ex_label = f"exact (extrap. {len(rows)} rows)"
        print(f"{n:>7} {ex_label:<26} {ex_s:>9.1f} {ex_mem:>9.1f} {seed_full / ex_s:>8.0f}x")
        approx, ap_s, ap_mem = measure(lambda: approximate_density(vectors, EPSILON))
        print(f"{n:>7} {'approximate (k-NN+sample)':<26} {ap_s:>9.1f} {ap_mem:>9.1f} {seed_full / ap_s:>8.0f}x")
        rho = spearmanr(exact_d, approx.densities[rows]).statistic
        rel = np.median(np.abs(approx.densities[rows] - exact_d) / np.maximum(exact_d, 1))
        row = {"n": n, "rho": rho, "rel": rel, "rows": len(rows)}
        if exact is not None:
            params = SelectionParams()
            se = select_golden(vectors, data.statuses, EPSILON, params, method="exact")
            sa = select_golden(vectors, data.statuses, EPSILON, params, method="approximate")
            row["steady"] = overlap([p.index for p in se.steady], [p.index for p in sa.steady])
            row["anom"] = overlap([p.index for p in se.anomalies], [p.index for p in sa.anomalies])
            row["clusters"] = overlap([p.cluster for p in se.steady], [p.cluster for p in sa.steady])
            row["steady_labels"] = overlap([int(data.labels[p.index]) for p in se.steady],
                                           [int(data.labels[p.index]) for p in sa.steady])
        accuracy.append(row)
    print("\napproximate vs exact")
    print(f"{'n':>7} {'rows':>6} {'Spearman':>9} {'median rel err':>15} {'steady overlap':>15} "
          f"{'steady true-cluster overlap':>28} {'anomaly overlap':>16}")
    for row in accuracy:
        fmt = lambda key: f"{row[key]:.3f}" if key in row else "n/a"  # noqa: E731
        print(f"{row['n']:>7} {row['rows']:>6} {row['rho']:>9.4f} {row['rel']:>15.4f} {fmt('steady'):>15} "
              f"{fmt('steady_labels'):>28} {fmt('anom'):>16}")


if __name__ == "__main__":
    main()
