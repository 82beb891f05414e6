"""What live calls use right now: the active hook module and model routing."""

from .active import ActivePair, Runtime, get_runtime
from .hooks import LoadedHooks, import_hook_file

__all__ = ["ActivePair", "LoadedHooks", "Runtime", "get_runtime", "import_hook_file"]
