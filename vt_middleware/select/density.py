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
  rough pynndescent k-NN graph (few trees and iterations) gives each node ``k`` near
  neighbours. A node whose ``k`` found neighbours are all inside epsilon ("saturated")
  certainly has at least ``k`` neighbours, however rough the graph; the rest of its sum is
  estimated from two strata: its own connected component of the graph (all of it up to
  ``sample_size`` members, else a uniform sample of ``sample_size``) and a uniform sample
  of ``sample_size // 2`` rows outside it, each scaled by rows / sampled rows. Every other
  node -- the sparse ones that anomalies come from -- gets its exact density, count and
  top-k neighbours by a matrix product against all rows (few rows, so cheap).
  ``benchmarks/bench_density.py`` measures the error and the time.

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
DEFAULT_SAMPLE_SIZE = 2048  # rows sampled per component for the tail of saturated nodes
KNN_TREES = 4  # pynndescent random-projection trees (its default is ~23 at 100k rows)
KNN_ITERS = 4  # pynndescent NN-descent iterations (its default is ~17 at 100k rows)
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
    components: Optional[np.ndarray] = None  # component per node, when the path computed it

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
        raise ConfigError(f"epsilon must be in (0, 2) (neighbours: cosine similarity >= 1 - epsilon), got {epsilon!r}")
    return value


def as_matrix(vectors: Union[np.ndarray, Sequence[Sequence[float]]]) -> np.ndarray:
    """``vectors`` as a 2-D float32 array; ragged rows, NaN or inf raise DataError."""
    if isinstance(vectors, np.ndarray) and vectors.dtype != object:
        matrix = vectors
    else:
        rows = list(vectors)
        dims = {len(np.ravel(row)) for row in rows}
        if len(dims) > 1:
            raise DataError(
                f"vectors have mixed dimensions {sorted(dims)}; all calls of one function "
                "must be embedded with the same model"
            )
        matrix = np.asarray([np.ravel(row) for row in rows], dtype=np.float32) if rows else np.zeros((0, 0))
    if matrix.ndim != 2:
        raise DataError(f"vectors must be a 2-D (n, d) array, got shape {matrix.shape}")
    matrix = np.asarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(
            f"{len(bad)} vector(s) contain NaN or inf (rows {bad[:10].tolist()}"
            f"{' ...' if len(bad) > 10 else ''}); re-embed those calls"
        )
    return matrix


def normalise_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised float32 copy, mask of rows with non-zero norm)."""
    norms = np.linalg.norm(matrix, axis=1)
    valid = norms > 1e-12
    safe = np.where(valid, norms, 1.0)[:, None]
    return (matrix / safe).astype(np.float32, copy=False) * valid[:, None], valid


def _empty_graph(n: int, k: int, epsilon: float, method: str, valid: np.ndarray) -> DensityGraph:
    return DensityGraph(
        np.zeros(n),
        np.zeros(n),
        np.full((n, k), -1, dtype=np.int64),
        np.zeros((n, k), dtype=np.float32),
        valid,
        epsilon,
        method,
    )


def exact_density(
    vectors: np.ndarray, epsilon: float = 0.3, k: int = DEFAULT_GRAPH_K, block_rows: Optional[int] = None
) -> DensityGraph:
    """Exact densities and top-``k`` neighbour graph by blocked matrix products."""
    epsilon = check_epsilon(epsilon)
    x, valid = normalise_rows(as_matrix(vectors))
    n = len(x)
    k = max(1, min(k, max(n - 1, 1)))
    graph = _empty_graph(n, k, epsilon, "exact", valid)
    if n >= 2:
        exact_rows(x, valid, np.flatnonzero(valid), graph, block_rows)
    return graph


def exact_rows(
    x: np.ndarray, valid: np.ndarray, rows: np.ndarray, graph: DensityGraph, block_rows: Optional[int] = None
) -> None:
    """Fill ``graph``'s exact density, count and top-k neighbours of ``rows`` (indices
    into the normalised ``x``), against every valid row, block by block."""
    n, k = len(x), graph.neighbours.shape[1]
    threshold = graph.threshold
    block = block_rows or max(1, min(n, BLOCK_BYTES // (4 * n)))
    invalid = np.flatnonzero(~valid)
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        sims = x[chunk] @ x.T
        sims[np.arange(len(chunk)), chunk] = -np.inf  # a node is not its own neighbour
        sims[:, invalid] = -np.inf
        inside = sims >= threshold
        counts = inside.sum(axis=1)
        graph.densities[chunk] = np.where(inside, sims, 0.0).sum(axis=1, dtype=np.float64)
        graph.counts[chunk] = counts
        top, top_sims = _top_k(sims, inside, counts, k)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_sims = np.take_along_axis(top_sims, order, axis=1)
        keep = top_sims >= threshold
        graph.neighbours[chunk] = np.where(keep, top, -1)
        graph.weights[chunk] = np.where(keep, top_sims, 0.0)


def _top_k(sims: np.ndarray, inside: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most similar columns inside epsilon, unordered, ``-1``/``-inf``
    padded. Rows with at most ``k`` neighbours take them directly (sparse rows, the
    approximate path's case); only the others pay for an argpartition over all columns."""
    top = np.full((len(sims), k), -1, dtype=np.int64)
    top_sims = np.full((len(sims), k), -np.inf, dtype=np.float32)
    many = np.flatnonzero(counts > k)
    if len(many):
        top[many], top_sims[many] = _top_k_dense(sims[many] if len(many) < len(sims) else sims, k)
    few = np.flatnonzero(counts <= k)
    rows, cols = np.nonzero(inside[few])  # row-major: each row's columns together
    starts = np.cumsum(counts[few]) - counts[few]
    rank = np.arange(len(rows)) - starts[rows]
    top[few[rows], rank] = cols
    top_sims[few[rows], rank] = sims[few[rows], cols]
    return top, top_sims


