"""Shared data shapes: what a captured call, a feedback pair, a selected candidate,
a synthesised rule and a cost estimate look like. Seed-compatible names and fields
(``ExecutionLog``, ``GoldenCandidate``, ``SelectionStrategy``, ``CostEstimate``)."""

from __future__ import annotations

import json
import re
import time
import uuid as uuid_lib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Dict, List, Optional, Sequence, Union

STATUS_SUCCESS = "SUCCESS"
STATUS_ERROR = "ERROR"


def new_id() -> str:
    return str(uuid_lib.uuid4())


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class FeedbackPair:
    """A human correction: the model said ``bad_output``, it should have said ``fixed_output``."""

    input_prompt: str
    bad_output: str
    fixed_output: str
    context: Dict[str, Any] = field(default_factory=dict)
    pair_id: str = field(default_factory=new_id)
    run_id: Optional[str] = None  # the captured call this corrects, if any
    created_at: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> FeedbackPair:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class CallRecord:
    """One captured call, as the capture layer hands it to the worker.

    ``inputs`` is the real input: ``{"messages": [...]}`` for chat calls,
    ``{"args": {...}}`` for decorated functions. ``output`` is the text the
    user got (after ``intercept_output``); ``raw_output`` the model's text
    before hooks, when different.
    """

    function_name: str
    inputs: Dict[str, Any]
    output: Optional[str]
    status: str = STATUS_SUCCESS
    kind: str = "function"  # "openai" | "langchain" | "function"
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    model_requested: Optional[str] = None
    model_used: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    raw_output: Optional[str] = None
    latency_ms: float = 0.0
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    total_tokens: Optional[int] = None
    hook_version: Optional[str] = None
    run_id: str = field(default_factory=new_id)
    trace_id: Optional[str] = None
    parent_run_id: Optional[str] = None
    timestamp_utc: str = field(default_factory=utc_now_iso)
    created_unix: float = field(default_factory=time.time)

    def embedding_text(self) -> str:
        """The text whose embedding is stored: the input followed by the output."""
        return f"{input_text(self.inputs)}\n{self.output or ''}".strip()

    def to_properties(self) -> Dict[str, Any]:
        """Properties in VectorWave's execution shape plus vt_middleware's own fields."""
        return {
            # VectorWave's own execution fields (its tools read these)
            "trace_id": self.trace_id or self.run_id,
            "span_id": self.run_id,
            "parent_span_id": self.parent_run_id,
            "function_name": self.function_name,
            "timestamp_utc": self.timestamp_utc,
            "duration_ms": self.latency_ms,
            "status": self.status,
            "error_message": self.error_message,
            "error_code": self.error_type,
            "return_value": self.output,
            "exec_source": "vt_middleware",
            # vt_middleware's fields
            "run_id": self.run_id,
            "kind": self.kind,
            "inputs": json.dumps(self.inputs, ensure_ascii=False, default=str),
            "params": json.dumps(self.params, ensure_ascii=False, default=str),
            "raw_output": self.raw_output,
            "model_requested": self.model_requested,
            "model_used": self.model_used,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "hook_version": self.hook_version,
            "created_unix": self.created_unix,
        }

    @classmethod
    def from_properties(cls, props: Dict[str, Any]) -> CallRecord:
        """Inverse of :meth:`to_properties` (tolerates rows VectorWave wrote itself)."""

        def _load(value: Any, default: Dict[str, Any]) -> Dict[str, Any]:
            if isinstance(value, dict):
                return value
            if isinstance(value, str):
                try:
                    loaded = json.loads(value)
                    return loaded if isinstance(loaded, dict) else default
                except ValueError:
                    return default
            return default

        output = props.get("return_value")
        return cls(
            function_name=str(props.get("function_name") or ""),
            inputs=_load(props.get("inputs"), {}),
            output=None if output is None else str(output),
            status=str(props.get("status") or STATUS_SUCCESS),
            kind=str(props.get("kind") or "function"),
            error_type=props.get("error_code"),
            error_message=props.get("error_message"),
            model_requested=props.get("model_requested"),
            model_used=props.get("model_used"),
            params=_load(props.get("params"), {}),
            raw_output=props.get("raw_output"),
            latency_ms=float(props.get("duration_ms") or 0.0),
            prompt_tokens=props.get("prompt_tokens"),
            completion_tokens=props.get("completion_tokens"),
            total_tokens=props.get("total_tokens"),
            hook_version=props.get("hook_version"),
            run_id=str(props.get("run_id") or props.get("span_id") or new_id()),
            trace_id=props.get("trace_id"),
            parent_run_id=props.get("parent_span_id"),
            timestamp_utc=str(props.get("timestamp_utc") or utc_now_iso()),
            created_unix=float(props.get("created_unix") or 0.0),
        )


