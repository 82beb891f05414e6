"""dashboards stage: PipelineMonitor callbacks, the rich CLIDashboard, the Streamlit app
(``streamlit_app.py``, started by ``vt dashboard``) and its read-only data access (``data.py``)."""

from ..evolve.monitor import STAGES, PipelineMonitor
from .cli_dashboard import CLIDashboard

__all__ = ["STAGES", "CLIDashboard", "PipelineMonitor"]
