"""The selection core as one pure function over vectors and statuses (no store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from ..errors import DataError
from .anomalies import select_anomalies
from .clusters import Pick, SelectionParams, cluster_labels, components, select_steady
from .density import (
    DEFAULT_APPROX_THRESHOLD,
    DEFAULT_GRAPH_K,
    DEFAULT_SAMPLE_SIZE,
    DensityGraph,
    Method,
    as_matrix,
    compute_density,
    normalise_rows,
)


@dataclass
class Selection:
    """What :func:`select_golden` found: the graph, cluster labels and both pick lists."""

    graph: DensityGraph
    labels: np.ndarray  # DBSCAN-style cluster per node (-1: none)
    component_ids: np.ndarray  # connected component per node
    steady: List[Pick]
    anomalies: List[Pick]


def select_golden(
    vectors: Any,
    statuses: Sequence[str],
    epsilon: float = 0.3,
    params: Optional[SelectionParams] = None,
    method: Method = "auto",
    excluded: Optional[np.ndarray] = None,
    k: int = DEFAULT_GRAPH_K,
    approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    random_state: int = 0,
) -> Selection:
    """Density graph, steady-state picks and anomaly picks of ``vectors`` ((n, d) array).

    ``statuses[i]`` is call i's status (only SUCCESS is picked); ``excluded`` is a boolean
    mask of calls never picked as anomalies (corrected by feedback)."""
    matrix = as_matrix(vectors)
    params = (params or SelectionParams()).resolved(len(matrix))
    if len(statuses) != len(matrix):
        raise DataError(f"{len(statuses)} statuses for {len(matrix)} vectors")
    if excluded is not None and len(excluded) != len(matrix):
        raise DataError(f"excluded mask has {len(excluded)} entries for {len(matrix)} vectors")
    graph = compute_density(matrix, epsilon, method, k, approx_threshold, sample_size, random_state)
    return select_from_graph(normalise_rows(matrix)[0], graph, statuses, params, excluded)


def select_from_graph(
    x: np.ndarray,
    graph: DensityGraph,
    statuses: Sequence[str],
    params: SelectionParams,
    excluded: Optional[np.ndarray] = None,
) -> Selection:
    """Clusters, steady-state and anomaly picks of an already computed density graph
    (``x``: its normalised rows)."""
    params = params.resolved(len(graph))
    labels = cluster_labels(graph, params.min_pts)
    comp = components(graph)
    steady = select_steady(x, graph, statuses, params, labels=labels)
    anomalies = select_anomalies(graph, statuses, params, excluded=excluded, component_ids=comp)
    return Selection(graph, labels, comp, steady, anomalies)
