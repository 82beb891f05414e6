"""What the dashboards show: the service functions of :mod:`vt_middleware.api.service`
(the management API and the CLI use the same ones)."""

from ..api.service import *  # noqa: F403
from ..api.service import __all__  # noqa: F401
