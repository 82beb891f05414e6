"""LangChain callbacks: the log-only ``CallbackHandler`` (model, tool and root chain runs,
with tags, metadata and their parent run) and the run-scope tracker that makes
``vt.last_run_id()`` see ids captured inside LangChain runs, whose steps run in copied
contexts."""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from time import perf_counter
from typing import Any, Dict, List, Optional, Tuple
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tracers.context import register_configure_hook

from ..call_context import (
    RunScope,
    capture_suppressed,
    close_scope,
    current_function_name,
    current_run_id,
    new_run_id,
    open_scope,
    set_last_run_id,
)
from ..config import get_config
from ..health import fail_open
from ..runtime.active import get_runtime
from .langchain_common import COMPONENT, MessageSnapshot, claim_run_id, openai_tool_calls
from .record import RawCall, assistant_output, content_text, to_jsonable
from .worker import submit

_MAX_OPEN_SCOPES = 10_000


# -- run scopes --------------------------------------------------------------------------
class RunScopeTracker(BaseCallbackHandler):
    """Opens a run scope when a root LangChain run starts (in the caller's context) and
    closes it when the run ends, so the caller's ``vt.last_run_id()`` is the last call
    captured inside (by ``vt.AgentMiddleware``, ``vt.middleware`` or ``vt.CallbackHandler``).

    Added to the root run's callback manager of every LangChain run once vt's LangChain
    support is imported, and to no other: while a root chain runs, the steps' copied
    contexts see no tracker, so they keep LangChain's fast path for runs without handlers."""

    run_inline = True
    raise_error = False
    ignore_retriever = True
    ignore_custom_event = True

    def __init__(self) -> None:
        super().__init__()
        self._open: Dict[UUID, Tuple[RunScope, Token, Optional[Token]]] = {}

    def _start(self, run_id: UUID, parent_run_id: Optional[UUID], has_steps: bool = True) -> None:
        if parent_run_id is None:
            with fail_open(COMPONENT):
                if len(self._open) >= _MAX_OPEN_SCOPES:  # runs whose end never came
                    self._open.clear()
                scope, token = open_scope(str(run_id))
                # a model run has no steps; its async end may come from another context
                hidden = _tracker_var.set(None) if has_steps else None
                self._open[run_id] = (scope, token, hidden)

    def _end(self, run_id: UUID) -> None:
        entry = self._open.pop(run_id, None)
        if entry is not None:
            scope, token, hidden = entry
            with fail_open(COMPONENT):
                if hidden is not None:
                    try:
                        _tracker_var.reset(hidden)
                    except ValueError:  # ended from another context: show the tracker there
                        _tracker_var.set(self)
                close_scope(scope, token)

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: Optional[UUID] = None, **kwargs: Any
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: Optional[UUID] = None, **kwargs: Any
    ) -> None:
        self._start(run_id, parent_run_id, has_steps=False)

    def on_llm_start(
        self, serialized: Any, prompts: Any, *, run_id: UUID, parent_run_id: Optional[UUID] = None, **kwargs: Any
    ) -> None:
        self._start(run_id, parent_run_id, has_steps=False)

    def on_tool_start(
        self, serialized: Any, input_str: Any, *, run_id: UUID, parent_run_id: Optional[UUID] = None, **kwargs: Any
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)


SCOPE_TRACKER = RunScopeTracker()
_tracker_var: ContextVar[Optional[RunScopeTracker]] = ContextVar("vt_run_scope_tracker", default=SCOPE_TRACKER)
register_configure_hook(_tracker_var, False)  # not inherited by child runs


# -- the log-only handler --------------------------------------------------------------------
def _model_name(serialized: Optional[Dict[str, Any]], kwargs: Dict[str, Any]) -> Optional[str]:
    params = kwargs.get("invocation_params") or {}
    for key in ("model", "model_name"):
        if params.get(key):
            return str(params[key])
    ser_kwargs = (serialized or {}).get("kwargs") or {}
    return ser_kwargs.get("model_name") or ser_kwargs.get("model")


def _run_name(serialized: Optional[Dict[str, Any]], kwargs: Dict[str, Any], default: str) -> str:
    name = kwargs.get("name") or (serialized or {}).get("name")
    if not name:
        ids = (serialized or {}).get("id") or []
        name = ids[-1] if ids else default
    return str(name)


def _output_text(value: Any) -> Any:
    """A chain's or tool's output as stored: a message's text, an agent state's last message."""
    if isinstance(value, dict) and isinstance(value.get("messages"), list) and value["messages"]:
        value = value["messages"][-1]
    if isinstance(value, BaseMessage):
        return content_text(value.content) if content_text(value.content) is not None else str(value.content)
    return value


