"""Building and running evolution cycles: the pieces ``vt evolve`` and ``POST /pipeline/run`` share.

:func:`build_pipeline` assembles a :class:`~vt_middleware.evolve.pipeline.TrainingPipeline`
from :class:`RunOptions` (extractor over the configured store, optional trainer, gate).
:class:`RunManager` runs one cycle at a time in a background thread and reports its state
(the monitor's :meth:`~vt_middleware.evolve.monitor.PipelineMonitor.summary`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import ConfigError, VTError
from ..types import utc_now_iso

BACKENDS = ("none", "local", "openai")


@dataclass
class RunOptions:
    """What one evolution cycle runs with (the ``vt evolve`` options)."""

    function_name: str
    backend: str = "none"  # trainer: none (hooks only), local (LoRA on CPU), openai (API or base_url server)
    base_model: Optional[str] = None
    base_url: Optional[str] = None
    max_budget_usd: Optional[float] = None
    epochs: int = 3
    max_steps: Optional[int] = None
    epsilon: float = 0.3
    top_k: int = 50
    min_group_size: int = 2
    gate_items: int = 16
    gate_max_tokens: int = 64
    output_dir: str = ".vt/evolve"

    def check(self) -> RunOptions:
        if not isinstance(self.function_name, str) or not self.function_name.strip():
            raise ConfigError("function_name must be a non-empty string")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend (--backend) must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        return self


def make_extractor(epsilon: float = 0.3, top_k: int = 50, min_group_size: int = 2) -> Any:
    from ..extractor import DensityBasedExtractor
    from ..store.executions import get_store

    return DensityBasedExtractor(get_store(), epsilon=epsilon, top_k=top_k, min_group_size=min_group_size)


def make_trainer(
    backend: str,
    base_model: Optional[str],
    base_url: Optional[str],
    budget: Optional[float],
    epochs: int,
    max_steps: Optional[int],
    output_dir: Path,
    monitor: Any,
) -> Any:
    """A trainer for ``backend`` ('local' or 'openai')."""
    if backend == "local":
        from ..train import LocalTrainer
        from ..train.local_models import SMOLLM2_ID

        return LocalTrainer(
            output_dir, base_model=base_model or SMOLLM2_ID, epochs=epochs, max_steps=max_steps, monitor=monitor
        )
    if backend == "openai":
        from ..train import OpenAITrainer

        key = os.environ.get("OPENAI_API_KEY") or ("local" if base_url else None)
        kwargs = {"model": base_model} if base_model else {}
        return OpenAITrainer(
            api_key=key, base_url=base_url, max_budget_usd=budget, n_epochs=epochs, monitor=monitor, **kwargs
        )
    raise ConfigError(f"--backend must be 'local' or 'openai', got {backend!r}")


def build_pipeline(options: RunOptions, monitor: Any) -> Any:
    """The :class:`TrainingPipeline` ``options`` describe, reporting to ``monitor``."""
    from ..config import get_config
    from ..evolve.gate import EvaluationGate, GateConfig
    from ..evolve.pipeline import TrainingPipeline

    options.check()
    output_dir = Path(options.output_dir)
    trainer = None
    if options.backend != "none":
        trainer = make_trainer(
            options.backend,
            options.base_model,
            options.base_url,
            options.max_budget_usd,
            options.epochs,
            options.max_steps,
            output_dir / "models",
            monitor,
        )
    eval_client = None
    if options.base_url:
        from openai import OpenAI

        eval_client = OpenAI(base_url=options.base_url, api_key=os.environ.get("OPENAI_API_KEY", "local"))
    gate = EvaluationGate(config=GateConfig(max_eval_items=options.gate_items, max_tokens=options.gate_max_tokens))
    return TrainingPipeline(
        make_extractor(options.epsilon, options.top_k, options.min_group_size),
        synthesizer_output_dir=get_config().hooks_dir,
        trainer=trainer,
        monitor=monitor,
        base_model=options.base_model,
        eval_client=eval_client,
        gate=gate,
    )


class BusyError(VTError):
    """A cycle is already running (one at a time)."""


class RunManager:
    """Runs one evolution cycle at a time in a background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._job: Optional[Dict[str, Any]] = None
        self._monitor: Any = None
        self._pipeline: Any = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, options: RunOptions) -> Dict[str, Any]:
        """Start a cycle; :class:`BusyError` while one runs. Returns the job's status."""
        from ..evolve.monitor import PipelineMonitor

        options.check()
        with self._lock:
            if self.busy:
                raise BusyError(f"a pipeline run is in progress (job {self._job['job_id']}); try again when it ends")
            self._monitor = PipelineMonitor()
            self._pipeline = None
            self._job = {
                "job_id": f"job-{uuid.uuid4().hex[:12]}",
                "status": "starting",
                "run_id": None,
                "options": asdict(options),
                "accepted_at": utc_now_iso(),
                "finished_at": None,
                "error": None,
                "result": None,
                "_t0": time.monotonic(),
            }
            self._thread = threading.Thread(target=self._run, args=(options,), name="vt-api-run", daemon=True)
            self._thread.start()
        return self.status()

    def _run(self, options: RunOptions) -> None:
        job = self._job
        assert job is not None
        try:
            self._pipeline = build_pipeline(options, self._monitor)
            job["status"] = "running"
            result = self._pipeline.run(
                options.function_name, output_dir=str(Path(options.output_dir) / options.function_name), trigger="api"
            )
            job.update(status="succeeded", result=result)
        except Exception as exc:  # noqa: BLE001 - the run record and the status carry it
            from ..evolve.run_records import error_text

            job.update(status="failed", error=error_text(exc))
        finally:
            job["finished_at"] = utc_now_iso()

    def status(self) -> Dict[str, Any]:
        """The current (or last) job: status, run id once the run record exists, monitor state."""
        with self._lock:
            if self._job is None:
                return {"job_id": None, "status": "idle", "busy": False}
            job = {k: v for k, v in self._job.items() if not k.startswith("_")}
            if job["run_id"] is None and self._pipeline is not None:
                job["run_id"] = self._job["run_id"] = getattr(self._pipeline, "last_run_id", None)
            job["busy"] = self.busy
            job["monitor"] = self._monitor.summary() if self._monitor is not None else None
            return job

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()
