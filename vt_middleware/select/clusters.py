"""Steady-state selection: clusters on the epsilon graph, medoids by mass, SemDeDup.

The seed took the ``top_k`` densest nodes; they all sit in the one biggest cluster and
are near-duplicates of each other. Here:

1. **Clusters** (DBSCAN-style on the neighbour graph of :mod:`.density`): a node with at
   least ``min_pts`` neighbours inside epsilon is a *core* node; clusters are the
   connected components of core nodes (edges: each node's ``k`` nearest neighbours inside
   epsilon, symmetrised); a non-core node joins the cluster of its most similar core
   neighbour. Only clusters of at least ``min_cluster_size`` members are steady-state
   regions (default ``max(3, min(10, n // 20))`` for n calls); smaller groups are left
   to :mod:`.anomalies`.
2. **Allocation**: the ``top_k`` picks are shared among clusters in proportion to their
   mass (member count), largest remainder first, at least one per cluster while picks
   last (the largest clusters first).
3. **Medoids first**: within a cluster, members are taken in decreasing mean cosine
   similarity to all the cluster's members (:func:`centrality`). On unit vectors
   ``sum_j x_i . x_j = x_i . sum_j x_j``, so this is one O(n d) product with the cluster
   sum, and the first member is the cluster's exact cosine medoid. Unlike the density
   it has no approximation error and changes little when members are added, so the
   exact and approximate paths (and re-runs) pick the same calls given the same clusters.
   Ties go to the lower row index.
4. **SemDeDup**: a member whose cosine similarity to an already kept pick of its cluster
   exceeds ``dedup_threshold`` is dropped as a near-duplicate; picks a cluster cannot
   fill go to the other clusters, largest first.

Only SUCCESS calls not in ``excluded`` are picked; every call still shapes the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..types import STATUS_SUCCESS
from .density import DensityGraph, graph_components


@dataclass
class SelectionParams:
    """Knobs of steady-state and anomaly selection (see the module docstrings)."""

    top_k: int = 50  # picks per strategy (the seed's meaning)
    min_pts: int = 3  # neighbours a node needs to be a cluster core
    # members a steady-state cluster needs; None: max(3, min(10, n // 20)) for n calls
    min_cluster_size: Optional[int] = None
    dedup_threshold: float = 0.95  # SemDeDup: similarity above which a pick is a duplicate
    min_group_size: int = 2  # members a rare group needs to be an anomaly (1: singletons too)
    per_group: int = 1  # anomaly picks per rare group

    def __post_init__(self) -> None:
        for name in ("top_k", "min_pts", "min_cluster_size", "min_group_size", "per_group"):
            value = getattr(self, name)
            if name == "min_cluster_size" and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not -1.0 <= float(self.dedup_threshold) <= 1.0:
            raise ConfigError(f"dedup_threshold must be a cosine similarity in [-1, 1], got {self.dedup_threshold!r}")

    def resolved(self, n: int) -> SelectionParams:
        """These params with ``min_cluster_size`` fixed for ``n`` calls."""
        from dataclasses import replace

        if self.min_cluster_size is not None:
            return self
        return replace(self, min_cluster_size=max(3, min(10, n // 20)))


@dataclass
class Pick:
    """One selected node: row index, density, cluster/group id, strategy."""

    index: int
    density: float
    cluster: int
    strategy: str


def components(graph: DensityGraph) -> np.ndarray:
    """Connected-component id of every node on the neighbour graph (reused when the
    density path already computed it)."""
    if graph.components is not None:
        return graph.components
    return graph_components(graph.neighbours)


def cluster_labels(graph: DensityGraph, min_pts: int) -> np.ndarray:
    """DBSCAN-style cluster of every node (-1: in no cluster)."""
    n = len(graph)
    labels = np.full(n, -1, dtype=np.int64)
    core = graph.valid & (graph.counts >= min_pts)
    if not core.any():
        return labels
    nbrs = graph.neighbours
    comp = graph_components(np.where(core[:, None] & (nbrs >= 0) & core[np.clip(nbrs, 0, None)], nbrs, -1))
    labels[core] = comp[core]
    # border nodes: the cluster of their most similar core neighbour (neighbours are sorted)
    border = np.flatnonzero(graph.valid & ~core)
    if len(border):
        nbrs = graph.neighbours[border]
        is_core = (nbrs >= 0) & core[np.clip(nbrs, 0, None)]
        has = is_core.any(axis=1)
        first = np.argmax(is_core, axis=1)
        labels[border[has]] = labels[nbrs[has, first[has]]]
    _, labels[labels >= 0] = np.unique(labels[labels >= 0], return_inverse=True)
    return labels


def allocate(sizes: Dict[int, int], budget: int) -> Dict[int, int]:
    """Share ``budget`` among clusters in proportion to size (largest remainder),
    at least one each while the budget lasts, never more than a cluster's size."""
    order = sorted(sizes, key=lambda c: (-sizes[c], c))
    if budget <= 0 or not order:
        return {c: 0 for c in order}
    if budget <= len(order):
        return {c: int(rank < budget) for rank, c in enumerate(order)}
    total = float(sum(sizes.values()))
    quotas = {c: budget * sizes[c] / total for c in order}
    share = {c: max(1, int(quotas[c])) for c in order}
    while sum(share.values()) > budget:  # the minimum of one each overshot: trim the most over
        c = max((c for c in order if share[c] > 1), key=lambda c: share[c] - quotas[c])
        share[c] -= 1
    for c in sorted(order, key=lambda c: (share[c] - quotas[c], -sizes[c])):
        if sum(share.values()) >= budget:
            break
        share[c] += 1
    return {c: min(share[c], sizes[c]) for c in order}


