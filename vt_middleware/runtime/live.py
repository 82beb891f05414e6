"""What is live, recorded once: promotion and the one rollback.

The promotion record (the store's promotions collection, shared by every app instance) is the
truth about the live (hook version, model routes) pair. A promotion

1. loads the hook version (before anything changes: a version that does not import never goes live),
2. journals the record row (``runtime/pending.py``: one file beside the store, written whole before
   the swap, so it outlives the process; when that fails, nothing changes),
3. swaps the runtime's pair (one reference: calls in flight finish on the old pair),
4. leaves the rest to background writers: the row fsynced and written into the store (then its
   journal file is removed) and the derived files (latest-row mirror, ``ACTIVE``, ``history.jsonl``,
   ``runtime/derived.py``).

Until its store write lands, a row is read from the journal by every reader of the record in a
process sharing the store folder (:meth:`Promoter.promotion_history`, the boot path, instances
following the record, ``vt hooks``, the API); other machines see it once it lands. A process
that dies first leaves the row journaled: the next start serves it and writes it into the store.

Each row carries the stack of pairs a rollback goes back to, so :meth:`Promoter.rollback` needs
only the live row, in memory: ``vt.rollback``, ``vt hooks rollback``, the dashboard, the
auto-rollback of a failing hook version and every instance following the record use it.
A row whose hook version cannot be loaded here (missing or broken) is served with the last
version that validated instead (see :meth:`Promoter.serving_hooks`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from ..config import PerConfig, VTConfig, get_config
from ..errors import ConfigError, StoreError
from ..health import record_internal_error
from ..types import new_id, utc_now_iso
from .active import ActivePair, Runtime, get_runtime
from .derived import DerivedFiles
from .hook_dir import HookDir
from .hooks import LoadedHooks
from .pending import RecordWriter, pending_dir

logger = logging.getLogger("vt_middleware.runtime")

STACK_DEPTH = 32  # pairs a row remembers for rollback


class PromotionLog(Protocol):
    """Where promotion rows are recorded and read back (``store.executions.ExecutionStore``)."""

    def record_promotions(self, promotions: Sequence[Dict[str, Any]]) -> int: ...

    def promotions(self) -> List[Dict[str, Any]]: ...


@dataclass(frozen=True)
class PairState:
    """A live pair in a form that can be recorded and re-applied in another process."""

    routes: Mapping[str, str] = field(default_factory=dict)
    hook_version: Optional[str] = None
    hooks_dir: Optional[str] = None
    promotion_id: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "routes": dict(self.routes),
            "hook_version": self.hook_version,
            "hooks_dir": self.hooks_dir,
            "promotion_id": self.promotion_id,
        }

    def to_row(self) -> Dict[str, Any]:
        return {**self.to_dict(), "routes": json.dumps(dict(self.routes), sort_keys=True)}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PairState:
        routes = row.get("routes") or {}
        return cls(
            routes=json.loads(routes) if isinstance(routes, str) else dict(routes),
            hook_version=row.get("hook_version"),
            hooks_dir=row.get("hooks_dir"),
            promotion_id=row.get("promotion_id"),
        )


def rollback_stack(row: Mapping[str, Any]) -> List[PairState]:
    """The pairs ``row`` can roll back to, oldest first."""
    raw = row.get("previous") or "[]"
    try:
        entries = json.loads(raw) if isinstance(raw, str) else list(raw)
        return [PairState.from_row(entry) for entry in entries]
    except (ValueError, TypeError, AttributeError) as exc:
        logger.warning("promotion row %s has an unreadable rollback stack: %s", row.get("promotion_id"), exc)
        return []


class Promoter:
    """Makes pairs live on a runtime and records them; one per (config, runtime)."""

    def __init__(
        self,
        runtime: Optional[Runtime] = None,
        store: Optional[PromotionLog] = None,
        hooks_dir: Optional[str | Path] = None,
        instance_id: Optional[str] = None,
        config: Optional[VTConfig] = None,
        rollback_after: Optional[int] = None,
    ) -> None:
        self.config = config or get_config()
        self.runtime = runtime or get_runtime()
        self._store = store
        self.hooks_dir = Path(hooks_dir if hooks_dir is not None else self.config.hooks_dir).absolute()
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.rollback_after = rollback_after or self.config.hook_failure_rollback_after
        self._lock = threading.RLock()
        live = self.runtime.peek()  # not current(): that may boot, and booting uses get_promoter()
        self._state = PairState(routes=dict(live.routes), hook_version=live.hook_version)
        self._stack: List[PairState] = []
        self._applied_at_ns = 0  # at_ns of the last row applied or written here
        self._hooks: Dict[Tuple[Optional[str], str], LoadedHooks] = {}
        if live.hooks is not None:
            self._hooks[(None, live.hooks.version)] = live.hooks
        self.files = DerivedFiles(self.config, self.hooks_dir)
        self.records = RecordWriter(pending_dir(self.config), lambda: self.store)
        self.last_swap_s: Optional[float] = None  # the runtime's reference swap alone
        self.last_record_s: Optional[float] = None  # journaling the record row (the store write follows)
        self.auto_rollbacks: List[str] = []

    @property
    def store(self) -> PromotionLog:
        if self._store is None:
            from ..store.executions import get_store

            self._store = get_store()
        return self._store

    # --- changing what is live ------------------------------------------------------------
    def promote(
        self,
        base_model: Optional[str],
        fine_tuned_model: Optional[str],
        hook_version: Optional[str],
        *,
        hooks: Optional[LoadedHooks] = None,
        hooks_dir: Optional[str | Path] = None,
        run_id: Optional[str] = None,
        reason: str = "promote",
        record: bool = True,
    ) -> Dict[str, Any]:
        """Route ``base_model`` to ``fine_tuned_model`` (None: routes unchanged) and make
        ``hook_version`` live (None: hooks unchanged), atomically; return the promotion row.
        Raises (and changes nothing) when the version does not load or the row cannot be journaled."""
        if fine_tuned_model and not base_model:
            raise ConfigError("promote: base_model is required to route to a fine-tuned model")
        folder = str(Path(hooks_dir).absolute()) if hooks_dir is not None else str(self.hooks_dir)
        new_hooks: Optional[LoadedHooks] = None
        if hook_version is not None:
            if hooks is not None:  # loaded by the caller (the gate ran it): wire the auto-rollback
                if hooks.on_repeated_failure is None:
                    hooks.on_repeated_failure = self._on_repeated_failure
                self._hooks[(folder, hook_version)] = hooks
            new_hooks = self._load(folder, hook_version)  # checked before anything changes
        with self._lock:
            current = self.runtime.current()
            routes = dict(current.routes)
            if fine_tuned_model:
                routes[str(base_model)] = fine_tuned_model
            if hook_version is None:
                new_hooks, version, folder_text = current.hooks, current.hook_version, self._state.hooks_dir
            else:
                version, folder_text = hook_version, folder
            state = PairState(routes, version, folder_text, promotion_id=f"promo-{uuid.uuid4().hex[:16]}")
            stack = [*self._stack, self._state][-STACK_DEPTH:]
            row = self._row(
                "promote",
                state,
                stack,
                base_model=base_model,
                fine_tuned_model=fine_tuned_model,
                run_id=run_id,
                reason=reason,
            )
            if record:
                try:
                    self._record(row)
                except Exception as exc:
                    raise StoreError(
                        f"promotion {state.promotion_id} could not be recorded, nothing was "
                        f"made live: {type(exc).__name__}: {exc}"
                    ) from exc
            self._swap(new_hooks, routes, f"promote:{state.promotion_id}", row, state, stack)
        self.files.submit(row, mirror=record)
        return row

    def rollback(self, reason: str = "rollback", record: bool = True, to: Optional[str] = None) -> Dict[str, Any]:
        """Restore the pair before the live one (or the newest earlier pair serving hook version
        ``to``; a version not among them is promoted). Returns ``{"rolled_back": bool, ...row}``.
        The swap happens even when the row cannot be recorded (counted): a rollback is the way
        out of a bad version and must not depend on the store."""
        with self._lock:
            stack = list(self._stack)
            if to is not None:
                while stack and stack[-1].hook_version != to:
                    stack.pop()
                if not stack:
                    replaced = self._state.hook_version
                    row = self.promote(None, None, to, reason=reason, record=record)
                    return {"rolled_back": True, "replaced_hook_version": replaced, **row}
            if not stack:
                return {"rolled_back": False, "reason": "nothing to roll back to", **self._state.to_row()}
            target, stack = stack[-1], stack[:-1]
            replaced = self._state.hook_version
            hooks = self.serving_hooks(target, stack)
            row = self._row("rollback", target, stack, reason=reason)
            recorded = False
            if record:
                try:
                    self._record(row)
                    recorded = True
                except Exception as exc:  # noqa: BLE001 - counted (raised when strict, before any change)
                    record_internal_error("runtime.rollback.record", exc)
            self._swap(hooks, dict(target.routes), f"rollback:{target.promotion_id or 'initial'}", row, target, stack)
        self.files.submit(row, mirror=recorded)
        return {"rolled_back": True, "replaced_hook_version": replaced, **row}

    def apply_row(self, latest: Dict[str, Any], epoch: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """Make a recorded row live unless it is not newer than the local state or was written
        here (or the runtime was reset since ``epoch``); return the row when applied."""
        with self._lock:
            if epoch is not None and self.runtime.epoch != epoch:
                return None
            if int(latest.get("at_ns") or 0) <= self._applied_at_ns or latest.get("instance_id") == self.instance_id:
                return None
            state, stack = PairState.from_row(latest), rollback_stack(latest)
            hooks = self.serving_hooks(state, stack)
            label = f"sync:{state.promotion_id}"
            if self._swap(hooks, dict(state.routes), label, latest, state, stack, unless_older=True) is None:
                return None  # the runtime serves a newer row (another promoter of this process)
        self.files.submit(latest, mirror=True)
        return latest

    def sync_from_store(self, epoch: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """Apply the record's latest row if it is newer than the local one (another instance
        promoted); return the applied row or None."""
        rows = self.promotion_history()
        return self.apply_row(rows[-1], epoch=epoch) if rows else None

    # --- reading ---------------------------------------------------------------------------
    def promotion_history(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Promotion and rollback rows of the record, oldest first: the store's and those still
        journaled on their way to it."""
        waiting = self.records.waiting()  # first: a row landing meanwhile is then in the store's read
        stored = self.store.promotions()
        landed = {r.get("record_id") for r in stored}
        rows = [
            r
            for r in [*stored, *(w for w in waiting if w.get("record_id") not in landed)]
            if r.get("action") in ("promote", "rollback")
        ]
        rows.sort(key=lambda r: int(r.get("at_ns") or 0))
        return rows[-limit:] if limit else rows

    def current_state(self) -> Dict[str, Any]:
        pair = self.runtime.current()
        return {
            **self._state.to_row(),
            "routes": dict(pair.routes),
            "hook_version": pair.hook_version,
            "generation": pair.generation,
            "label": pair.label,
        }

    def flush_files(self, timeout: float = 5.0) -> bool:
        """Wait until the derived files (mirror, ``ACTIVE``, history) show the live row."""
        return self.files.flush(timeout)

    def flush_records(self, timeout: float = 5.0) -> bool:
        """Wait until the rows recorded here are in the store (other instances see them)."""
        return self.records.flush(timeout)

    # --- hooks -------------------------------------------------------------------------------
    def serving_hooks(self, state: PairState, earlier: Sequence[PairState] = ()) -> Optional[LoadedHooks]:
        """The hooks to serve for ``state``: its version, or, when that cannot be loaded here,
        the last version that validated: first those live before it (``earlier``, its rollback
        stack), then the newest older ones in the folder (None when there is none). Counted and logged."""
        if state.hook_version is None:
            return None
        cached = self._hooks.get((state.hooks_dir, state.hook_version))
        if cached is not None:
            return cached
        folder = state.hooks_dir or str(self.hooks_dir)
        try:
            return self._load(folder, state.hook_version)
        except Exception as exc:  # noqa: BLE001 - raised when strict, else served by a fallback
            record_internal_error("runtime.load_hooks", exc)
        hook_dir = HookDir(folder)
        live_before = [
            e.hook_version for e in reversed(earlier) if e.hook_version and (e.hooks_dir or folder) == folder
        ]
        candidates = [v for v in live_before if v != state.hook_version and hook_dir.validated(v)]
        candidates += [v for v in hook_dir.fallbacks(state.hook_version) if v not in candidates]
        for candidate in candidates:
            try:
                hooks = self._load(folder, candidate)
            except Exception as exc:  # noqa: BLE001 - try the next older one
                logger.warning("fallback hook version %s does not load either: %s", candidate, exc)
                continue
            logger.warning(
                "hook version %s cannot be served; serving %s, the last that validated", state.hook_version, candidate
            )
            return hooks
        logger.warning(
            "hook version %s cannot be served and no earlier version validated: no hooks", state.hook_version
        )
        return None

    def _load(self, folder: str, version: str) -> LoadedHooks:
        key = (folder, version)
        cached = self._hooks.get(key)
        if cached is None:
            cached = LoadedHooks.from_file(
                HookDir(folder).hook_path(version),
                version,
                rollback_after=self.rollback_after,
                on_repeated_failure=self._on_repeated_failure,
            )
            self._hooks[key] = cached
        return cached

    def _on_repeated_failure(self, hooks: LoadedHooks) -> None:
        # Runs inside a user's call: roll back in a thread so that call returns now.
        def _rollback() -> None:
            try:
                if self.runtime.current().hooks is hooks:
                    self.auto_rollbacks.append(hooks.version)
                    self.rollback(
                        reason=f"auto: hooks {hooks.version} failed {hooks.rollback_after} calls in a row",
                        record=self._applied_at_ns > 0,
                    )
            except Exception as exc:  # noqa: BLE001
                record_internal_error("runtime.auto_rollback", exc)

        threading.Thread(target=_rollback, name="vt-auto-rollback", daemon=True).start()

    # --- internals -------------------------------------------------------------------------
    def _swap(
        self,
        hooks: Optional[LoadedHooks],
        routes: Dict[str, str],
        label: str,
        row: Optional[Dict[str, Any]],
        state: PairState,
        stack: List[PairState],
        unless_older: bool = False,
    ) -> Optional[ActivePair]:
        at_ns = int(row.get("at_ns") or 0) if row is not None else 0
        started = time.perf_counter()
        if unless_older:
            pair = self.runtime.activate_unless_older(hooks=hooks, routes=routes, label=label, at_ns=at_ns)
        else:
            pair = self.runtime.activate(hooks=hooks, routes=routes, label=label, at_ns=at_ns)
        self.last_swap_s = time.perf_counter() - started
        if pair is not None:
            self._state, self._stack = state, stack
            self._applied_at_ns = max(self._applied_at_ns, at_ns)
        return pair

    def _record(self, row: Dict[str, Any]) -> None:
        started = time.perf_counter()
        self.records.journal(row)
        self.last_record_s = time.perf_counter() - started

    def _row(self, action: str, state: PairState, stack: List[PairState], **extra: Any) -> Dict[str, Any]:
        at_ns = max(time.time_ns(), self._applied_at_ns + 1, self.runtime.peek().at_ns + 1)
        return {
            "action": action,
            "record_id": new_id(),
            **state.to_row(),
            "previous": json.dumps([s.to_dict() for s in stack]),
            "instance_id": self.instance_id,
            "at_ns": at_ns,
            "at": utc_now_iso(),
            **{k: v for k, v in extra.items() if v is not None},
        }


