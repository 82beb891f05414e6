"""LocalTrainer: LoRA fine-tuning of the local model on CPU (transformers + peft).

Jobs run in background threads, one training at a time per process (the machine is
small). Only assistant tokens carry loss; prompt tokens are masked with -100. A finished
job leaves a PEFT adapter directory with ``vt_model.json`` that
:func:`local_models.load_local_model` (and so the local server) can serve under the
job's ``fine_tuned_model`` id. Status, events and ids follow OpenAI's fine-tuning API.
"""

from __future__ import annotations

import copy
import csv
import math
import random
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..chatml import messages_as_text, read_chat_examples, validate_chat_jsonl
from ..errors import ConfigError, DataError, TrainingError
from .base import TERMINAL_STATUSES, BaseTrainer, logger
from .cost import resolve_epochs
from .local_models import BASE_MODEL_IDS, SMOLLM2_ID, load_base_model, load_tokenizer, write_adapter_manifest

IGNORE_INDEX = -100
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# One training at a time in this process: two jobs on 2 CPU cores only slow each other.
_training_lock = threading.Lock()


@dataclass
class EncodedExample:
    input_ids: List[int]
    labels: List[int]  # IGNORE_INDEX where no loss is taken


@dataclass
class LocalJob:
    """A fine-tuning job run by :class:`LocalTrainer` (fields mirror OpenAI's job object)."""

    id: str
    model: str  # as requested
    base_model: str  # what is actually trained
    training_file: str
    training_path: Path
    hyperparameters: Dict[str, Any]
    suffix: Optional[str] = None
    validation_file: Optional[str] = None
    validation_path: Optional[Path] = None
    seed: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "validating_files"
    fine_tuned_model: Optional[str] = None
    finished_at: Optional[int] = None
    trained_tokens: Optional[int] = None
    error: Optional[Dict[str, Any]] = None
    adapter_dir: Optional[Path] = None
    results_path: Optional[Path] = None
    events: List[Dict[str, Any]] = field(default_factory=list)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_event(self, message: str, level: str = "info", data: Optional[Dict[str, Any]] = None) -> None:
        event = {
            "id": f"ftevent-{uuid.uuid4().hex[:24]}",
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "type": "metrics" if data and "step" in data else "message",
            "data": data or {},
        }
        with self.lock:
            self.events.append(event)

    def status_dict(self) -> Dict[str, Any]:
        with self.lock:
            return {
                "job_id": self.id,
                "status": self.status,
                "model": self.model,
                "base_model": self.base_model,
                "fine_tuned_model": self.fine_tuned_model,
                "trained_tokens": self.trained_tokens,
                "error": dict(self.error) if self.error else None,
                "created_at": self.created_at,
                "finished_at": self.finished_at,
                "training_file": self.training_file,
                "hyperparameters": dict(self.hyperparameters),
                "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            }


def _template_ids(tokenizer: Any, messages: Sequence[Dict[str, str]], add_generation_prompt: bool) -> List[int]:
    encoded = tokenizer.apply_chat_template(
        list(messages), tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoded["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_chat_example(
    tokenizer: Any, messages: Sequence[Dict[str, Any]], max_length: int = 512, tools: Optional[List[Any]] = None
) -> EncodedExample:
    """Token ids of a chat with the chat template; labels only on the assistant turns
    (their text and end-of-turn token), not on the prompt nor on ``weight: 0`` turns. Tool
    use is written as text (``chatml.messages_as_text``), so a turn that calls tools teaches
    the calls, not an empty answer."""
    turns = messages_as_text(list(messages), tools)
    full = _template_ids(tokenizer, turns, add_generation_prompt=False)
    labels = [IGNORE_INDEX] * len(full)
    for index, turn in enumerate(turns):
        if turn["role"] != "assistant" or turn.get("weight", 1) == 0:
            continue
        upto = _template_ids(tokenizer, turns[: index + 1], add_generation_prompt=False)
        start = 0
        if index > 0:
            prompt = _template_ids(tokenizer, turns[:index], add_generation_prompt=True)
            start = _common_prefix(prompt, upto)
        end = _common_prefix(upto, full)
        labels[start:end] = full[start:end]
    return EncodedExample(input_ids=full[:max_length], labels=labels[:max_length])


def _collate(batch: Sequence[EncodedExample], pad_id: int) -> Dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _token_accuracy(logits: Any, labels: Any) -> float:
    predicted = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    return float((predicted[keep] == target[keep]).float().mean()) if bool(keep.any()) else 0.0


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class LocalTrainer(BaseTrainer):
    """LoRA fine-tuning of a local model (``smollm2-135m-instruct``; ``vt-tiny-random`` in tests)."""

    def __init__(
        self,
        output_dir: Union[str, Path],
        base_model: str = SMOLLM2_ID,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.0,
        epochs: int = 3,
        lr: float = 2e-4,
        batch_size: int = 4,
        max_steps: Optional[int] = None,
        max_length: int = 512,
        seed: int = 0,
        monitor: Any = None,
        file_resolver: Optional[Callable[[str], Path]] = None,
    ) -> None:
        if base_model not in BASE_MODEL_IDS:
            raise ConfigError(f"unknown local base model {base_model!r}; choose one of {', '.join(BASE_MODEL_IDS)}")
        if lora_r < 1 or batch_size < 1 or max_length < 8 or lr <= 0:
            raise ConfigError("lora_r and batch_size must be >= 1, max_length >= 8 and lr > 0")
        self.output_dir = Path(output_dir)
        self.base_model = base_model
        self.lora_r, self.lora_alpha, self.lora_dropout = lora_r, lora_alpha, lora_dropout
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.max_steps, self.max_length, self.seed = max_steps, max_length, seed
        self.monitor = monitor
        self._file_resolver = file_resolver
        self._files: Dict[str, Path] = {}
        self._jobs: Dict[str, LocalJob] = {}
        self._threads: Dict[str, threading.Thread] = {}
        self._backends: List[Any] = []

    # --- BaseTrainer ------------------------------------------------------------
    def prepare_data(self, jsonl_path: Union[str, Path]) -> str:
        """Validate ``jsonl_path`` and stage a copy under ``output_dir/files``; returns a file id."""
        report = validate_chat_jsonl(jsonl_path).raise_if_invalid()
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        target = self.output_dir / "files" / f"{file_id}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jsonl_path, target)
        self._files[file_id] = target
        self._log(f"staged {jsonl_path} as {file_id}: {report.n_examples} examples, {report.n_tokens} tokens")
        return file_id

    def start_training(
        self,
        file_id: str,
        model: Optional[str] = None,
        hyperparameters: Optional[Dict[str, Any]] = None,
        suffix: Optional[str] = None,
        validation_file: Optional[str] = None,
        seed: Optional[int] = None,
    ) -> str:
        """Queue a LoRA job on ``file_id``. A ``model`` that is not a local base model
        (e.g. ``gpt-4o-mini-2024-07-18``) trains ``self.base_model`` instead; the job records both."""
        requested = model or self.base_model
        base = requested if requested in BASE_MODEL_IDS else self.base_model
        hyper = self._resolve_hyperparameters(hyperparameters or {})
        job = LocalJob(
            id=f"ftjob-{uuid.uuid4().hex[:24]}",
            model=requested,
            base_model=base,
            training_file=file_id,
            training_path=self._resolve_file(file_id),
            hyperparameters=hyper,
            suffix=suffix,
            validation_file=validation_file,
            validation_path=self._resolve_file(validation_file) if validation_file else None,
            seed=self.seed if seed is None else int(seed),
        )
        job.add_event(f"Created fine-tuning job: {job.id}")
        if base != requested:
            job.add_event(f"Model {requested!r} is not served locally; fine-tuning {base!r} instead")
        self._jobs[job.id] = job
        thread = threading.Thread(target=self._run_job, args=(job,), name=f"vt-train-{job.id}", daemon=True)
        self._threads[job.id] = thread
        thread.start()
        return job.id

    def get_status(self, job_id: str) -> Dict[str, Any]:
        return self.get_job(job_id).status_dict()

    def list_events(self, job_id: str, limit: int = 100) -> List[Dict[str, Any]]:
        job = self.get_job(job_id)
        with job.lock:
            return [dict(e) for e in job.events[-limit:]]

    def cancel(self, job_id: str) -> Dict[str, Any]:
        """Stop the job at its next step; a finished job is left as it is."""
        job = self.get_job(job_id)
        with job.lock:
            if job.status not in TERMINAL_STATUSES:
                job.cancel_requested.set()
                job.status = "cancelled"
                job.finished_at = int(time.time())
        return job.status_dict()

    # --- local extras -------------------------------------------------------------
    def get_job(self, job_id: str) -> LocalJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise TrainingError(f"no fine-tuning job {job_id!r} in this LocalTrainer")
        return job

    def list_jobs(self) -> List[LocalJob]:
        return sorted(self._jobs.values(), key=lambda j: j.created_at)

    def join(self, job_id: str, timeout: Optional[float] = None) -> None:
        """Block until the job's thread ended (tests, scripts)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)

    def register_with(self, backend: Any) -> LocalTrainer:
        """Register each succeeded job's model with ``backend`` (``register_model(model_id, adapter_dir)``),
        e.g. a running local server's backend, so it serves the new id at once."""
        self._backends.append(backend)
        return self

    # --- internals ------------------------------------------------------------------
    def _resolve_file(self, file_id: str) -> Path:
        path = self._files.get(file_id)
        if path is None and self._file_resolver is not None:
            path = self._file_resolver(file_id)
        if path is None or not Path(path).exists():
            raise DataError(f"unknown training file {file_id!r}: stage it with prepare_data() first")
        return Path(path)

    def _resolve_hyperparameters(self, given: Dict[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(given) - {"n_epochs", "batch_size", "learning_rate_multiplier"})
        if unknown:
            raise ConfigError(
                f"unknown hyperparameter(s) {', '.join(unknown)}; "
                f"supported: n_epochs, batch_size, learning_rate_multiplier"
            )
        n_epochs = given.get("n_epochs", "auto")
        n_epochs = self.epochs if n_epochs in (None, "auto") else resolve_epochs(n_epochs, 0)
        batch = given.get("batch_size", "auto")
        batch = self.batch_size if batch in (None, "auto") else int(batch)
        multiplier = given.get("learning_rate_multiplier", "auto")
        multiplier = 1.0 if multiplier in (None, "auto") else float(multiplier)
        if batch < 1 or multiplier <= 0:
            raise ConfigError("batch_size must be >= 1 and learning_rate_multiplier > 0")
        return {"n_epochs": n_epochs, "batch_size": batch, "learning_rate_multiplier": multiplier}

    def _set_status(self, job: LocalJob, status: str) -> bool:
        """Move ``job`` to ``status`` unless it was cancelled meanwhile; False if cancelled."""
        with job.lock:
            if job.cancel_requested.is_set():
                return False
            job.status = status
            return True

    def _run_job(self, job: LocalJob) -> None:
        try:
            report = validate_chat_jsonl(job.training_path)
            if not report.ok:
                raise DataError("invalid training file: " + "; ".join(report.errors[:5]))
            job.add_event(f"Files validated: {report.n_examples} examples")
            if not self._set_status(job, "queued"):
                return
            with _training_lock:
                if not self._set_status(job, "running"):
                    return
                job.add_event("Fine-tuning job started")
                self._train(job)
        except Exception as exc:  # noqa: BLE001 - the job records every failure
            code = "invalid_training_file" if isinstance(exc, DataError) else "training_failed"
            logger.warning("fine-tuning job %s failed: %s", job.id, exc)
            with job.lock:
                if job.status != "cancelled":
                    job.status = "failed"
                    job.error = {"code": code, "message": str(exc), "param": None}
                    job.finished_at = int(time.time())
            job.add_event(f"Fine-tuning job failed: {exc}", level="error")

    def _train(self, job: LocalJob) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        tokenizer = load_tokenizer()
        examples = [
            encode_chat_example(tokenizer, ex["messages"], self.max_length, ex.get("tools"))
            for ex in read_chat_examples(job.training_path)
        ]
        examples = [e for e in examples if any(label != IGNORE_INDEX for label in e.labels)]
        if not examples:
            raise DataError(
                "the training file has no assistant tokens to learn from "
                "(every assistant message has weight 0 or was truncated away)"
            )
        hyper = job.hyperparameters
        epochs, batch_size = int(hyper["n_epochs"]), int(hyper["batch_size"])
        steps_per_epoch = math.ceil(len(examples) / batch_size)
        total_steps = steps_per_epoch * epochs
        if self.max_steps:
            total_steps = min(total_steps, self.max_steps)

        torch.manual_seed(job.seed)
        model = get_peft_model(
            copy.deepcopy(load_base_model(job.base_model)),
            LoraConfig(
                r=self.lora_r,
                lora_alpha=self.lora_alpha,
                lora_dropout=self.lora_dropout,
                target_modules=list(LORA_TARGETS),
                task_type="CAUSAL_LM",
            ),
        )
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr * float(hyper["learning_rate_multiplier"]))
        order_rng = random.Random(job.seed)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        rows: List[Dict[str, Any]] = []
        step, trained_tokens = 0, 0
        while step < total_steps:
            order = list(range(len(examples)))
            order_rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                if job.cancel_requested.is_set():
                    job.add_event("Fine-tuning job cancelled")
                    return
                batch = _collate([examples[i] for i in order[start : start + batch_size]], pad_id)
                output = model(**batch)
                output.loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                trained_tokens += int(batch["attention_mask"].sum())
                loss = float(output.loss.detach())
                accuracy = _token_accuracy(output.logits.detach(), batch["labels"])
                row = {
                    "step": step,
                    "total_steps": total_steps,
                    "train_loss": round(loss, 6),
                    "train_mean_token_accuracy": round(accuracy, 6),
                }
                rows.append(row)
                job.add_event(f"Step {step}/{total_steps}: training loss={loss:.4f}", data=row)
                with job.lock:
                    job.trained_tokens = trained_tokens
                if step >= total_steps:
                    break
        self._finish(job, model, tokenizer, rows, trained_tokens)

    def _validation_loss(self, model: Any, tokenizer: Any, path: Path) -> Optional[float]:
        import torch

        examples = [
            encode_chat_example(tokenizer, ex["messages"], self.max_length, ex.get("tools"))
            for ex in read_chat_examples(path)
        ]
        examples = [e for e in examples if any(label != IGNORE_INDEX for label in e.labels)]
        if not examples:
            return None
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model.eval()
        losses = []
        with torch.no_grad():
            for start in range(0, len(examples), self.batch_size):
                losses.append(float(model(**_collate(examples[start : start + self.batch_size], pad_id)).loss))
        return sum(losses) / len(losses)

    def _finish(
        self, job: LocalJob, model: Any, tokenizer: Any, rows: List[Dict[str, Any]], trained_tokens: int
    ) -> None:
        short = job.id.split("-")[-1][:8]
        suffix = f":{_safe_name(job.suffix)[:40]}" if job.suffix else ""
        model_id = f"ft:{job.base_model}:vt{suffix}:{short}"
        job_dir = self.output_dir / "jobs" / job.id
        adapter_dir = self.output_dir / "models" / _safe_name(model_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        if job.validation_path is not None:
            valid_loss = self._validation_loss(model, tokenizer, job.validation_path)
            if valid_loss is not None and rows:
                rows[-1]["full_valid_loss"] = round(valid_loss, 6)
                job.add_event(f"Validation loss={valid_loss:.4f}", data=dict(rows[-1]))
        model.save_pretrained(str(adapter_dir))
        write_adapter_manifest(
            adapter_dir,
            job.base_model,
            model_id,
            extra={
                "job_id": job.id,
                "requested_model": job.model,
                "hyperparameters": job.hyperparameters,
                "steps": len(rows),
                "final_train_loss": rows[-1]["train_loss"] if rows else None,
            },
        )
        results = job_dir / "results.csv"
        with results.open("w", newline="") as handle:
            fields = ["step", "train_loss", "train_mean_token_accuracy", "full_valid_loss"]
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        for backend in self._backends:
            backend.register_model(model_id, str(adapter_dir))
        with job.lock:
            if job.cancel_requested.is_set():
                return
            job.fine_tuned_model, job.adapter_dir, job.results_path = model_id, adapter_dir, results
            job.trained_tokens = trained_tokens
            job.status = "succeeded"
            job.finished_at = int(time.time())
        job.add_event(f"New fine-tuned model created: {model_id}")
        job.add_event("The job has successfully completed")
        self._log(f"fine-tuning job {job.id} succeeded: {model_id} ({len(rows)} steps)")