def _dedup_take(x: np.ndarray, ordered: Sequence[int], quota: int, threshold: float, kept: List[int]) -> None:
    """Append to ``kept`` members of ``ordered`` not near-duplicates of a kept one."""
    for i in ordered:
        if len(kept) >= quota:
            return
        if i in kept:
            continue
        if kept and float(np.max(x[kept] @ x[i])) > threshold:
            continue
        kept.append(i)


def centrality(x: np.ndarray, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of every clustered node to its cluster's members (0 for
    nodes in no cluster): ``x_i . sum(x_j, j in c) / |c|`` on normalised rows, so the
    cluster's exact cosine medoid is its argmax. O(n d), no graph involved."""
    scores = np.zeros(len(labels))
    members = np.flatnonzero(valid & (labels >= 0))
    if not len(members):
        return scores
    order = members[np.argsort(labels[members], kind="stable")]
    ids, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    sums = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
    centroid = np.zeros((int(ids.max()) + 1, x.shape[1]))
    centroid[ids] = sums / sizes[:, None]
    scores[members] = np.einsum("ij,ij->i", x[members].astype(np.float64), centroid[labels[members]])
    return scores


def select_steady(
    x: np.ndarray,
    graph: DensityGraph,
    statuses: Sequence[str],
    params: SelectionParams,
    excluded: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
) -> List[Pick]:
    """Mass-proportional, medoid-first, de-duplicated picks (``x``: normalised rows)."""
    n = len(graph)
    params = params.resolved(n)
    labels = cluster_labels(graph, params.min_pts) if labels is None else labels
    eligible = graph.valid & (np.asarray(statuses, dtype=object) == STATUS_SUCCESS) & (labels >= 0)
    if excluded is not None:
        eligible &= ~excluded
    sizes_all = np.bincount(labels[labels >= 0], minlength=1) if n else np.zeros(1, dtype=int)
    eligible &= sizes_all[np.clip(labels, 0, None)] >= params.min_cluster_size
    scores = centrality(x, labels, graph.valid)
    ranked = np.flatnonzero(eligible)
    ranked = ranked[np.lexsort((ranked, -scores[ranked], labels[ranked]))]  # by cluster, central first
    members: Dict[int, List[int]] = {}
    for i in ranked.tolist():
        members.setdefault(int(labels[i]), []).append(i)
    share = allocate({c: int(sizes_all[c]) for c in members}, params.top_k)
    kept: Dict[int, List[int]] = {c: [] for c in members}
    for cluster, indices in members.items():
        _dedup_take(x, indices, share[cluster], params.dedup_threshold, kept[cluster])
    # picks a cluster could not fill (all near-duplicates) go to the others, largest first
    left = params.top_k - sum(len(v) for v in kept.values())
    for cluster in sorted(members, key=lambda c: (-sizes_all[c], c)):
        if left <= 0:
            break
        before = len(kept[cluster])
        _dedup_take(x, members[cluster], before + left, params.dedup_threshold, kept[cluster])
        left -= len(kept[cluster]) - before
    picks = [Pick(i, float(graph.densities[i]), c, "steady") for c, ids in kept.items() for i in ids]
    picks.sort(key=lambda p: (-p.density, p.index))
    return picks[: params.top_k]