def input_text(inputs: Dict[str, Any]) -> str:
    """Flatten a recorded input (chat messages or function arguments) to plain text."""
    messages = inputs.get("messages")
    if isinstance(messages, list):
        parts: List[str] = []
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, list):  # OpenAI content parts
                    content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
                parts.append(f"{message.get('role', 'user')}: {content}")
            else:
                parts.append(str(message))
        return "\n".join(parts)
    if "prompt" in inputs and isinstance(inputs["prompt"], str):
        return inputs["prompt"]
    args = inputs.get("args", inputs)
    if isinstance(args, dict):
        return "\n".join(f"{k}: {v}" for k, v in args.items())
    return str(args)


@dataclass
class ExecutionLog:
    """The seed's view of one logged call: uuid, function, output, status and vector.
    :meth:`from_properties` reads a stored row; :meth:`to_call_record` gives the full record."""

    uuid: str
    function_name: str
    return_value: str = ""
    status: str = STATUS_SUCCESS
    vector: Optional[List[float]] = None
    inputs: Dict[str, Any] = field(default_factory=dict)
    timestamp_utc: str = ""

    @classmethod
    def from_properties(
        cls, uuid: str, props: Dict[str, Any], vector: Optional[Sequence[float]] = None
    ) -> ExecutionLog:
        record = CallRecord.from_properties(props)
        return cls(
            uuid=uuid,
            function_name=record.function_name,
            return_value=record.output or "",
            status=record.status,
            vector=None if vector is None else [float(x) for x in vector],
            inputs=record.inputs,
            timestamp_utc=record.timestamp_utc,
        )

    def to_call_record(self) -> CallRecord:
        return CallRecord(
            function_name=self.function_name,
            inputs=dict(self.inputs),
            output=self.return_value,
            status=self.status,
            run_id=self.uuid,
            timestamp_utc=self.timestamp_utc or utc_now_iso(),
        )


class SelectionStrategy(str, Enum):
    """Why a call was selected; equal to the plain strings ``"steady"`` / ``"anomaly"``."""

    STEADY_STATE = "steady"
    ANOMALY = "anomaly"

    def __str__(self) -> str:
        return self.value


@dataclass
class Candidate:
    """A logged call chosen (or considered) as golden data (the seed's ``GoldenCandidate``)."""

    uuid: str
    density: float
    return_value: str
    function_name: str = ""
    strategy: str = ""  # a SelectionStrategy value: "steady" | "anomaly"
    cluster: int = -1
    inputs: Dict[str, Any] = field(default_factory=dict)
    status: str = STATUS_SUCCESS
    run_id: Optional[str] = None


GoldenCandidate = Candidate


_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SEED_REPLACE_RE = re.compile(r'^\s*replace\s*:?\s*"', re.IGNORECASE)
_SEED_REMOVE_RE = re.compile(r'^\s*(remove|delete)\s*:?\s*"', re.IGNORECASE)
_SEED_ADD_RE = re.compile(r'^\s*(add|append)\s*:?\s*"', re.IGNORECASE)


def _quoted(text: str) -> List[str]:
    return [m.group(1).replace('\\"', '"') for m in _QUOTED_RE.finditer(text)]


