"""Density computation: time and peak memory of the exact path, the approximate path
(rough pynndescent k-NN graph, exact sparse rows, component-stratified tail) and the
seed's all-pairs Python loop, plus the approximate path's error against exact.

    python benchmarks/bench_density.py                 # n = 1k, 10k, 100k
    python benchmarks/bench_density.py --sizes 1000 10000
    python benchmarks/bench_density.py --sizes 100000 --exact-max 100000 --exact-cache /tmp/exact

The first pynndescent call compiles numba code; that warm-up is timed and printed on
its own line, never inside the table. At n above ``--exact-max`` the full exact pass is
not run (minutes on 2 cores): exact densities of a random subset of rows against all
rows give Spearman, and the exact time is extrapolated linearly in rows (labelled
"extrap."); the selection overlap then needs the full exact graph, which
``--exact-cache DIR`` stores after one full run (``--exact-max`` >= n) and reloads in
later runs with a smaller ``--exact-max`` (labelled "cached", with that run's time). The seed loop runs up to
``--seed-max`` rows once (its time depends only on the number of pairs) and is
extrapolated as n^2. Load averages are printed with each size
(the machine is shared).

Selection accuracy: "steady"/"anomaly overlap" compare the approximate path's picks with
the exact path's on the same data; "re-run overlap" compares two approximate runs with
different random states (k-NN graph and samples); "+10% calls" compares the picks on a
random 90% of the calls with the picks on all of them (same calls, and calls within the
dedup threshold of one), i.e. how much the selection churns as similar data arrives.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from typing import Callable, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from synthetic_calls import make_calls
from vt_middleware.select.clusters import SelectionParams
from vt_middleware.select.core import select_from_graph, select_golden
from vt_middleware.select.density import DensityGraph, approximate_density, exact_density, exact_rows, normalise_rows

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


def exact_subset(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact densities of ``rows`` only (against all rows)."""
    x, valid = normalise_rows(vectors)
    graph = DensityGraph(
        np.zeros(len(x)),
        np.zeros(len(x)),
        np.full((len(x), 1), -1),
        np.zeros((len(x), 1), dtype=np.float32),
        valid,
        EPSILON,
        "exact",
    )
    exact_rows(x, valid, rows, graph)
    return graph.densities[rows]


def exact_graph(
    vectors: np.ndarray, cache: Optional[str], key: str, run: bool
) -> Tuple[Optional[DensityGraph], float, float, str]:
    """(full exact graph or None, seconds, peak MiB, label): run when ``run``, else from
    the cache."""
    path = os.path.join(cache, f"exact_{key}.npz") if cache else None
    if not run and path and os.path.exists(path):
        z = np.load(path)
        graph = DensityGraph(z["densities"], z["counts"], z["neighbours"], z["weights"], z["valid"], EPSILON, "exact")
        return graph, float(z["seconds"]), float(z["peak"]), "exact (cached run)"
    if not run:
        return None, 0.0, 0.0, ""  # no cache: the caller extrapolates from a row subset
    graph, seconds, peak = measure(lambda: exact_density(vectors, EPSILON))
    if path:
        os.makedirs(cache, exist_ok=True)
        np.savez(
            path,
            densities=graph.densities,
            counts=graph.counts,
            neighbours=graph.neighbours,
            weights=graph.weights,
            valid=graph.valid,
            seconds=seconds,
            peak=peak,
        )
    return graph, seconds, peak, "exact (blocked numpy)"


def growth_overlap(
    vectors: np.ndarray, statuses: list, x: np.ndarray, picks: list, params: SelectionParams
) -> Tuple[float, float]:
    """Steady picks on a random 90% of the calls vs on all of them (10% new calls of the
    same kind arrived): (share of the picks that are the same calls, share with a pick
    on the 90% within the dedup threshold, i.e. a near-duplicate of it)."""
    base = np.sort(np.random.default_rng(0).permutation(len(vectors))[: int(0.9 * len(vectors))])
    sub = select_golden(vectors[base], [statuses[i] for i in base], EPSILON, params, method="approximate")
    before = [int(base[p.index]) for p in sub.steady]
    if not picks or not before:
        return float("nan"), float("nan")
    near = (x[picks] @ x[before].T).max(axis=1) > params.dedup_threshold
    return overlap(picks, before), float(near.mean())


