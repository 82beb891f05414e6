"""``vt.AgentMiddleware``: vt_middleware inside ``langchain.agents.create_agent``.

    agent = create_agent(model, tools, middleware=[vt.AgentMiddleware(function_name="support")])

Each model call of the agent is routed (after a promotion the agent calls the promoted
model), its last human message goes through the prompt hook, a final text answer through
the output hook (tool calls never; structured responses only by JSON hooks), and it is captured with the
messages sent (tool calls and tool results included), the tools offered and the agent's
run as parent. Tool calls are captured too.
"""

from __future__ import annotations

import dataclasses
import inspect
from contextvars import Token
from time import perf_counter
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple
from uuid import UUID

from langchain.agents.middleware import AgentMiddleware as _LCAgentMiddleware
from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.errors import GraphBubbleUp

from ..call_context import capture_suppressed, current_run_id, current_scope
from ..config import get_config
from ..health import fail_open
from . import langchain_callbacks  # noqa: F401 - installs the run-scope tracker (vt.last_run_id)
from .langchain_common import (
    COMPONENT,
    ModelRouter,
    ToolsSnapshot,
    begin_call,
    claim_run_id,
    fail_call,
    finish_call,
)
from .record import ChatCall, RawCall, content_text, to_jsonable
from .worker import submit


