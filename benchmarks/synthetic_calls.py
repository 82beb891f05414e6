"""Synthetic call embeddings with known structure, for tests and benchmarks.

Clusters: a random unit centre plus per-member noise of varying size (a tight core and
a looser fringe, pairwise similarities about 0.6-0.95); a share of members are near
copies of another member (similarity > 0.98). Rare groups: a few tight members around
their own centre. Noise: isolated random directions. Failures: one whole cluster and a
share of random members have status ERROR, and some rare groups are failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from vt_middleware.types import STATUS_ERROR, STATUS_SUCCESS

RARE_LABEL_BASE = 100_000  # rare group g has label RARE_LABEL_BASE + g
NOISE_LABEL = -1


@dataclass
class SyntheticCalls:
    vectors: np.ndarray  # (n, d) float32, unit rows
    statuses: List[str]
    labels: np.ndarray  # cluster id, RARE_LABEL_BASE + group, or NOISE_LABEL
    duplicate_of: np.ndarray  # index of the member a near copy copies, else -1

    @property
    def rare_groups(self) -> List[int]:
        """Labels of the planted rare groups whose calls succeeded."""
        return sorted(
            {int(lab) for lab, s in zip(self.labels, self.statuses) if lab >= RARE_LABEL_BASE and s == STATUS_SUCCESS}
        )


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_calls(
    n: int = 2000,
    d: int = 384,
    n_clusters: int = 12,
    n_rare: int = 10,
    rare_size: int = 3,
    noise_fraction: float = 0.01,
    duplicate_fraction: float = 0.2,
    failure_fraction: float = 0.05,
    n_failed_rare: int = 2,
    seed: int = 0,
) -> SyntheticCalls:
    """``n`` calls: Zipf-sized clusters, planted rare groups, noise, failures."""
    rng = np.random.default_rng(seed)
    n_noise = int(noise_fraction * n)
    n_rare_total = (n_rare + n_failed_rare) * rare_size
    n_clustered = n - n_noise - n_rare_total
    if n_clustered < n_clusters:
        raise ValueError("n too small for the requested structure")
    weights = 1.0 / np.arange(1, n_clusters + 1)
    sizes = np.maximum(1, np.floor(weights / weights.sum() * n_clustered)).astype(int)
    sizes[0] += n_clustered - sizes.sum()
    centres = _unit(rng.standard_normal((n_clusters + n_rare + n_failed_rare, d)))
    parts, labels = [], []
    for c, size in enumerate(sizes):
        spread = rng.uniform(0.15, 0.75, size=(size, 1))
        parts.append(centres[c] + spread * rng.standard_normal((size, d)) / np.sqrt(d))
        labels += [c] * size
    for g in range(n_rare + n_failed_rare):
        centre = centres[n_clusters + g]
        parts.append(centre + 0.2 * rng.standard_normal((rare_size, d)) / np.sqrt(d))
        labels += [RARE_LABEL_BASE + g] * rare_size
    parts.append(rng.standard_normal((n_noise, d)))
    labels += [NOISE_LABEL] * n_noise
    vectors = _unit(np.vstack(parts))
    labels_arr = np.asarray(labels)
    duplicate_of = np.full(n, -1)
    clustered = np.flatnonzero(labels_arr[:n_clustered] >= 0)
    copies = rng.choice(clustered, size=int(duplicate_fraction * len(clustered)), replace=False)
    order = np.argsort(labels_arr[:n_clustered], kind="stable")  # members of each cluster, in row order
    bounds = np.cumsum(np.bincount(labels_arr[:n_clustered], minlength=n_clusters))
    for i in copies:
        label = labels_arr[i]
        same = order[(bounds[label - 1] if label else 0) : bounds[label]]
        j = int(rng.choice(same))
        if j != i:
            vectors[i] = _unit(vectors[j][None] + 0.05 * rng.standard_normal((1, d)) / np.sqrt(d))[0]
            duplicate_of[i] = j
    statuses = np.full(n, STATUS_SUCCESS, dtype=object)
    if n_clusters > 2:
        statuses[labels_arr == n_clusters - 1] = STATUS_ERROR  # one cluster of failures
    statuses[rng.random(n) < failure_fraction] = STATUS_ERROR
    for g in range(n_rare, n_rare + n_failed_rare):
        statuses[labels_arr == RARE_LABEL_BASE + g] = STATUS_ERROR
    rare_ok = (labels_arr >= RARE_LABEL_BASE) & (labels_arr < RARE_LABEL_BASE + n_rare)
    statuses[rare_ok] = STATUS_SUCCESS  # planted valid groups stay fully successful
    return SyntheticCalls(vectors, [str(s) for s in statuses], labels_arr, duplicate_of)