def load() -> str:
    return "load avg " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def overlap(a: list, b: list) -> float:
    return len(set(a) & set(b)) / max(1, len(set(a)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed-max", type=int, default=1000)
    parser.add_argument("--exact-max", type=int, default=20_000, help="largest n run fully exact")
    parser.add_argument("--exact-cache", default=None, help="folder keeping full exact graphs")
    parser.add_argument("--subset", type=int, default=2000)
    args = parser.parse_args()
    from scipy.stats import spearmanr

    print(load())
    t0 = time.perf_counter()
    approximate_density(make_calls(500, args.dim).vectors, EPSILON)  # numba compile, not timed below
    print(f"pynndescent/numba warm-up (compile, once per process): {time.perf_counter() - t0:.1f} s\n")
    header = f"{'n':>7} {'method':<34} {'time s':>9} {'peak MiB':>9} {'vs seed':>9}"
    print(header)
    print("-" * len(header))
    accuracy = []
    params = SelectionParams()
    seed_runs: dict = {}
    for n in args.sizes:
        data = make_calls(n, args.dim, n_clusters=max(12, n // 1000), n_rare=20, seed=1)
        vectors, statuses = data.vectors, data.statuses
        line = lambda label, sec, mem, ratio: print(  # noqa: E731
            f"{n:>7} {label:<34} {sec:>9.1f} {mem:>9.1f} {ratio:>9}"
        )
        seed_n = min(n, args.seed_max)
        if seed_n not in seed_runs:  # its time depends only on the number of pairs: run once
            seed_runs[seed_n] = measure(lambda: seed_all_pairs(vectors[:seed_n], EPSILON))[1:]
        seed_s, seed_mem = seed_runs[seed_n]
        seed_full = seed_s * (n / seed_n) ** 2
        line(
            "seed all-pairs Python" + ("" if seed_n == n else f" (extrap. {seed_n})"),
            seed_full,
            seed_mem if seed_n == n else float("nan"),
            "1x",
        )
        exact, ex_s, ex_mem, ex_label = exact_graph(
            vectors, args.exact_cache, f"n{n}_d{args.dim}_s1", n <= args.exact_max
        )
        if exact is not None:
            rows, exact_d = np.arange(n), exact.densities
        else:
            rows = np.sort(np.random.default_rng(0).choice(n, args.subset, replace=False))
            exact_d, ex_s, ex_mem = measure(lambda: exact_subset(vectors, rows))
            ex_s *= n / len(rows)
            ex_label = f"exact (extrap. {len(rows)} rows)"
        line(ex_label, ex_s, ex_mem, f"{seed_full / ex_s:.0f}x")
        approx, ap_s, ap_mem = measure(lambda: approximate_density(vectors, EPSILON))
        line("approximate density", ap_s, ap_mem, f"{seed_full / ap_s:.0f}x")
        x = normalise_rows(vectors)[0]
        sa, sel_s, sel_mem = measure(lambda: select_from_graph(x, approx, statuses, params))
        line("  + clusters, steady, anomalies", sel_s, sel_mem, "")
        line(
            "approximate select_golden (sum)", ap_s + sel_s, max(ap_mem, sel_mem), f"{seed_full / (ap_s + sel_s):.0f}x"
        )
        print(f"{'':>7} {load()}")
        row = {
            "n": n,
            "rows": len(rows),
            "rho": spearmanr(exact_d, approx.densities[rows]).statistic,
            "rel": np.median(np.abs(approx.densities[rows] - exact_d) / np.maximum(exact_d, 1)),
        }
        steady = lambda sel: [p.index for p in sel.steady]  # noqa: E731
        rerun = select_golden(vectors, statuses, EPSILON, params, method="approximate", random_state=1)
        row["rerun"] = overlap(steady(sa), steady(rerun))
        row["grow"], row["grow_near"] = growth_overlap(vectors, statuses, x, steady(sa), params)
        if exact is not None:
            se = select_from_graph(x, exact, statuses, params)
            row["steady"] = overlap(steady(se), steady(sa))
            row["anom"] = overlap([p.index for p in se.anomalies], [p.index for p in sa.anomalies])
        accuracy.append(row)
    print(
        "\napproximate vs exact (same data); re-run: approximate, random_state 0 vs 1; "
        "+10% calls: picks on 90% vs all (same call / near-duplicate)"
    )
    print(
        f"{'n':>7} {'rows':>6} {'Spearman':>9} {'median rel err':>15} {'steady overlap':>15} "
        f"{'anomaly overlap':>16} {'re-run steady overlap':>22} {'+10% calls':>11} {'(near)':>7}"
    )
    for row in accuracy:
        fmt = lambda key: f"{row[key]:.3f}" if key in row else "n/a"  # noqa: E731
        print(
            f"{row['n']:>7} {row['rows']:>6} {row['rho']:>9.5f} {row['rel']:>15.4f} {fmt('steady'):>15} "
            f"{fmt('anom'):>16} {fmt('rerun'):>22} {fmt('grow'):>11} {fmt('grow_near'):>7}"
        )
    print(load())


if __name__ == "__main__":
    main()
