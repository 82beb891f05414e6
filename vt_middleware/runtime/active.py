"""The active (hooks, model routing) pair, swapped atomically.

A call reads ``get_runtime().current()`` once and uses that one immutable
``ActivePair`` for its whole life: calls in flight finish on the old pair,
new calls see the new one, and no call ever mixes the two.

The process-wide runtime boots lazily: the first ``current()`` applies what is recorded
(the last promotion; see ``runtime/sync.py``), so a restarted app serves the promoted pair
without calling anything. An explicit ``activate`` before that first read wins over the
recorded state. Promotion and rollback, recorded for every instance, are ``runtime/live.py``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, List, Mapping, Optional

from ..health import record_internal_error
from .hooks import LoadedHooks


@dataclass(frozen=True)
class ActivePair:
    """Immutable snapshot of what live calls use."""

    hooks: Optional[LoadedHooks] = None
    routes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    generation: int = 0
    label: str = "initial"
    at_ns: int = 0  # the time of the promotion record row it serves (0: not from the record)

    @property
    def hook_version(self) -> Optional[str]:
        return self.hooks.version if self.hooks is not None else None

    def route(self, model: Optional[str]) -> Optional[str]:
        """The model to call for a requested ``model`` (base -> fine-tuned successor)."""
        if model is None:
            return None
        return self.routes.get(model, model)


Listener = Callable[[ActivePair, ActivePair], None]
Bootstrap = Callable[["Runtime"], None]


class Runtime:
    """Holds the current pair and the earlier ones (for inspection; rollback is ``live.Promoter``)."""

    def __init__(self, bootstrap: Optional[Bootstrap] = None, on_reset: Optional[Callable[[], None]] = None) -> None:
        self._lock = threading.Lock()
        self._current = ActivePair()
        self._history: List[ActivePair] = []
        self._listeners: List[Listener] = []
        self._bootstrap = bootstrap
        self._on_reset = on_reset
        self._booted = bootstrap is None
        self._booting = False
        self.epoch = 0  # bumped by reset(): work started before it must not apply after it
        # Re-entrant: the booting thread reads current() again (promoter, watcher) and must
        # pass; other threads wait so their first call already sees the stored pair.
        self._boot_lock = threading.RLock()

    def current(self) -> ActivePair:
        if not self._booted:
            self._boot()
        return self._current  # one attribute read: atomic under the GIL

    def peek(self) -> ActivePair:
        """The current pair without booting (for code that is itself about to set one)."""
        return self._current

    def _boot(self) -> None:
        with self._boot_lock:
            if self._booted or self._booting or self._bootstrap is None:
                return
            self._booting = True
            try:
                self._bootstrap(self)
            except Exception as exc:  # noqa: BLE001 - a stored pair that cannot load: serve as is
                record_internal_error("runtime.bootstrap", exc)
            finally:
                self._booting = False
                self._booted = True

    def activate(
        self,
        *,
        hooks: Optional[LoadedHooks] = None,
        routes: Optional[Mapping[str, str]] = None,
        keep_hooks: bool = False,
        keep_routes: bool = False,
        label: str = "",
        at_ns: int = 0,
    ) -> ActivePair:
        """Make a new pair current in one step. ``keep_*`` carries a half over unchanged."""
        new = self._activate(hooks, routes, keep_hooks, keep_routes, label, at_ns, unless_older=False)
        assert new is not None  # only an unless_older swap is ever refused
        return new

    def activate_unless_older(
        self, *, hooks: Optional[LoadedHooks], routes: Mapping[str, str], label: str, at_ns: int
    ) -> Optional[ActivePair]:
        """:meth:`activate` the pair of the record row of time ``at_ns`` unless the current pair
        serves a newer row (None then). Checked and swapped under one lock, so two
        promoters sharing a runtime never put an older row back over a newer one."""
        return self._activate(hooks, routes, False, False, label, at_ns, unless_older=True)

    def _activate(
        self,
        hooks: Optional[LoadedHooks],
        routes: Optional[Mapping[str, str]],
        keep_hooks: bool,
        keep_routes: bool,
        label: str,
        at_ns: int,
        unless_older: bool,
    ) -> Optional[ActivePair]:
        with self._lock:
            old = self._current
            if unless_older and at_ns < old.at_ns:
                return None
            new = ActivePair(
                hooks=old.hooks if keep_hooks else hooks,
                routes=old.routes if keep_routes else MappingProxyType(dict(routes or {})),
                generation=old.generation + 1,
                label=label or f"generation-{old.generation + 1}",
                at_ns=at_ns,
            )
            self._history.append(old)
            self._current = new
            self._booted = True
        self._notify(old, new)
        return new

    def history(self) -> List[ActivePair]:
        with self._lock:
            return list(self._history)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def reset(self) -> None:
        """Back to the initial pair; the next ``current()`` boots again (under the new config)."""
        if self._on_reset is not None:
            self._on_reset()
        with self._lock:
            self._current = ActivePair()
            self._history.clear()
            self._booted = self._bootstrap is None
            self.epoch += 1

    def _notify(self, old: ActivePair, new: ActivePair) -> None:
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception as exc:  # noqa: BLE001
                record_internal_error("runtime.listener", exc)


def _boot_from_store(runtime: Runtime) -> None:
    from .sync import bootstrap

    bootstrap(runtime)


def _on_reset() -> None:
    from .derived import flush_all
    from .sync import stop_periodic_sync

    stop_periodic_sync()
    flush_all()  # as at exit: what a restarted process reads is written


_runtime = Runtime(bootstrap=_boot_from_store, on_reset=_on_reset)


def get_runtime() -> Runtime:
    """The process-wide runtime live calls read (boots from the store on first ``current()``)."""
    return _runtime
