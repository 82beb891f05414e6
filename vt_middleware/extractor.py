"""Seed-compatible import path: ``from vt_middleware.extractor import DensityBasedExtractor``."""

from .select.extractor import DensityBasedExtractor
from .types import Candidate

__all__ = ["Candidate", "DensityBasedExtractor"]
