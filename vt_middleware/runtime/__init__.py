"""What live calls use right now: the active hook module and model routing."""
from .active import ActivePair, Runtime, get_runtime
from .hooks import LoadedHooks, import_hook_file

__all__ = ["ActivePair", "Runtime", "get_runtime", "LoadedHooks", "import_hook_file"]
