"""Evolver: a background thread that runs the TrainingPipeline when there is reason to.

Triggers (any of): a schedule (``every="10m"``), ``min_new_calls`` new captured calls of the
function, ``min_new_feedback`` new feedback pairs. One run at a time. A failed run is recorded
(its run record says which stage and why), then the evolver backs off exponentially
(``backoff_base_s * 2**(failures-1)``, capped) and retries. Everything the evolver does runs
inside ``suppress_capture()``: its own LLM calls never land in the app's logs. ``status()``
feeds the dashboards and is also written to ``<state_dir>/evolver.json``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

from ..errors import ConfigError
from .run_records import error_text, write_json_atomic

if TYPE_CHECKING:
    from .pipeline import TrainingPipeline

logger = logging.getLogger("vt_middleware.evolve")

STATUS_FILE = "evolver.json"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def parse_interval(every: Union[str, float, int, None]) -> Optional[float]:
    """Seconds of ``every``: a number of seconds or a string like ``"10m"``, ``"1h30m"``, ``"45s"``."""
    if every is None:
        return None
    if isinstance(every, (int, float)) and not isinstance(every, bool):
        if every <= 0:
            raise ConfigError(f"every must be > 0 seconds, got {every}")
        return float(every)
    if isinstance(every, str):
        text = every.strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
            if seconds > 0:
                return seconds
    raise ConfigError(f"every must be seconds or a duration like '10m', '1h30m', '45s'; got {every!r}")


def _iso(ts: Optional[float]) -> Optional[str]:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


class Evolver:
    """Closes the loop for one function in a running app (``vt.Evolver``)."""

    def __init__(
        self,
        pipeline: TrainingPipeline,
        function_name: str,
        every: Union[str, float, None] = None,
        min_new_calls: Optional[int] = 200,
        min_new_feedback: Optional[int] = None,
        *,
        output_dir: Optional[Union[str, Path]] = None,
        check_interval: float = 5.0,
        backoff_base_s: float = 30.0,
        backoff_max_s: float = 3600.0,
        sync: bool = True,
        state_dir: Optional[Union[str, Path]] = None,
    ) -> None:
        if not isinstance(function_name, str) or not function_name:
            raise ConfigError(f"function_name must be a non-empty string, got {function_name!r}")
        for name, value in (("min_new_calls", min_new_calls), ("min_new_feedback", min_new_feedback)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
        if check_interval <= 0 or backoff_base_s < 0 or backoff_max_s < backoff_base_s:
            raise ConfigError("check_interval must be > 0 and 0 <= backoff_base_s <= backoff_max_s")
        self.pipeline = pipeline
        self.function_name = function_name
        self.every_s = parse_interval(every)
        if self.every_s is None and min_new_calls is None and min_new_feedback is None:
            raise ConfigError("Evolver needs a trigger: every=..., min_new_calls=... or min_new_feedback=...")
        self.min_new_calls = min_new_calls
        self.min_new_feedback = min_new_feedback
        self.check_interval = check_interval
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.sync = sync
        from ..config import get_config

        config = get_config()
        self.state_dir = Path(state_dir) if state_dir is not None else Path(config.state_dir)
        self.output_dir = Path(output_dir) if output_dir is not None else self.state_dir / "evolve" / function_name
        self._run_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._state = "stopped"
        self._runs = 0
        self._failures = 0
        self._consecutive_failures = 0
        self._promotions = 0
        self._last_run: Optional[Dict[str, Any]] = None
        self._last_error: Optional[str] = None
        self._next_scheduled: Optional[float] = None
        self._backoff_until: Optional[float] = None
        self._calls_baseline: Optional[int] = None
        self._feedback_baseline: Optional[int] = None
        self._new_calls = 0
        self._new_feedback = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Evolver:
        """Start the background thread (idempotent). Counters start from what is stored now."""
        with self._state_lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            self._take_baselines()
            self._next_scheduled = time.time() + self.every_s if self.every_s else None
            self._state = "idle"
            self._thread = threading.Thread(target=self._loop, name=f"vt-evolver-{self.function_name}", daemon=True)
            self._thread.start()
        self._persist()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop triggering and wait up to ``timeout`` s for a run in progress to end;
        True when the thread has ended."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        stopped = thread is None or not thread.is_alive()
        with self._state_lock:
            self._state = "stopped" if stopped else "stopping"
            if stopped:
                self._thread = None
        self._persist()
        return stopped

    def __enter__(self) -> Evolver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- one run -----------------------------------------------------------------------------
    def run_once(self, trigger: str = "manual") -> Optional[Dict[str, Any]]:
        """Run the pipeline now (waits for a run in progress); returns its result, or None
        when it failed (the error is in ``status()["last_error"]`` and the run record)."""
        from ..call_context import suppress_capture

        with self._run_lock, suppress_capture():
            started = time.time()
            with self._state_lock:
                self._state = "running"
                self._take_baselines()
            self._persist()
            result: Optional[Dict[str, Any]] = None
            error: Optional[BaseException] = None
            try:
                result = self.pipeline.run(
                    function_name=self.function_name, output_dir=str(self.output_dir), trigger=trigger
                )
            except Exception as exc:  # noqa: BLE001 - the evolver survives any failing stage
                error = exc
                logger.warning("evolver run for %s failed: %s", self.function_name, error_text(exc))
            self._after_run(started, trigger, result, error)
            return result

    def _after_run(
        self, started: float, trigger: str, result: Optional[Dict[str, Any]], error: Optional[BaseException]
    ) -> None:
        now = time.time()
        run_id = (result or {}).get("run_id") or self.pipeline.last_run_id
        with self._state_lock:
            self._runs += 1
            self._last_run = {
                "run_id": run_id,
                "trigger": trigger,
                "started_at": _iso(started),
                "finished_at": _iso(now),
                "duration_s": round(now - started, 3),
                "status": "failed" if error else "succeeded",
                "promoted": bool(result and result.get("promoted")),
                "parts": list((result or {}).get("promoted_parts") or []),
                "reason": ((result or {}).get("gate") or {}).get("reason"),
            }
            if error is not None:
                self._failures += 1
                self._consecutive_failures += 1
                self._last_error = f"run {run_id}: {error_text(error)}"
                self._backoff_until = now + self.backoff_s()
                self._state = "backoff"
            else:
                self._consecutive_failures = 0
                self._backoff_until = None
                self._promotions += int(bool(result and result.get("promoted")))
                self._state = "idle"
            if self.every_s:
                self._next_scheduled = now + self.every_s
        self._persist()

    def backoff_s(self) -> float:
        """Current backoff: base * 2**(consecutive failures - 1), capped at ``backoff_max_s``."""
        if self._consecutive_failures == 0:
            return 0.0
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** (self._consecutive_failures - 1))

    # --- triggers ------------------------------------------------------------------------------
    def _take_baselines(self) -> None:
        try:
            from ..store.executions import get_store

            store = get_store()
            self._calls_baseline = store.count(self.function_name) if self.min_new_calls else None
            self._feedback_baseline = len(store.list_feedback(self.function_name)) if self.min_new_feedback else None
            self._new_calls = self._new_feedback = 0
        except Exception as exc:  # noqa: BLE001 - a store hiccup only delays triggers
            self._last_error = f"reading the store: {error_text(exc)}"

    def due(self) -> Optional[str]:
        """The trigger that fires now ("retry", "schedule", "calls", "feedback"), or None."""
        now = time.time()
        with self._state_lock:
            if self._backoff_until is not None:
                return "retry" if now >= self._backoff_until else None
            if self._next_scheduled is not None and now >= self._next_scheduled:
                return "schedule"
        from ..store.executions import get_store

        if (self.min_new_calls and self._calls_baseline is None) or (
            self.min_new_feedback and self._feedback_baseline is None
        ):
            self._take_baselines()  # the store failed when they were taken: take them now
        store = get_store()
        if self.min_new_calls and self._calls_baseline is not None:
            self._new_calls = store.count(self.function_name) - self._calls_baseline
            if self._new_calls >= self.min_new_calls:
                return "calls"
        if self.min_new_feedback and self._feedback_baseline is not None:
            self._new_feedback = len(store.list_feedback(self.function_name)) - self._feedback_baseline
            if self._new_feedback >= self.min_new_feedback:
                return "feedback"
        return None

    def _loop(self) -> None:
        from ..call_context import suppress_capture

        with suppress_capture():
            while not self._stop.is_set():
                try:
                    if self.sync:
                        self._sync()
                    trigger = self.due()
                    if trigger is not None and not self._stop.is_set():
                        self.run_once(trigger)
                    else:
                        self._persist()
                except Exception as exc:  # noqa: BLE001 - the thread must survive store hiccups
                    with self._state_lock:
                        self._last_error = f"trigger check: {error_text(exc)}"
                    logger.warning("evolver trigger check failed: %s", error_text(exc))
                self._stop.wait(self.check_interval)

    def _sync(self) -> None:
        promoter = getattr(self.pipeline, "promoter", None)  # any pipeline-like object may be driven
        sync = getattr(promoter, "sync_from_store", None)  # promoters sharing a store have it
        if callable(sync):
            sync()

    # --- status --------------------------------------------------------------------------------
    def next_trigger_at(self) -> Optional[float]:
        with self._state_lock:
            if self._state == "stopped":
                return None
            if self._backoff_until is not None:
                return self._backoff_until
            return self._next_scheduled

    def status(self) -> Dict[str, Any]:
        """State for the dashboards (also persisted as ``<state_dir>/evolver.json``)::

        {function_name, state: idle|running|backoff|stopping|stopped, runs, failures,
         consecutive_failures, promotions, last_run: {run_id, trigger, started_at, finished_at,
         duration_s, status, promoted, parts, reason}, last_error, next_trigger_at (ISO or null),
         next_trigger_in_s, backoff_s, new_calls, new_feedback,
         triggers: {every_s, min_new_calls, min_new_feedback}, updated_at}
        """
        with self._state_lock:
            next_at = self.next_trigger_at()
            return {
                "function_name": self.function_name,
                "state": self._state,
                "runs": self._runs,
                "failures": self._failures,
                "consecutive_failures": self._consecutive_failures,
                "promotions": self._promotions,
                "last_run": dict(self._last_run) if self._last_run else None,
                "last_error": self._last_error,
                "next_trigger_at": _iso(next_at),
                "next_trigger_in_s": None if next_at is None else round(max(0.0, next_at - time.time()), 3),
                "backoff_s": self.backoff_s(),
                "new_calls": self._new_calls,
                "new_feedback": self._new_feedback,
                "triggers": {
                    "every_s": self.every_s,
                    "min_new_calls": self.min_new_calls,
                    "min_new_feedback": self.min_new_feedback,
                },
                "updated_at": _iso(time.time()),
            }

    def _persist(self) -> None:
        try:
            write_json_atomic(self.state_dir / STATUS_FILE, self.status())
        except OSError as exc:
            logger.warning("cannot write evolver status: %s", exc)