class AgentMiddleware(_LCAgentMiddleware):
    """Routes, hooks and captures every model call (and captures every tool call) of a
    LangChain agent. ``function_name`` names the agent's calls in the store (default: the
    enclosing ``@vt.track`` function, else ``"langchain.agent"``).

    A model call's record and the LangChain run of that call share one run id: the record's
    id is handed to the model call as its ``run_id`` (and, should something between this
    middleware and the model have started a run with it, the id LangChain gives an answer whose
    provider set none, ``lc_run--<run id>``, names the model's run instead). ``vt.last_run_id()``
    after ``agent.invoke`` is the final model call's record.
    ``capture_tools=False`` leaves tool calls alone: the middleware then defines no tool
    hook, so LangChain wraps no tool call in it."""

    def __new__(cls, function_name: Optional[str] = None, *, capture_tools: bool = True) -> AgentMiddleware:
        if not capture_tools and cls is AgentMiddleware:
            cls = _ModelCallsOnly
        return super().__new__(cls)

    def __init__(self, function_name: Optional[str] = None, *, capture_tools: bool = True) -> None:
        super().__init__()
        self.function_name = function_name
        self.capture_tools = capture_tools
        self._router = ModelRouter()

    @property
    def name(self) -> str:
        return "VTAgentMiddleware"

    # model calls -------------------------------------------------------------------------
    def _begin(self, request: ModelRequest) -> Tuple[Optional[ChatCall], ModelRequest]:
        params: Dict[str, Any] = {}
        tools = request.tools
        if tools:
            params["tools"] = ToolsSnapshot(tools)
        if request.tool_choice is not None:
            params["tool_choice"] = request.tool_choice
        model = request.model
        call, messages, routed = begin_call(
            request.messages,
            request.system_message,
            model,
            self._router,
            self.function_name,
            "langchain.agent",
            params,
            structured=request.response_format is not None,
        )
        if routed is model and messages is request.messages:
            return call, request
        return call, _override(request, routed, messages)

    @staticmethod
    def _finish(call: ChatCall, response: Any) -> Any:
        if isinstance(response, ModelResponse):
            result = response.result
            if getattr(response, "structured_response", None) is not None:
                call.structured = True
        else:
            result = [response]
        if result and isinstance(result[0], AIMessage):  # the common case
            index: Optional[int] = 0
        else:
            index = next((i for i, m in enumerate(result) if isinstance(m, AIMessage)), None)
        if index is None:
            fail_call(call, TypeError(f"model call returned no AIMessage: {type(response).__name__}"))
            return response
        message = finish_call(call, result[index], run_id_from_message=True)
        if message is result[index]:
            return response
        if not isinstance(response, ModelResponse):
            return message
        result = [*result[:index], message, *result[index + 1 :]]
        if type(response) is ModelResponse:  # the common case, without the generic field walk
            return ModelResponse(result=result, structured_response=response.structured_response)
        return dataclasses.replace(response, result=result)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], Any]) -> Any:
        call, request = self._begin(request)
        lent = _lend_run_id(call)
        try:
            response = handler(request)
        except GraphBubbleUp:  # an interrupt, not a failed call
            raise
        except Exception as exc:
            fail_call(call, exc)
            raise
        finally:
            if lent is not None:
                var_child_runnable_config.reset(lent)
        return response if call is None else self._finish(call, response)

    async def awrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[Any]]) -> Any:
        call, request = self._begin(request)
        lent = _lend_run_id(call)
        try:
            response = await handler(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            fail_call(call, exc)
            raise
        finally:
            if lent is not None:
                var_child_runnable_config.reset(lent)
        return response if call is None else self._finish(call, response)

    # tool calls ----------------------------------------------------------------------------
    def _tool_start(self, request: Any) -> Optional[Tuple[Dict[str, Any], float]]:
        if not self.capture_tools or capture_suppressed() or not get_config().capture_enabled:
            return None
        tool_call = request.tool_call
        return tool_call, perf_counter()

    @staticmethod
    def _tool_end(
        started: Optional[Tuple[Dict[str, Any], float]], result: Any, error: Optional[BaseException] = None
    ) -> None:
        if started is None:
            return
        tool_call, t0 = started
        with fail_open(COMPONENT):
            scope = current_scope()
            params: Dict[str, Any] = {"tool_call_id": tool_call.get("id")}
            output = None
            if isinstance(result, ToolMessage):
                output = content_text(result.content)
                if result.status == "error":
                    params["tool_status"] = "error"
            elif result is not None:
                output = type(result).__name__  # a Command
            limit = get_config().max_field_chars
            submit(
                RawCall(
                    output,
                    None,
                    {
                        "function_name": "langchain.tool:" + str(tool_call.get("name")),
                        "inputs": {"args": to_jsonable(tool_call.get("args") or {}, limit)},
                        "kind": "langchain.tool",
                        "params": params,
                        "latency_ms": (perf_counter() - t0) * 1000.0,
                        "parent_run_id": current_run_id() or (scope.root_run_id if scope is not None else None),
                    },
                    error,
                )
            )

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        started = self._tool_start(request)
        try:
            result = handler(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._tool_end(started, None, exc)
            raise
        self._tool_end(started, result)
        return result

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        started = self._tool_start(request)
        try:
            result = await handler(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._tool_end(started, None, exc)
            raise
        self._tool_end(started, result)
        return result


def _override(request: ModelRequest, model: Any, messages: Any) -> ModelRequest:
    """``request.override(model=model, messages=messages)``: a copy of its fields without the
    generic dataclass walk when the request keeps them in its ``__dict__`` (as LangChain's does)."""
    state = getattr(request, "__dict__", None)
    if state is None or type(request) is not ModelRequest:
        return request.override(model=model, messages=messages)
    new = object.__new__(ModelRequest)
    fields = new.__dict__  # filled directly: ModelRequest's __setattr__ warns
    fields.update(state)
    fields["model"] = model
    fields["messages"] = messages
    return new


def _sign_hooks(cls: type) -> None:
    """LangChain's tracing wrapper reads a hook's signature on every call; given ready-made,
    ``inspect.signature`` returns it at a third of the cost of working it out each time."""
    for name in ("wrap_model_call", "awrap_model_call", "wrap_tool_call", "awrap_tool_call"):
        hook = cls.__dict__[name]
        hook.__signature__ = inspect.signature(hook)


_sign_hooks(AgentMiddleware)


class _ModelCallsOnly(AgentMiddleware):
    """``vt.AgentMiddleware(capture_tools=False)``: without tool hooks (LangChain's own no-ops)."""

    wrap_tool_call = _LCAgentMiddleware.wrap_tool_call
    awrap_tool_call = _LCAgentMiddleware.awrap_tool_call


def _lend_run_id(call: Optional[ChatCall]) -> Optional[Token]:
    """Make the record's run id the run id of the model call about to start: LangChain's
    runnables take ``run_id`` from the config their context passes down, and the agent's model
    node calls the model with none of its own. Returns the token that undoes it."""
    if call is None:
        return None
    with fail_open(COMPONENT):
        parent = var_child_runnable_config.get()
        config: Dict[str, Any] = dict(parent) if parent else {}
        config["run_id"] = UUID(call.run_id)
        claim_run_id(call.run_id)  # a vt.CallbackHandler on the same run records under an id of its own
        return var_child_runnable_config.set(config)  # type: ignore[arg-type]
    return None