def _top_k_dense(sims: np.ndarray, k: int, stride: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` largest columns (unordered). The k-th largest of every
    ``stride``-th column is a lower bound of the row's k-th largest, so only columns at
    or above it (about ``stride * k``) are ranked -- much cheaper than an argpartition
    over all columns."""
    if sims.shape[1] < 4 * stride * k:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return part, np.take_along_axis(sims, part, axis=1)
    sub = sims[:, ::stride]
    cut = np.partition(sub, sub.shape[1] - k, axis=1)[:, sub.shape[1] - k]
    rows, cols = np.nonzero(sims >= cut[:, None])
    vals = sims[rows, cols]
    order = np.lexsort((-vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(len(sims)))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    top = np.empty((len(sims), k), dtype=np.int64)
    top_sims = np.empty((len(sims), k), dtype=np.float32)
    top[rows[keep], rank[keep]] = cols[keep]
    top_sims[rows[keep], rank[keep]] = vals[keep]
    return top, top_sims


def graph_components(neighbours: np.ndarray) -> np.ndarray:
    """Connected-component id of every node of a ``-1``-padded neighbour list (the
    edges symmetrised)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, k = neighbours.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(n), k)
    cols = neighbours.ravel()
    keep = cols >= 0
    matrix = coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], cols[keep])), shape=(n, n))
    _, labels = connected_components(matrix.tocsr(), directed=False)
    return labels.astype(np.int64)


def build_knn_index(x: np.ndarray, k: int, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """pynndescent k-NN of normalised rows: (indices (n, k+1), similarities), self included.

    Few trees and iterations on purpose: the graph only has to tell saturated nodes (k
    neighbours inside epsilon -- sound even with a rough graph) from the rest, whose
    densities and neighbours are then computed exactly, and to connect clusters."""
    from pynndescent import NNDescent  # numba compiles on first use (20-60 s on 2 cores)

    index = NNDescent(
        x,
        metric="dot",
        n_neighbors=k + 1,
        random_state=random_state,
        n_trees=KNN_TREES,
        n_iters=KNN_ITERS,
        low_memory=True,
        compressed=True,
        verbose=False,
    )
    indices, distances = index.neighbor_graph
    return indices.astype(np.int64), (1.0 - distances).astype(np.float32)


def approximate_density(
    vectors: np.ndarray,
    epsilon: float = 0.3,
    k: int = DEFAULT_GRAPH_K,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    random_state: int = 0,
    knn: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> DensityGraph:
    """Densities from a pynndescent k-NN graph: exact for unsaturated nodes, k-NN part
    plus a stratified sampled tail for saturated ones (see the module docstring)."""
    epsilon = check_epsilon(epsilon)
    x, valid = normalise_rows(as_matrix(vectors))
    n = len(x)
    k = max(1, min(k, max(n - 2, 1)))
    live = np.flatnonzero(valid)
    if len(live) <= k + 1:  # too few rows for a k-NN index: nothing to approximate
        exact = exact_density(vectors, epsilon, k)
        exact.method = "approximate"
        return exact
    xl = x[live]
    graph = _empty_graph(len(live), k, epsilon, "approximate", np.ones(len(live), dtype=bool))
    indices, sims = knn if knn is not None else build_knn_index(xl, k, random_state)
    own = indices == np.arange(len(xl))[:, None]  # drop each row's self match (duplicates stay)
    sims = np.where(own | (indices < 0), -np.inf, sims)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    indices = np.take_along_axis(indices, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    inside = sims >= graph.threshold
    saturated = inside.all(axis=1)
    graph.densities[:] = np.where(inside, sims, 0.0).sum(axis=1, dtype=np.float64)
    graph.counts[:] = inside.sum(axis=1)
    graph.neighbours[:] = np.where(inside, indices, -1)
    graph.weights[:] = np.where(inside, sims, 0.0)
    exact_rows(xl, graph.valid, np.flatnonzero(~saturated), graph)
    comp = graph_components(graph.neighbours)
    if saturated.any():
        extra_d, extra_c = _stratified_tail(
            xl, np.flatnonzero(saturated), graph.neighbours, comp, graph.threshold, sample_size, random_state
        )
        graph.densities[saturated] += extra_d
        graph.counts[saturated] += extra_c
    full = _empty_graph(n, k, epsilon, "approximate", valid)
    full.densities[live], full.counts[live] = graph.densities, graph.counts
    full.neighbours[live] = np.where(graph.neighbours >= 0, live[np.clip(graph.neighbours, 0, None)], -1)
    full.weights[live] = graph.weights
    full.components = np.arange(n, dtype=np.int64) + (comp.max() + 1)  # zero rows: alone
    full.components[live] = comp
    return full


def _stratified_tail(
    x: np.ndarray,
    rows: np.ndarray,
    knn: np.ndarray,
    comp: np.ndarray,
    threshold: float,
    sample_size: int,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Estimated density/count of each saturated row beyond itself and its k graph
    neighbours, from two strata: its own component of the graph (where its neighbours
    live; all of it up to ``sample_size`` members, else a uniform sample of that many)
    and a uniform sample of ``sample_size // 2`` rows outside it (neighbours the k-NN
    graph did not connect). Each stratum's sum is scaled by rows / sampled rows."""
    n = len(x)
    rng = np.random.default_rng(random_state)
    outside = np.sort(rng.choice(n, size=min(n, max(1, sample_size // 2)), replace=False))
    comp_out = comp[outside]
    extra_d = np.zeros(len(rows))
    extra_c = np.zeros(len(rows))
    members_of = np.split(np.argsort(comp, kind="stable"), np.cumsum(np.bincount(comp))[:-1])
    position = np.full(n, -1, dtype=np.int64)
    by_comp = np.argsort(comp[rows], kind="stable")
    ids, starts = np.unique(comp[rows][by_comp], return_index=True)
    for c, chosen in zip(ids, np.split(by_comp, starts[1:])):
        members = members_of[c]
        sample = (
            members if len(members) <= sample_size else np.sort(rng.choice(members, size=sample_size, replace=False))
        )
        position[sample] = np.arange(len(sample))
        block = max(1, BLOCK_BYTES // (4 * (len(sample) + len(outside))))
        for start in range(0, len(chosen), block):
            part = chosen[start : start + block]
            chunk = rows[part]
            # own component, minus what the sample shares with the exact part (self + k nbrs)
            sims = x[chunk] @ x[sample].T
            d_in, c_in = _inside_sums(sims, threshold)
            known = np.concatenate([chunk[:, None], knn[chunk]], axis=1)
            pos = position[known]
            shared = pos >= 0
            known_sims = np.take_along_axis(sims, np.clip(pos, 0, None), axis=1)  # all inside epsilon: saturated
            d_in -= np.where(shared, known_sims, 0.0).sum(axis=1)
            c_in -= shared.sum(axis=1)
            scale_in = (len(members) - known.shape[1]) / np.maximum(len(sample) - shared.sum(axis=1), 1)
            # outside the component: a uniform sample, scaled by the rows outside
            other = comp_out != c
            d_out, c_out = _inside_sums(x[chunk] @ x[outside[other]].T, threshold)
            scale_out = (n - len(members)) / max(int(other.sum()), 1)
            extra_d[part] = np.maximum(d_in, 0.0) * scale_in + d_out * scale_out
            extra_c[part] = np.maximum(c_in, 0.0) * scale_in + c_out * scale_out
        position[sample] = -1
    return extra_d, extra_c


def _inside_sums(sims: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (sum, count) of the similarities inside epsilon. Zeroes the rest of
    ``sims`` in place (one pass, no temporary copies of the block)."""
    below = sims < threshold
    counts = (sims.shape[1] - below.sum(axis=1)).astype(np.float64)
    np.putmask(sims, below, 0.0)
    return sims.sum(axis=1, dtype=np.float64), counts


def compute_density(
    vectors: Any,
    epsilon: float = 0.3,
    method: Method = "auto",
    k: int = DEFAULT_GRAPH_K,
    approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    random_state: int = 0,
) -> DensityGraph:
    """Density graph of ``vectors``: exact up to ``approx_threshold`` rows, k-NN above
    (``method`` forces one)."""
    if method not in ("auto", "exact", "approximate"):
        raise ConfigError(f"method must be 'auto', 'exact' or 'approximate', got {method!r}")
    matrix = as_matrix(vectors)
    if method == "exact" or (method == "auto" and len(matrix) <= approx_threshold):
        return exact_density(matrix, epsilon, k)
    return approximate_density(matrix, epsilon, k, sample_size, random_state)
