"""Anomaly selection: rare but valid patterns, not noise and not failures.

A call is an anomaly candidate when

- its status is SUCCESS (FAILURE/ERROR calls are never selected),
- users did not correct it as bad (no feedback pair with its ``run_id``),
- it lies in a low-density region: its connected component on the epsilon graph has
  fewer than ``min_cluster_size`` members (bigger components are steady-state regions).

Isolated noise is told apart from a genuine new pattern by **group size**: a component
with at least ``min_group_size`` members (default 2) is a small real group -- the same
kind of request seen more than once -- while a node with fewer (a singleton with no
neighbour inside epsilon) is noise and is skipped. ``min_group_size=1`` keeps singletons.

Each group contributes its ``per_group`` most central members (highest density);
groups are returned rarest first (ascending density, the seed's order), up to ``top_k``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from ..types import STATUS_SUCCESS
from .clusters import Pick, SelectionParams, components
from .density import DensityGraph


def select_anomalies(
    graph: DensityGraph,
    statuses: Sequence[str],
    params: SelectionParams,
    excluded: Optional[np.ndarray] = None,
    component_ids: Optional[np.ndarray] = None,
) -> List[Pick]:
    """Representatives of the small real groups (see the module docstring)."""
    n = len(graph)
    if n == 0:
        return []
    params = params.resolved(n)
    comp = components(graph) if component_ids is None else component_ids
    sizes = np.bincount(comp)
    eligible = graph.valid & (np.asarray(statuses, dtype=object) == STATUS_SUCCESS)
    if excluded is not None:
        eligible &= ~excluded
    size_of = sizes[comp]
    rare = eligible & (size_of >= params.min_group_size) & (size_of < params.min_cluster_size)
    groups: Dict[int, List[int]] = {}
    for i in np.flatnonzero(rare):
        groups.setdefault(int(comp[i]), []).append(int(i))
    rounds: List[List[Pick]] = [[] for _ in range(params.per_group)]
    for group, indices in groups.items():
        indices.sort(key=lambda i: (-graph.densities[i], i))
        for rank, i in enumerate(indices[: params.per_group]):
            rounds[rank].append(Pick(i, float(graph.densities[i]), group, "anomaly"))
    picks: List[Pick] = []
    for batch in rounds:  # every group's first pick before any group's second
        batch.sort(key=lambda p: (p.density, p.index))
        picks.extend(batch)
    return picks[: params.top_k]
