"""Run records: what one pipeline run did, on disk, for the dashboards.

Layout: ``<config.state_dir>/runs/<run_id>/run.json`` (rewritten atomically after every
stage, so a dashboard sees a run in progress). Schema::

    {
      "run_id": "run-20250101T120000-1a2b3c",     # sortable: time first
      "function_name": "generate_review_summary",
      "started_at": "2025-01-01T12:00:00+00:00",  # ISO 8601 UTC
      "finished_at": null | "...",
      "status": "running" | "succeeded" | "failed",
      "trigger": "manual" | "schedule" | "calls" | "feedback" | ...,
      "stages": {                                 # names from evolve.monitor.STAGES
        "<stage>": {"status": "running" | "succeeded" | "skipped" | "failed",
                    "started_at": "...", "duration_s": 1.23,
                    "result": {...} | null,       # small JSON summary
                    "error": null | "ErrorType: message"}
      },
      "result": {...},                            # what TrainingPipeline.run returned
      "decision": {"promoted": bool, "parts": ["model", "hooks"],   # what was promoted
                   "reason": "...", "metrics": {...}}       # metrics["rows"]: the gate's ablation
    }
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..types import utc_now_iso

RUNS_DIR = "runs"
RUN_FILE = "run.json"


def runs_dir(state_dir: Optional[os.PathLike | str] = None) -> Path:
    """``<state_dir>/runs`` (state_dir defaults to the config's)."""
    if state_dir is None:
        from ..config import get_config

        state_dir = get_config().state_dir
    return Path(state_dir) / RUNS_DIR


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"run-{stamp}-{uuid.uuid4().hex[:6]}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file and ``os.replace`` so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def error_text(exc: BaseException | str) -> str:
    """``Type: message``, redacted (provider errors quote keys: "Incorrect API key provided: sk-...")."""
    from ..redaction import redact

    return redact(exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}")


class RunRecorder:
    """Builds one run's record and keeps ``run.json`` current."""

    def __init__(
        self,
        function_name: str,
        state_dir: Optional[os.PathLike | str] = None,
        run_id: Optional[str] = None,
        trigger: str = "manual",
    ) -> None:
        self.run_id = run_id or new_run_id()
        self.path = runs_dir(state_dir) / self.run_id / RUN_FILE
        self._t0: Dict[str, float] = {}
        self.data: Dict[str, Any] = {
            "run_id": self.run_id,
            "function_name": function_name,
            "started_at": utc_now_iso(),
            "finished_at": None,
            "status": "running",
            "trigger": trigger,
            "stages": {},
            "result": {},
            "decision": {"promoted": False, "parts": [], "reason": "not evaluated yet", "metrics": {}},
        }
        self.save()

    @property
    def folder(self) -> Path:
        return self.path.parent

    def save(self) -> None:
        write_json_atomic(self.path, self.data)

    def stage_start(self, stage: str) -> None:
        self._t0[stage] = time.perf_counter()
        self.data["stages"][stage] = {
            "status": "running",
            "started_at": utc_now_iso(),
            "duration_s": None,
            "result": None,
            "error": None,
        }
        self.save()

    def stage_end(
        self, stage: str, status: str, result: Optional[Dict[str, Any]] = None, error: BaseException | str | None = None
    ) -> None:
        entry = self.data["stages"].setdefault(stage, {"started_at": utc_now_iso()})
        entry.update(
            status=status,
            result=result,
            error=None if error is None else error_text(error),
            duration_s=round(time.perf_counter() - self._t0.get(stage, time.perf_counter()), 4),
        )
        self.save()

    def stage_update(self, stage: str, result: Dict[str, Any]) -> None:
        """Publish a running stage's partial result (e.g. the training job id)."""
        self.data["stages"].setdefault(stage, {"status": "running"})["result"] = result
        self.save()

    def decide(
        self, promoted: bool, reason: str, metrics: Optional[Dict[str, Any]] = None, parts: Sequence[str] = ()
    ) -> None:
        self.data["decision"] = {"promoted": promoted, "parts": list(parts), "reason": reason, "metrics": metrics or {}}
        self.save()

    def finish(self, status: str, result: Dict[str, Any]) -> None:
        self.data.update(status=status, result=result, finished_at=utc_now_iso())
        self.save()


def load_run(run_id: str, state_dir: Optional[os.PathLike | str] = None) -> Dict[str, Any]:
    """The record of ``run_id``; FileNotFoundError names the path when it does not exist."""
    path = runs_dir(state_dir) / run_id / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"no run record at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def list_runs(
    state_dir: Optional[os.PathLike | str] = None, function_name: Optional[str] = None, limit: Optional[int] = None
) -> List[Dict[str, Any]]:
    """Run records, newest first (unreadable ones are skipped)."""
    root = runs_dir(state_dir)
    if not root.exists():
        return []
    records: List[Dict[str, Any]] = []
    for folder in sorted(root.iterdir(), reverse=True):
        path = folder / RUN_FILE
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if function_name and record.get("function_name") != function_name:
            continue
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    return records