class _Run:
    __slots__ = ("inputs", "kind", "model", "name", "params", "parent", "record_id", "recorded", "started", "tokens")

    def __init__(
        self,
        name: str,
        kind: str,
        inputs: Any,
        model: Optional[str],
        parent: Optional[str],
        params: Dict[str, Any],
        recorded: bool,
        record_id: str,
    ) -> None:
        self.name, self.kind, self.inputs, self.model, self.parent = name, kind, inputs, model, parent
        self.params, self.recorded, self.record_id = params, recorded, record_id
        self.started = perf_counter()
        self.tokens: List[str] = []


class _RunLog:
    """Runs in flight keyed by run_id; one lock, so one handler can serve many requests.
    Model and tool runs and root chain runs are recorded; nested chain runs only pass
    their nearest recorded ancestor on as the parent."""

    def __init__(self, function_name: Optional[str]) -> None:
        self.function_name = function_name
        self._runs: Dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    def start(
        self,
        run_id: UUID,
        parent: Optional[UUID],
        serialized: Optional[Dict[str, Any]],
        inputs: Any,
        kwargs: Dict[str, Any],
        kind: str,
    ) -> None:
        if capture_suppressed() or not get_config().capture_enabled:
            return
        with self._lock:
            parent_run = self._runs.get(parent) if parent is not None else None
        recorded = kind != "chain" or parent is None
        ancestor = None
        if parent_run is not None:
            ancestor = str(parent) if parent_run.recorded else parent_run.parent
        metadata = kwargs.get("metadata") or {}
        record_id = str(run_id)
        if kind == "model":
            if not claim_run_id(record_id):  # vt.AgentMiddleware records this model call under its id
                record_id = new_run_id()
            name = (
                self.function_name
                or metadata.get("vt_function_name")
                or current_function_name()
                or "langchain." + str((serialized or {}).get("name") or "chat_model")
            )
        else:
            name = f"langchain.{kind}:{_run_name(serialized, kwargs, kind)}"
        params: Dict[str, Any] = {}
        if recorded:
            limit = get_config().max_field_chars
            if kwargs.get("tags"):
                params["tags"] = to_jsonable(kwargs["tags"], limit)
            if metadata:
                params["metadata"] = to_jsonable(metadata, limit)
            if parent is not None:
                params["langchain_parent_run_id"] = str(parent)
        run = _Run(
            name,
            kind,
            inputs,
            _model_name(serialized, kwargs) if kind == "model" else None,
            ancestor or current_run_id(),
            params,
            recorded,
            record_id,
        )
        with self._lock:
            self._runs[run_id] = run

    def token(self, run_id: UUID, token: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None and token:
            run.tokens.append(token)

    def end(
        self, run_id: UUID, response: Any = None, error: Optional[BaseException] = None, output: Any = None
    ) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None or not run.recorded:
            return
        usage, model_used, params = None, None, dict(run.params)
        if run.kind == "model":
            output = None
            if response is not None:
                output, usage, model_used = self._read_response(response, params)
            elif run.tokens:
                output = "".join(run.tokens)
            if run.tokens:
                params["streamed_tokens"] = len(run.tokens)
        elif error is None:
            output = _output_text(output)
        inputs = run.inputs  # model runs: a snapshot the worker dumps; else copied here
        if run.kind != "model":
            args = inputs if isinstance(inputs, dict) else {"input": inputs}
            inputs = {"args": to_jsonable(args, get_config().max_field_chars)}
        submit(
            RawCall(
                output,
                usage,
                {
                    "function_name": run.name,
                    "inputs": inputs,
                    "kind": "langchain" if run.kind == "model" else "langchain." + run.kind,
                    "model_requested": run.model,
                    "model_used": model_used or run.model,
                    "params": params,
                    "latency_ms": (perf_counter() - run.started) * 1000.0,
                    "hook_version": get_runtime().current().hook_version if run.kind == "model" else None,
                    "run_id": run.record_id,
                    "parent_run_id": run.parent,
                },
                error,
            )
        )
        if run.kind == "model":
            set_last_run_id(run.record_id)

    @staticmethod
    def _read_response(response: Any, params: Dict[str, Any]) -> Tuple[Any, Any, Any]:
        output, usage, model_used = None, None, None
        generations = response.generations[0] if response.generations else []
        first = generations[0] if generations else None
        if first is not None:
            output = first.text
            message = getattr(first, "message", None)
            usage = getattr(message, "usage_metadata", None)
            model_used = (getattr(message, "response_metadata", None) or {}).get("model_name")
            if isinstance(message, AIMessage) and message.tool_calls:
                output = assistant_output(output, openai_tool_calls(message), params)
        llm_output = response.llm_output or {}
        return output, usage or llm_output.get("token_usage"), model_used or llm_output.get("model_name")

    def pending(self) -> int:
        with self._lock:
            return len(self._runs)


class CallbackHandler(BaseCallbackHandler):
    """Log-only: records chat/LLM runs, tool runs and root chain runs (each by its LangChain
    run id, under its parent run, with tags and metadata) and sets ``vt.last_run_id()`` to
    the last model run. Works in sync and async LangChain code (it runs inline; every method
    is short and thread-safe)."""

    run_inline = True
    raise_error = False

    def __init__(self, function_name: Optional[str] = None) -> None:
        super().__init__()
        self._log = _RunLog(function_name)

    def on_chat_model_start(
        self,
        serialized: Dict[str, Any],
        messages: List[List[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        **kwargs: Any,
    ) -> None:
        with fail_open(COMPONENT):
            first = {"messages": MessageSnapshot(messages[0])}
            inputs = first if len(messages) == 1 else {**first, "batch": [MessageSnapshot(m) for m in messages]}
            self._log.start(run_id, parent_run_id, serialized, inputs, kwargs, "model")

    def on_llm_start(
        self,
        serialized: Dict[str, Any],
        prompts: List[str],
        *,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        **kwargs: Any,
    ) -> None:
        with fail_open(COMPONENT):
            inputs = {"prompt": prompts[0]} if len(prompts) == 1 else {"prompt": prompts[0], "batch": list(prompts)}
            self._log.start(run_id, parent_run_id, serialized, inputs, kwargs, "model")

    def on_llm_new_token(
        self,
        token: Any,
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        tags: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(token, str):  # content blocks (lists) are read from the end event
            with fail_open(COMPONENT):
                self._log.token(run_id, token)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(COMPONENT):
            self._log.end(run_id, response=response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(COMPONENT):
            self._log.end(run_id, error=error)

    def on_chain_start(
        self,
        serialized: Dict[str, Any],
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        **kwargs: Any,
    ) -> None:
        with fail_open(COMPONENT):
            self._log.start(
                run_id, parent_run_id, serialized, inputs if parent_run_id is None else None, kwargs, "chain"
            )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(COMPONENT):
            self._log.end(run_id, output=outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(COMPONENT):
            self._log.end(run_id, error=error)

    def on_tool_start(
        self,
        serialized: Dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        inputs: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        with fail_open(COMPONENT):
            self._log.start(
                run_id, parent_run_id, serialized, inputs if inputs is not None else input_str, kwargs, "tool"
            )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(COMPONENT):
            self._log.end(run_id, output=output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with fail_open(COMPONENT):
            self._log.end(run_id, error=error)


class AsyncVTCallbackHandler(AsyncCallbackHandler):
    """The async flavour of :class:`CallbackHandler` (same records)."""

    run_inline = True
    raise_error = False

    def __init__(self, function_name: Optional[str] = None) -> None:
        super().__init__()
        self._sync = CallbackHandler(function_name)

    async def on_chat_model_start(
        self, serialized: Dict[str, Any], messages: List[List[BaseMessage]], **kwargs: Any
    ) -> None:
        self._sync.on_chat_model_start(serialized, messages, **kwargs)

    async def on_llm_start(self, serialized: Dict[str, Any], prompts: List[str], **kwargs: Any) -> None:
        self._sync.on_llm_start(serialized, prompts, **kwargs)

    async def on_llm_new_token(
        self,
        token: Any,
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: Optional[UUID] = None,
        tags: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> None:
        self._sync.on_llm_new_token(token, run_id=run_id, **kwargs)

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self._sync.on_llm_end(response, **kwargs)

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self._sync.on_llm_error(error, **kwargs)

    async def on_chain_start(self, serialized: Dict[str, Any], inputs: Any, **kwargs: Any) -> None:
        self._sync.on_chain_start(serialized, inputs, **kwargs)

    async def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self._sync.on_chain_end(outputs, **kwargs)

    async def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self._sync.on_chain_error(error, **kwargs)

    async def on_tool_start(self, serialized: Dict[str, Any], input_str: str, **kwargs: Any) -> None:
        self._sync.on_tool_start(serialized, input_str, **kwargs)

    async def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self._sync.on_tool_end(output, **kwargs)

    async def on_tool_error(self, error: BaseException, **kwargs: Any) -> None:
        self._sync.on_tool_error(error, **kwargs)
