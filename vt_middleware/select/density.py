"""Density on the epsilon-graph of call embeddings.

Graph (the seed's definition): node = logged call, edge weight = cosine similarity,
``i`` and ``j`` are neighbours when ``sim(i, j) >= 1 - epsilon``. The density of ``i`` is
``D(i) = sum of sim(i, j) over its neighbours j != i`` (a duplicate row counts as a
neighbour with weight 1; the node itself does not).

Two ways to compute it:

- **exact** (:func:`exact_density`): rows are L2-normalised and ``S = X[block] @ X.T`` is
  computed block by block (memory ``block * n`` floats, never an ``n x n`` matrix); each
  block is thresholded, summed, and its ``k`` most similar neighbours are kept.
- **approximate** (:func:`approximate_density`, used above ``approx_threshold`` rows): a
  pynndescent k-NN graph gives each node its ``k`` nearest neighbours. A node whose k-th
  neighbour is still inside epsilon ("saturated") has more neighbours than the graph
  holds; the rest of its sum is estimated from a uniform sample of ``sample_size`` rows
  (exact matrix product against the sample, scaled by the rows not in the sample). Nodes
  that are not saturated -- the sparse ones that anomalies come from -- get their exact
  density from the graph. ``benchmarks/bench_density.py`` measures the error.

Rows with norm 0 (calls stored without a vector) have no direction: they are excluded
from the graph (density 0, no neighbours, ``valid`` False). NaN/inf and ragged input
raise :class:`~vt_middleware.errors.DataError`; epsilon outside (0, 2) raises
:class:`~vt_middleware.errors.ConfigError`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError

Method = Literal["auto", "exact", "approximate"]

DEFAULT_APPROX_THRESHOLD = 20_000  # rows above which "auto" uses the k-NN graph
DEFAULT_GRAPH_K = 15  # neighbours kept per node (clustering, dedup, approx exact part)
DEFAULT_SAMPLE_SIZE = 8192  # rows sampled for the tail of saturated nodes (approximate)
BLOCK_BYTES = 128 * 1024 * 1024  # similarity block budget of the exact path


@dataclass
class DensityGraph:
    """Densities and the sparse neighbour graph of one set of vectors.

    ``neighbours[i]`` holds up to ``k`` indices of ``i``'s most similar neighbours
    inside epsilon (``-1`` padded, most similar first) and ``weights[i]`` their
    similarities. ``counts[i]`` is the number of neighbours (estimated for saturated
    nodes on the approximate path)."""

    densities: np.ndarray  # (n,) float64
    counts: np.ndarray  # (n,) float64
    neighbours: np.ndarray  # (n, k) int64, -1 = none
    weights: np.ndarray  # (n, k) float32
    valid: np.ndarray  # (n,) bool: False for zero vectors
    epsilon: float
    method: str

    @property
    def threshold(self) -> float:
        return 1.0 - self.epsilon

    def __len__(self) -> int:
        return len(self.densities)


def check_epsilon(epsilon: float) -> float:
    """``epsilon`` as a float in (0, 2); cosine distance lives in [0, 2]."""
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise ConfigError(f"epsilon must be a number in (0, 2), got {epsilon!r}") from None
    if not (0.0 < value < 2.0) or not np.isfinite(value):
        raise ConfigError(f"epsilon must be in (0, 2) (neighbours: cosine similarity >= 1 - epsilon), "
                          f"got {epsilon!r}")
    return value


def as_matrix(vectors: Union[np.ndarray, Sequence[Sequence[float]]]) -> np.ndarray:
    """``vectors`` as a 2-D float32 array; ragged rows, NaN or inf raise DataError."""
    if isinstance(vectors, np.ndarray) and vectors.dtype != object:
        matrix = vectors
    else:
        rows = list(vectors)
        dims = {len(np.ravel(row)) for row in rows}
        if len(dims) > 1:
            raise DataError(f"vectors have mixed dimensions {sorted(dims)}; all calls of one function "
                            "must be embedded with the same model")
        matrix = np.asarray([np.ravel(row) for row in rows], dtype=np.float32) if rows else np.zeros((0, 0))
    if matrix.ndim != 2:
        raise DataError(f"vectors must be a 2-D (n, d) array, got shape {matrix.shape}")
    matrix = np.asarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(f"{len(bad)} vector(s) contain NaN or inf (rows {bad[:10].tolist()}"
                        f"{' ...' if len(bad) > 10 else ''}); re-embed those calls")
    return matrix


def normalise_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised float32 copy, mask of rows with non-zero norm)."""
    norms = np.linalg.norm(matrix, axis=1)
    valid = norms > 1e-12
    safe = np.where(valid, norms, 1.0)[:, None]
    return (matrix / safe).astype(np.float32, copy=False) * valid[:, None], valid


