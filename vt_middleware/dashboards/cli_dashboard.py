"""CLIDashboard: a pipeline run in the terminal (rich).

On a terminal: one live progress bar per stage (extract ... promote) with elapsed time,
training steps and loss while a job runs, errors in red, log lines above the bars.
In a pipe or file: plain lines, no control codes. ``summary()`` prints the final table.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from rich.markup import escape

from ..evolve.monitor import STAGES, PipelineMonitor

_STATUS_STYLE = {"running": "cyan", "succeeded": "green", "skipped": "yellow", "failed": "bold red"}
_STATUS_MARK = {"running": "…", "succeeded": "✓", "skipped": "–", "failed": "✗"}


def _fmt_metrics(metrics: Optional[Dict[str, Any]]) -> str:
    parts = []
    for key, value in (metrics or {}).items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4f}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _brief(result: Optional[Dict[str, Any]]) -> str:
    """One line of a stage's result for the live view."""
    if not result:
        return ""
    if result.get("skipped"):
        return f"skipped: {result.get('reason', '')}"
    shown = {k: v for k, v in result.items() if k not in ("path", "cost", "metrics", "routes") and v is not None}
    return ", ".join(f"{k}={v}" for k, v in shown.items())[:160]


class CLIDashboard(PipelineMonitor):
    """Shows a :class:`TrainingPipeline` run in the terminal (``monitor=CLIDashboard()``)."""

    def __init__(self, console: Any = None, refresh_per_second: float = 4.0, train_line_every: float = 0.1) -> None:
        from rich.console import Console

        super().__init__()
        self.console = console if console is not None else Console()
        self.live = bool(self.console.is_terminal)
        self.refresh_per_second = refresh_per_second
        self.train_line_every = train_line_every  # plain mode: a train line every this share of steps
        self.stages: Dict[str, Dict[str, Any]] = {}
        self.started_at: Optional[float] = None
        self._lock = threading.RLock()
        self._progress: Any = None
        self._tasks: Dict[str, Any] = {}
        self._last_train_share = -1.0

    # --- PipelineMonitor ---------------------------------------------------------------
    def on_stage_start(self, stage: str, total: Optional[int] = None) -> None:
        super().on_stage_start(stage, total)
        with self._lock:
            if self.started_at is None or stage == STAGES[0]:
                self.started_at = time.monotonic()
            self.stages[stage] = {
                "status": "running",
                "t0": time.monotonic(),
                "duration_s": None,
                "total": total,
                "completed": 0,
                "message": "",
                "metrics": {},
                "result": None,
                "error": None,
            }
            if self.live:
                self._ensure_progress()
                task = self._tasks.get(stage)
                if task is None:
                    self._tasks[stage] = self._progress.add_task(self._label(stage), total=total, info="")
                else:
                    self._progress.reset(task, total=total, description=self._label(stage), info="")
            else:
                self._line(f"▶ {stage} started", "cyan")
            if stage == "train":
                self._last_train_share = -1.0

    def on_stage_progress(
        self,
        stage: str,
        completed: int,
        total: Optional[int] = None,
        message: str = "",
        metrics: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().on_stage_progress(stage, completed, total, message, metrics)
        with self._lock:
            entry = self.stages.setdefault(
                stage,
                {
                    "status": "running",
                    "t0": time.monotonic(),
                    "result": None,
                    "error": None,
                    "duration_s": None,
                    "metrics": {},
                },
            )
            entry.update(completed=completed, message=message)
            if total is not None:
                entry["total"] = total
            if metrics:
                entry["metrics"] = {**entry.get("metrics", {}), **metrics}
                if "train_loss" in metrics:
                    entry.setdefault("loss_curve", []).append(metrics["train_loss"])
            info = _fmt_metrics(metrics) or message
            if self.live:
                self._ensure_progress()
                task = self._tasks.get(stage)
                if task is None:
                    task = self._tasks[stage] = self._progress.add_task(self._label(stage), total=entry.get("total"))
                self._progress.update(task, completed=completed, total=entry.get("total"), info=escape(info[:80]))
                self._progress.refresh()  # training events are sparse: show each one now
                return
            total_now = entry.get("total")
            share = completed / total_now if total_now else 0.0
            final = bool(total_now) and completed >= total_now
            if final or total_now is None or share - self._last_train_share >= self.train_line_every:
                self._last_train_share = share
                of = f"/{total_now}" if total_now else ""
                self._line(f"  {stage} {completed}{of} {info}".rstrip())

    def on_stage_complete(self, stage: str, result: Optional[Dict[str, Any]] = None) -> None:
        super().on_stage_complete(stage, result)
        status = "skipped" if (result or {}).get("skipped") else "succeeded"
        self._end(stage, status, result=result)

    def on_stage_error(self, stage: str, error: Union[BaseException, str]) -> None:
        super().on_stage_error(stage, error)
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._end(stage, "failed", error=text)

    def on_log(self, message: str, level: str = "info") -> None:
        super().on_log(message, level)
        with self._lock:
            style = {"error": "bold red", "warning": "yellow"}.get(level, "dim")
            self._line(f"  {message}" if level == "info" else f"  {level}: {message}", style)

    # --- summary -----------------------------------------------------------------------------
    def summary(self, result: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Stop the live view and print the stage table and the run's outcome; return the
        monitor's state (:meth:`PipelineMonitor.summary`) with the outcome. ``result`` (what
        ``TrainingPipeline.run`` returned) adds detail."""
        from rich.table import Table
        from rich.text import Text

        self.close()
        info = self.outcome(result)
        stages = Table(title="Pipeline stages", show_lines=False)
        for column in ("stage", "status", "time", "detail"):
            stages.add_column(column, overflow="fold")
        for stage in [s for s in STAGES if s in self.stages] + [s for s in self.stages if s not in STAGES]:
            entry = self.stages[stage]
            status = entry["status"]
            detail = entry.get("error") or _brief(entry.get("result"))
            duration = entry.get("duration_s")
            stages.add_row(
                stage,
                Text(status, style=_STATUS_STYLE.get(status, "")),
                "" if duration is None else f"{duration:.1f}s",
                Text(detail, style="red" if status == "failed" else ""),
            )
        outcome = Table(title="Outcome", show_header=False)
        outcome.add_column("what", style="bold")
        outcome.add_column("value", overflow="fold")
        row = lambda key, value: outcome.add_row(key, Text(str(value)))  # noqa: E731
        golden = info["golden"]
        row(
            "golden data",
            f"steady {golden.get('steady', 0)}, anomalies {golden.get('anomalies', 0)}, "
            f"examples {golden.get('golden_examples', 0)} (train {golden.get('train', 0)}, "
            f"holdout {golden.get('holdout', 0)})",
        )
        kinds = info["rules_by_kind"]
        row("rules by kind", ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none")
        if kinds and info.get("hook_version"):
            row("hook version", str(info["hook_version"]))
        row("cost estimate", info["cost"] or "n/a")
        row("fine-tuned model", info["fine_tuned_model"] or "none")
        if info.get("final_train_loss") is not None:
            row("train loss", f"{info['first_train_loss']:.4f} → {info['final_train_loss']:.4f}")
        decision = info["gate"]
        verdict = "promote" if decision.get("promote") else "keep incumbent"
        row("gate decision", f"{verdict}: {decision.get('reason', 'not evaluated')}")
        row("promoted", "yes" if info["promoted"] else "no")
        if info["errors"]:
            outcome.add_row(Text("errors", style="red"), Text("; ".join(info["errors"]), style="red"))
        if info["elapsed_s"] is not None:
            outcome.add_row("elapsed", f"{info['elapsed_s']:.1f}s")
        self.console.print(stages)
        self.console.print(outcome)
        return {**super().summary(), **info}

    def outcome(self, result: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """What the run produced, from the stage results (and ``result`` when given)."""
        result = result or {}
        stage_result = lambda name: (self.stages.get(name) or {}).get("result") or {}  # noqa: E731
        extract = stage_result("extract")
        golden = {k: extract.get(k, result.get(k, 0)) for k in ("steady", "anomalies", "golden_examples")}
        golden["train"] = extract.get("train", result.get("train_examples", 0))
        golden["holdout"] = extract.get("holdout", result.get("holdout_examples", 0))
        synth = stage_result("synthesize")
        rule_dicts = result.get("rules") or self._manifest_rules(synth.get("path"))
        from .data import rule_counts

        train_stage = self.stages.get("train") or {}
        train = result.get("train") or {}
        curve = train_stage.get("loss_curve") or ((train.get("metrics") or {}).get("train_loss_curve") or [])
        cost = stage_result("prepare").get("cost") or result.get("cost") or {}
        evaluate = stage_result("evaluate")
        gate = result.get("gate") or {
            "promote": evaluate.get("promote", False),
            "reason": evaluate.get("reason", "not evaluated"),
        }
        elapsed = None if self.started_at is None else time.monotonic() - self.started_at
        ended = [e.get("t_end") for e in self.stages.values() if e.get("t_end")]
        if self.started_at is not None and ended and all(e["status"] != "running" for e in self.stages.values()):
            elapsed = max(ended) - self.started_at
        return {
            "golden": golden,
            "rules_by_kind": rule_counts(rule_dicts),
            "hook_version": synth.get("hook_version") or result.get("hook_version"),
            "cost": cost.get("summary") or (f"${cost['usd']:.4f}" if cost.get("usd") is not None else None),
            "fine_tuned_model": stage_result("train").get("fine_tuned_model") or train.get("fine_tuned_model"),
            "first_train_loss": curve[0] if curve else None,
            "final_train_loss": curve[-1] if curve else None,
            "gate": gate,
            "promoted": bool(result.get("promoted") or (self.stages.get("promote") or {}).get("status") == "succeeded"),
            "errors": [f"{s}: {e['error']}" for s, e in self.stages.items() if e.get("error")],
            "elapsed_s": elapsed,
        }

    def close(self) -> None:
        """Stop the live display (idempotent)."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
                self._tasks.clear()

    # --- internals -----------------------------------------------------------------------------
    @staticmethod
    def _manifest_rules(hook_path: Optional[str]) -> List[Dict[str, Any]]:
        if not hook_path:
            return []
        try:
            manifest = json.loads((Path(hook_path).parent / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return list(manifest.get("rules") or [])

    def _label(self, stage: str, status: str = "running") -> str:
        style = _STATUS_STYLE.get(status, "")
        return f"[{style}]{_STATUS_MARK.get(status, ' ')} {stage:<10}[/]"

    def _ensure_progress(self) -> None:
        if self._progress is not None:
            return
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            transient=False,
        )
        self._progress.start()

    def _end(
        self, stage: str, status: str, result: Optional[Dict[str, Any]] = None, error: Optional[str] = None
    ) -> None:
        with self._lock:
            now = time.monotonic()
            entry = self.stages.setdefault(stage, {"t0": now, "metrics": {}, "total": None, "completed": 0})
            entry.update(status=status, result=result, error=error, t_end=now, duration_s=now - entry.get("t0", now))
            detail = error or _brief(result)
            if entry.get("metrics") and status != "failed":  # keep the last loss visible
                detail = f"{detail} {_fmt_metrics(entry['metrics'])}".strip()
            if self.live:
                self._ensure_progress()
                task = self._tasks.get(stage)
                if task is None:
                    task = self._tasks[stage] = self._progress.add_task(self._label(stage, status), total=1)
                total = next((t.total for t in self._progress.tasks if t.id == task), None)
                done = {"completed": total or 1, "total": total or 1} if status != "failed" else {}
                info = f"[red]{escape(detail[:120])}[/]" if status == "failed" else escape(detail[:120])
                self._progress.update(task, description=self._label(stage, status), info=info, **done)
                self._progress.stop_task(task)
                self._progress.refresh()
                if status == "failed":
                    self._progress.console.print(f"✗ {stage} failed: {error}", style="bold red", markup=False)
            else:
                style = _STATUS_STYLE.get(status, "")
                text = f"{_STATUS_MARK[status]} {stage} {status} in {entry['duration_s']:.1f}s"
                self._line(f"{text}: {detail}" if detail else text, style)
            if stage == STAGES[-1] or status == "failed":
                self.close()

    def _line(self, text: str, style: str = "") -> None:
        console = self._progress.console if self._progress is not None else self.console
        console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)
