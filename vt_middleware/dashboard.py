"""Seed-compatible names: ``from vt_middleware.dashboard import CLIDashboard``."""

from .dashboards.cli_dashboard import CLIDashboard
from .evolve.monitor import STAGES, PipelineMonitor

__all__ = ["STAGES", "CLIDashboard", "PipelineMonitor"]
