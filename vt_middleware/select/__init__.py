"""Golden data selection: density on the embedding graph, steady-state clusters,
anomalies, ChatML export. Heavy parts (pynndescent, scipy) load on first use."""

from __future__ import annotations

from typing import Any

__all__ = ["DensityBasedExtractor", "SelectionParams", "compute_density", "select_golden"]


def __getattr__(name: str) -> Any:
    if name == "DensityBasedExtractor":
        from .extractor import DensityBasedExtractor

        return DensityBasedExtractor
    if name == "select_golden":
        from .core import select_golden

        return select_golden
    if name == "compute_density":
        from .density import compute_density

        return compute_density
    if name == "SelectionParams":
        from .clusters import SelectionParams

        return SelectionParams
    raise AttributeError(name)