@dataclass
class Rule:
    """A synthesised hook rule (seed shape plus evidence).

    ``condition``/``action`` are dicts (rules the synthesiser builds) or the seed's
    strings: a condition quoting the text it looks for and an action ``Replace "X"
    with "Y"``, ``Remove: "X"`` or ``Add: "X"``; any other action text becomes guidance
    added to prompts. :meth:`structured` gives the dict form the hook generator uses.
    """

    rule_id: str
    description: str = ""
    condition: Union[Dict[str, Any], str] = field(default_factory=dict)
    action: Union[Dict[str, Any], str] = field(default_factory=dict)
    priority: int = 0
    sources: List[str] = field(default_factory=list)
    kind: str = "replace"
    support: int = 1
    confidence: float = 1.0
    target: str = "output"  # "output" -> intercept_output, "prompt" -> intercept_prompt
    source_pair_index: int = -1  # the seed's link: index of the first pair it came from (-1: none)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @property
    def is_seed_shape(self) -> bool:
        return isinstance(self.condition, str) or isinstance(self.action, str)

    def structured(self) -> Rule:
        """This rule with dict ``condition``/``action`` (itself when already structured)."""
        if not self.is_seed_shape:
            return self
        condition, action = str(self.condition or ""), str(self.action or "")
        anchors = _quoted(condition)
        quoted = _quoted(action)
        scope = None
        description = self.description or f"{condition} -> {action}".strip(" ->")
        # the quoted phrase the seed's replace/remove actions act on, found where the condition quotes it
        phrase = {
            "scope": scope,
            "pattern": re.escape(quoted[0]) if quoted else "",
            "anchor": anchors[0] if anchors else "",
            "ignore_case": False,
        }
        if _SEED_REPLACE_RE.match(action) and len(quoted) >= 2:
            return replace(
                self,
                description=description,
                kind="replace",
                target="output",
                condition=phrase,
                action={"parts": [["lit", quoted[1], None]]},
            )
        if _SEED_REMOVE_RE.match(action) and quoted:
            return replace(
                self,
                description=description,
                kind="remove",
                target="output",
                condition=phrase,
                action={"parts": []},
            )
        if _SEED_ADD_RE.match(action) and quoted:
            return replace(
                self,
                description=description,
                kind="append",
                target="output",
                condition={"scope": scope, "pattern": re.escape(quoted[0])},
                action={"parts": [["lit", quoted[0], None]], "separator": " "},
            )
        guidance = f"\n\n{condition}: {action}" if condition else f"\n\n{action}"
        return replace(
            self,
            description=description,
            kind="prompt",
            target="prompt",
            condition={"scope": scope, "keywords": [], "min_overlap": 0.0},
            action={"block": guidance},
        )


@dataclass(frozen=True)
class CostEstimate:
    """Tokens of one epoch, epochs, billed tokens and the price in USD of a fine-tuning job.
    ``token_count``, ``n_epochs`` and ``estimated_cost_usd`` are the seed's names."""

    model: str
    n_examples: int
    tokens: int
    epochs: int
    billed_tokens: int
    usd: float
    price_per_1m: float
    max_budget_usd: Optional[float] = None

    @property
    def token_count(self) -> int:
        return self.tokens

    @property
    def n_epochs(self) -> int:
        return self.epochs

    @property
    def estimated_cost_usd(self) -> float:
        return self.usd

    @property
    def within_budget(self) -> bool:
        return self.max_budget_usd is None or self.usd <= self.max_budget_usd

    def summary(self) -> str:
        return (
            f"fine-tuning estimate for {self.model}: {self.n_examples} examples, {self.tokens:,} tokens "
            f"x {self.epochs} epochs = {self.billed_tokens:,} billed tokens "
            f"@ ${self.price_per_1m:.2f}/1M = ${self.usd:.4f}"
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            **asdict(self),
            "token_count": self.tokens,
            "n_epochs": self.epochs,
            "estimated_cost_usd": self.usd,
            "within_budget": self.within_budget,
        }
