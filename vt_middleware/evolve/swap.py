"""Promotion and hot swap: model routing and hook version change together, in one step.

``promote(base_model, fine_tuned_model, hook_version)`` loads the hook version, then makes
``(hooks, routes)`` live with ONE ``get_runtime().activate(...)``: a call holds the pair it
read, so calls in flight finish on the old pair and no call mixes the two. The hook
version's ACTIVE pointer (``HookVersionStore.activate``) follows, and the promotion is
recorded in the store so other app instances sharing it converge (``sync_from_store``; a
fresh process applies it on its first live call, see ``runtime/sync.py``).
``rollback()`` (``vt.rollback``) restores the previous pair the same way.

Run either a :class:`Promoter` or a ``runtime.watcher.HookWatcher`` on a hooks dir, not
both: the watcher swaps hooks alone (``keep_routes``), which is right for hooks-only setups.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..config import PerConfig, VTConfig, get_config
from ..errors import ConfigError
from ..health import record_internal_error
from ..runtime.active import ActivePair, Runtime, get_runtime
from ..runtime.hooks import LoadedHooks, version_hook_path
from ..types import utc_now_iso


@dataclass
class PairState:
    """What a promotion makes live, in a form that can be stored and re-applied elsewhere."""

    routes: Dict[str, str] = field(default_factory=dict)
    hook_version: Optional[str] = None
    hooks_dir: Optional[str] = None
    promotion_id: Optional[str] = None

    def to_row(self) -> Dict[str, Any]:
        return {"routes": json.dumps(self.routes, sort_keys=True), "hook_version": self.hook_version,
                "hooks_dir": self.hooks_dir, "promotion_id": self.promotion_id}

    @classmethod
    def from_row(cls, row: Dict[str, Any]) -> "PairState":
        routes = row.get("routes") or "{}"
        return cls(routes=json.loads(routes) if isinstance(routes, str) else dict(routes),
                   hook_version=row.get("hook_version"), hooks_dir=row.get("hooks_dir"),
                   promotion_id=row.get("promotion_id"))


class Promoter:
    """Applies promotions and rollbacks to a runtime; one per (config, runtime)."""

    def __init__(self, runtime: Optional[Runtime] = None, store: Any = None,
                 hooks_dir: Optional[str | Path] = None, instance_id: Optional[str] = None,
                 config: Optional[VTConfig] = None) -> None:
        self.config = config or get_config()
        self.runtime = runtime or get_runtime()
        self._store = store
        self.hooks_dir = Path(hooks_dir) if hooks_dir is not None else Path(self.config.hooks_dir)
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self._lock = threading.RLock()
        self._stack: List[Tuple[ActivePair, PairState]] = []  # pairs to roll back to
        live = self.runtime.peek()  # not current(): that may boot, and booting uses get_promoter()
        self._state = PairState(routes=dict(live.routes), hook_version=live.hook_version)
        self._applied_at_ns = 0  # at_ns of the last promotion row applied or written here
        self._hooks_cache: Dict[Tuple[str, str], LoadedHooks] = {}
        self.last_swap_s: Optional[float] = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from ..store.executions import get_store

            self._store = get_store()
        return self._store

    # --- public ------------------------------------------------------------------------
    def promote(self, base_model: Optional[str], fine_tuned_model: Optional[str], hook_version: Optional[str],
                *, hooks: Optional[LoadedHooks] = None, hooks_dir: Optional[str | Path] = None,
                run_id: Optional[str] = None, reason: str = "promote", record: bool = True) -> Dict[str, Any]:
        """Route ``base_model`` to ``fine_tuned_model`` (None: routes unchanged) and make
        ``hook_version`` live (None: hooks unchanged), atomically; return the promotion row."""
        if fine_tuned_model and not base_model:
            raise ConfigError("promote: base_model is required to route to a fine-tuned model")
        folder = Path(hooks_dir) if hooks_dir is not None else self.hooks_dir
        with self._lock:
            current = self.runtime.current()
            routes = dict(current.routes)
            if fine_tuned_model:
                routes[str(base_model)] = fine_tuned_model
            if hook_version is None:
                new_hooks, folder_text = current.hooks, self._state.hooks_dir
            else:
                new_hooks = hooks if hooks is not None else self._load_hooks(folder, hook_version)
                folder_text = str(folder.resolve())  # other instances may run in another cwd
            state = PairState(routes, hook_version if hook_version is not None else current.hook_version,
                              folder_text, promotion_id=f"promo-{uuid.uuid4().hex[:16]}")
            previous = (current, self._state)
            self._swap(new_hooks, routes, label=f"promote:{state.promotion_id}")
            self._stack.append(previous)
            self._state = state
            if hook_version is not None:
                self._point_active(folder, hook_version, reason)
            row = self._row("promote", state, base_model=base_model, fine_tuned_model=fine_tuned_model,
                            run_id=run_id, reason=reason)
            if record:
                self._record(row)
            return row

    def rollback(self, reason: str = "rollback", record: bool = True) -> Dict[str, Any]:
        """Restore the pair before the last promotion (runtime, ACTIVE pointer, routing).
        Returns ``{"rolled_back": bool, ...state}``; nothing to restore leaves all as is."""
        with self._lock:
            if self._stack:
                pair, state = self._stack.pop()
                hooks = pair.hooks
            else:
                state = self._previous_from_store()
                if state is None:
                    return {"rolled_back": False, "reason": "nothing to roll back to", **self._state.to_row()}
                hooks = (self._load_hooks(Path(state.hooks_dir or self.hooks_dir), state.hook_version)
                         if state.hook_version else None)
            self._swap(hooks, state.routes, label=f"rollback:{state.promotion_id or 'initial'}")
            folder = Path(state.hooks_dir or self._state.hooks_dir or self.hooks_dir)
            self._state = state
            self._point_active(folder, state.hook_version, reason)
            row = self._row("rollback", state, reason=reason)
            if record:
                self._record(row)
            return {"rolled_back": True, **row}

    def sync_from_store(self) -> Optional[Dict[str, Any]]:
        """Apply the store's latest promotion/rollback if it is newer than the local one
        (another instance promoted); return the applied row or None."""
        rows = self.promotion_history()
        return self.apply_row(rows[-1]) if rows else None

    def apply_row(self, latest: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Make a stored promotion/rollback row live unless it is not newer than the local
        state or was written here; return the row when applied."""
        with self._lock:
            if int(latest.get("at_ns") or 0) <= self._applied_at_ns or latest.get("instance_id") == self.instance_id:
                return None
            state = PairState.from_row(latest)
            hooks = (self._load_hooks(Path(state.hooks_dir or self.hooks_dir), state.hook_version)
                     if state.hook_version else None)
            self._swap(hooks, state.routes, label=f"sync:{state.promotion_id}")
            self._stack.clear()  # from now on rollback follows the shared history
            self._state = state
            self._applied_at_ns = int(latest.get("at_ns") or 0)
            self._mirror(latest)
            return latest

    def promotion_history(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Promotion and rollback rows of the shared store, oldest first."""
        rows = [r for r in self.store.promotions() if r.get("action") in ("promote", "rollback")]
        rows.sort(key=lambda r: int(r.get("at_ns") or 0))
        return rows[-limit:] if limit else rows

    def current_state(self) -> Dict[str, Any]:
        pair = self.runtime.current()
        return {**self._state.to_row(), "routes": dict(pair.routes), "hook_version": pair.hook_version,
                "generation": pair.generation, "label": pair.label}

    # --- internals -----------------------------------------------------------------------
    def _swap(self, hooks: Optional[LoadedHooks], routes: Dict[str, str], label: str) -> None:
        started = time.perf_counter()
        self.runtime.activate(hooks=hooks, routes=routes, label=label)
        self.last_swap_s = time.perf_counter() - started

    def _load_hooks(self, folder: Path, version: str) -> LoadedHooks:
        key = (str(folder.resolve()), version)
        cached = self._hooks_cache.get(key)
        if cached is None:
            cached = LoadedHooks.from_file(version_hook_path(folder, version), version,
                                           rollback_after=self.config.hook_failure_rollback_after,
                                           on_repeated_failure=self._on_repeated_failure)
            self._hooks_cache[key] = cached
        return cached

    def _point_active(self, folder: Path, version: Optional[str], reason: str) -> None:
        from ..synthesize.versions import HookVersionStore

        try:
            versions = HookVersionStore(folder)
            if version is None:
                versions.deactivate(reason=reason)
            elif versions.active_version() != version:
                versions.activate(version, reason=reason, force=True)  # the gate already decided
        except Exception as exc:  # noqa: BLE001 - the live swap happened; the pointer is bookkeeping
            record_internal_error("evolve.swap.active_pointer", exc)

    def _on_repeated_failure(self, hooks: LoadedHooks) -> None:
        # Runs inside a user's call: roll back in a thread so that call returns now.
        def _rollback() -> None:
            try:
                if self.runtime.current().hooks is hooks:
                    self.rollback(reason=f"auto: hooks {hooks.version} failed {hooks.rollback_after} calls in a row")
            except Exception as exc:  # noqa: BLE001
                record_internal_error("evolve.swap.auto_rollback", exc)

        threading.Thread(target=_rollback, name="vt-auto-rollback", daemon=True).start()

    def _row(self, action: str, state: PairState, **extra: Any) -> Dict[str, Any]:
        at_ns = max(time.time_ns(), self._applied_at_ns + 1)
        self._applied_at_ns = at_ns
        return {"action": action, **state.to_row(), "instance_id": self.instance_id, "at_ns": at_ns,
                "at": utc_now_iso(), **{k: v for k, v in extra.items() if v is not None}}

    def _record(self, row: Dict[str, Any]) -> None:
        try:
            self.store.record_promotion(row)
        except Exception as exc:  # noqa: BLE001 - the local swap stands; other instances just lag
            record_internal_error("evolve.swap.record", exc)
            return
        self._mirror(row)

    def _mirror(self, row: Dict[str, Any]) -> None:
        """Keep the latest row where a restarted app reads it without opening the store."""
        from ..runtime.sync import write_latest

        try:
            write_latest(self.config, row)
        except Exception as exc:  # noqa: BLE001 - only start-up speed depends on it
            record_internal_error("evolve.swap.mirror", exc)

    def _previous_from_store(self) -> Optional[PairState]:
        """The shared history replayed (promote pushes, rollback pops): the state before the
        current one, or None when there is nothing to go back to."""
        stack: List[PairState] = [PairState()]
        for row in self.promotion_history():
            if row.get("action") == "promote":
                stack.append(PairState.from_row(row))
            elif len(stack) > 1:
                stack.pop()
        return stack[-2] if len(stack) >= 2 else None


_promoters: PerConfig[Promoter] = PerConfig(lambda config: Promoter(config=config))


def get_promoter() -> Promoter:
    """The process-wide promoter for the current config and runtime."""
    return _promoters.get()


def promote(base_model: Optional[str], fine_tuned_model: Optional[str], hook_version: Optional[str],
            **kwargs: Any) -> Dict[str, Any]:
    """Make (fine-tuned model routing, hook version) live together; see :meth:`Promoter.promote`."""
    return get_promoter().promote(base_model, fine_tuned_model, hook_version, **kwargs)


def rollback(reason: str = "rollback") -> Dict[str, Any]:
    """``vt.rollback()``: restore the previous (model routing, hooks) pair."""
    return get_promoter().rollback(reason=reason)


def sync_from_store() -> Optional[Dict[str, Any]]:
    """Apply a newer promotion made by another instance sharing the store."""
    return get_promoter().sync_from_store()


def promotion_history(limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """Promotions and rollbacks recorded in the store, oldest first (for the dashboards)."""
    return get_promoter().promotion_history(limit)
