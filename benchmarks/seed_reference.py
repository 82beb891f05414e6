"""The seed project's selection rules, kept only to compare vt_middleware's selection against."""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from vt_middleware.types import STATUS_SUCCESS


def seed_top_k(densities: np.ndarray, statuses: Sequence[str], top_k: int) -> List[int]:
    """The seed's steady-state rule: the ``top_k`` densest SUCCESS nodes."""
    order = np.argsort(-np.asarray(densities), kind="stable")
    return [int(i) for i in order if statuses[i] == STATUS_SUCCESS][:top_k]


def seed_anomalies(densities: np.ndarray, statuses: Sequence[str], top_k: int) -> List[int]:
    """The seed's anomaly rule: the ``top_k`` least dense SUCCESS nodes."""
    order = np.argsort(np.asarray(densities), kind="stable")
    return [int(i) for i in order if statuses[i] == STATUS_SUCCESS][:top_k]