_promoters: PerConfig[Promoter] = PerConfig(lambda config: Promoter(config=config))


def get_promoter() -> Promoter:
    """The process-wide promoter for the current config and runtime."""
    return _promoters.get()


def promote(
    base_model: Optional[str], fine_tuned_model: Optional[str], hook_version: Optional[str], **kwargs: Any
) -> Dict[str, Any]:
    """Make (fine-tuned model routing, hook version) live together; see :meth:`Promoter.promote`."""
    return get_promoter().promote(base_model, fine_tuned_model, hook_version, **kwargs)


def rollback(reason: str = "rollback", to: Optional[str] = None, *, catch_up: bool = False) -> Dict[str, Any]:
    """``vt.rollback()``: restore the previous (model routing, hooks) pair; see :meth:`Promoter.rollback`.
    ``catch_up`` (tools: CLI, dashboard, API): first apply the record's latest row, which this
    process may not have seen, and return once the store and the derived files show the result."""
    promoter = get_promoter()
    if catch_up:
        promoter.sync_from_store()
    outcome = promoter.rollback(reason=reason, to=to)
    if catch_up:
        promoter.flush_records()
        promoter.flush_files()
    return outcome


def sync_from_store() -> Optional[Dict[str, Any]]:
    """Apply a newer promotion made by another instance sharing the store."""
    return get_promoter().sync_from_store()


def promotion_history(limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """Promotions and rollbacks recorded in the store, oldest first (for the dashboards)."""
    return get_promoter().promotion_history(limit)
