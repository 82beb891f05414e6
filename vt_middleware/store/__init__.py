"""store stage: vt_middleware's rows in VectorWave (LanceDB or Weaviate).

VectorWave's own modules import each other in cycles, so two threads importing it at once
can each get a partially initialised module (``ImportError`` for the rest of the process).
Every import of VectorWave and the first use of the store go through ``IMPORT_LOCK``:
whatever threads come first, the store initialises once.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .executions import ExecutionStore

IMPORT_LOCK = threading.RLock()


def executions_module() -> ModuleType:
    """``vt_middleware.store.executions`` (its VectorWave imports and its first store use
    take ``IMPORT_LOCK`` inside). Not imported while holding ``IMPORT_LOCK``: a thread
    importing the module directly holds the module's import lock and then waits for
    ``IMPORT_LOCK``, so holding them the other way round deadlocks both threads."""
    return importlib.import_module("vt_middleware.store.executions")


def get_store() -> ExecutionStore:
    """The process-wide store for the current config (see ``executions.get_store``)."""
    return executions_module().get_store()


def reset_store() -> None:
    executions_module().reset_store()
