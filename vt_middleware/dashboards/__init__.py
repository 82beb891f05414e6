"""dashboards stage: PipelineMonitor callbacks, the rich CLIDashboard, the Streamlit app
(``streamlit_app.py``, started by ``vt dashboard``) and its read-only data access (``data.py``)."""
from .cli_dashboard import CLIDashboard
from ..evolve.monitor import STAGES, PipelineMonitor

__all__ = ["CLIDashboard", "PipelineMonitor", "STAGES"]