def _empty_graph(n: int, k: int, epsilon: float, method: str, valid: np.ndarray) -> DensityGraph:
    return DensityGraph(np.zeros(n), np.zeros(n), np.full((n, k), -1, dtype=np.int64),
                        np.zeros((n, k), dtype=np.float32), valid, epsilon, method)


def exact_density(vectors: np.ndarray, epsilon: float = 0.3, k: int = DEFAULT_GRAPH_K,
                  block_rows: Optional[int] = None) -> DensityGraph:
    """Exact densities and top-``k`` neighbour graph by blocked matrix products."""
    epsilon = check_epsilon(epsilon)
    x, valid = normalise_rows(as_matrix(vectors))
    n = len(x)
    k = max(1, min(k, max(n - 1, 1)))
    graph = _empty_graph(n, k, epsilon, "exact", valid)
    if n < 2:
        return graph
    threshold = 1.0 - epsilon
    block = block_rows or max(1, min(n, BLOCK_BYTES // (4 * n)))
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = x[start:stop] @ x.T
        rows = np.arange(stop - start)
        sims[rows, np.arange(start, stop)] = -np.inf  # a node is not its own neighbour
        sims[:, ~valid] = -np.inf
        inside = sims >= threshold
        graph.densities[start:stop] = np.where(inside, sims, 0.0).sum(axis=1, dtype=np.float64)
        graph.counts[start:stop] = inside.sum(axis=1)
        _keep_top_k(sims, k, threshold, graph, start)
    graph.densities[~valid] = 0.0
    graph.counts[~valid] = 0
    graph.neighbours[~valid] = -1
    graph.weights[~valid] = 0.0
    return graph


def _keep_top_k(sims: np.ndarray, k: int, threshold: float, graph: DensityGraph, start: int) -> None:
    """Store each row's ``k`` most similar columns that are inside epsilon."""
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else \
        np.tile(np.arange(sims.shape[1]), (len(sims), 1))
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1)
    top = np.take_along_axis(top, order, axis=1)
    top_sims = np.take_along_axis(top_sims, order, axis=1)
    inside = top_sims >= threshold
    stop = start + len(sims)
    width = top.shape[1]
    graph.neighbours[start:stop, :width] = np.where(inside, top, -1)
    graph.weights[start:stop, :width] = np.where(inside, top_sims, 0.0)


def build_knn_index(x: np.ndarray, k: int, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """pynndescent k-NN of normalised rows: (indices (n, k+1), similarities), self included."""
    from pynndescent import NNDescent  # numba compiles on first use (~20 s)

    index = NNDescent(x, metric="dot", n_neighbors=k + 1, random_state=random_state,
                      low_memory=True, compressed=True, verbose=False)
    indices, distances = index.neighbor_graph
    return indices.astype(np.int64), (1.0 - distances).astype(np.float32)


def approximate_density(vectors: np.ndarray, epsilon: float = 0.3, k: int = DEFAULT_GRAPH_K,
                        sample_size: int = DEFAULT_SAMPLE_SIZE, random_state: int = 0,
                        knn: Optional[tuple[np.ndarray, np.ndarray]] = None) -> DensityGraph:
    """Densities from a pynndescent k-NN graph plus a sampled tail for saturated nodes."""
    epsilon = check_epsilon(epsilon)
    x, valid = normalise_rows(as_matrix(vectors))
    n = len(x)
    k = max(1, min(k, max(n - 2, 1)))
    graph = _empty_graph(n, k, epsilon, "approximate", valid)
    live = np.flatnonzero(valid)
    if len(live) < 2:
        return graph
    if len(live) <= k + 1:  # too few rows for a k-NN index: nothing to approximate
        exact = exact_density(vectors, epsilon, k)
        exact.method = "approximate"
        return exact
    threshold = 1.0 - epsilon
    xl = x[live]
    indices, sims = knn if knn is not None else build_knn_index(xl, k, random_state)
    # drop each row's self match (and duplicates of it are kept: they are neighbours)
    own = indices == np.arange(len(xl))[:, None]
    sims = np.where(own | (indices < 0), -np.inf, sims)
    order = np.argsort(-sims, axis=1)[:, :k]
    indices = np.take_along_axis(indices, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    inside = sims >= threshold
    local_density = np.where(inside, sims, 0.0).sum(axis=1, dtype=np.float64)
    local_count = inside.sum(axis=1).astype(np.float64)
    saturated = inside.all(axis=1)
    if saturated.any():
        extra_d, extra_c = _sampled_tail(xl, np.flatnonzero(saturated), indices, threshold,
                                         sample_size, random_state)
        local_density[saturated] += extra_d
        local_count[saturated] += extra_c
    graph.densities[live] = local_density
    graph.counts[live] = local_count
    graph.neighbours[live] = np.where(inside, live[np.clip(indices, 0, None)], -1)
    graph.weights[live] = np.where(inside, sims, 0.0)
    return graph


def _sampled_tail(x: np.ndarray, rows: np.ndarray, knn: np.ndarray, threshold: float,
                  sample_size: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimated density/count of each saturated row beyond its k graph neighbours.

    Unbiased for a uniform sample: the sample's contribution outside the row's own graph
    neighbours (and itself), scaled by (rows outside / sampled rows outside)."""
    n = len(x)
    rng = np.random.default_rng(random_state)
    m = min(sample_size, n)
    sample = np.sort(rng.choice(n, size=m, replace=False))
    in_sample = np.zeros(n, dtype=bool)
    in_sample[sample] = True
    xs = x[sample]
    extra_d = np.zeros(len(rows))
    extra_c = np.zeros(len(rows))
    block = max(1, BLOCK_BYTES // (4 * m))
    for start in range(0, len(rows), block):
        chunk = rows[start:start + block]
        sims = x[chunk] @ xs.T
        inside = sims >= threshold
        total_d = np.where(inside, sims, 0.0).sum(axis=1, dtype=np.float64)
        total_c = inside.sum(axis=1).astype(np.float64)
        # remove what the sample shares with the exactly-counted part (graph nbrs and self)
        known = np.concatenate([chunk[:, None], knn[chunk]], axis=1)
        known_in_sample = in_sample[known]
        pos = np.searchsorted(sample, known)
        pos = np.clip(pos, 0, m - 1)
        known_sims = np.take_along_axis(sims, pos, axis=1)
        shared = known_in_sample & (known_sims >= threshold)
        shared[:, 0] = in_sample[chunk]  # self is always "inside" (sim 1)
        total_d -= np.where(shared, known_sims, 0.0).sum(axis=1)
        total_c -= shared.sum(axis=1)
        sampled_outside = m - known_in_sample.sum(axis=1)
        outside = n - known.shape[1]
        scale = outside / np.maximum(sampled_outside, 1)
        extra_d[start:start + block] = np.maximum(total_d, 0.0) * scale
        extra_c[start:start + block] = np.maximum(total_c, 0.0) * scale
    return extra_d, extra_c


def compute_density(vectors: Any, epsilon: float = 0.3, method: Method = "auto",
                    k: int = DEFAULT_GRAPH_K, approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
                    sample_size: int = DEFAULT_SAMPLE_SIZE, random_state: int = 0) -> DensityGraph:
    """Density graph of ``vectors``: exact up to ``approx_threshold`` rows, k-NN above
    (``method`` forces one)."""
    if method not in ("auto", "exact", "approximate"):
        raise ConfigError(f"method must be 'auto', 'exact' or 'approximate', got {method!r}")
    matrix = as_matrix(vectors)
    if method == "exact" or (method == "auto" and len(matrix) <= approx_threshold):
        return exact_density(matrix, epsilon, k)
    return approximate_density(matrix, epsilon, k, sample_size, random_state)
