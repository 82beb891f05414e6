"""A scripted chat-completions endpoint that can answer with tool calls, in OpenAI's wire
format (plain and SSE), served over real HTTP by the project's ``LocalServer`` runner.

``answer(body)`` gets the request body (messages with tool calls and tool results, tools,
response_format) and returns the answer text, or ``ToolCalls(...)``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Union

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from vt_middleware.server.runner import LocalServer


@dataclass
class ToolCalls:
    """An assistant turn that calls tools: ``[(name, arguments dict), ...]``."""

    calls: List[Any]
    content: str = ""


Answer = Union[str, ToolCalls]


@dataclass
class ScriptedToolsApp:
    answer: Callable[[Dict[str, Any]], Answer]
    requests: List[Dict[str, Any]] = field(default_factory=list)

    def _wire_calls(self, answer: ToolCalls) -> List[Dict[str, Any]]:
        return [
            {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for name, args in answer.calls
        ]

    def complete(self, body: Dict[str, Any]) -> Any:
        self.requests.append(body)
        answer = self.answer(body)
        message: Dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None}
        finish = "stop"
        if isinstance(answer, ToolCalls):
            message = {
                "role": "assistant",
                "content": answer.content or None,
                "refusal": None,
                "tool_calls": self._wire_calls(answer),
            }
            finish = "tool_calls"
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": None,
        }
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if body.get("stream"):
            return StreamingResponse(self._sse(base, message, finish, usage), media_type="text/event-stream")
        return {
            **base,
            "object": "chat.completion",
            "usage": usage,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        }

    @staticmethod
    def _sse(base: Dict[str, Any], message: Dict[str, Any], finish: str, usage: Dict[str, Any]) -> Iterator[str]:
        def chunk(delta: Dict[str, Any], finish_reason: Any = None) -> str:
            body = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            return f"data: {json.dumps(body)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for i, call in enumerate(message.get("tool_calls") or []):
            yield chunk({"tool_calls": [{"index": i, **call}]})
        words = (message.get("content") or "").split(" ")
        for i, word in enumerate(words if message.get("content") else []):
            yield chunk({"content": word if i == len(words) - 1 else word + " "})
        yield chunk({}, finish)
        yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"


def start_scripted_tools_server(
    answer: Callable[[Dict[str, Any]], Answer], data_dir: Path, model: str = "scripted"
) -> tuple[LocalServer, ScriptedToolsApp]:
    """A running server on a free port whose only model, ``model``, is answered by ``answer``."""
    scripted = ScriptedToolsApp(answer)
    app = FastAPI()
    app.post("/v1/chat/completions")(scripted.complete)
    app.get("/v1/models")(
        lambda: {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "test"}]}
    )
    server = LocalServer(data_dir=data_dir, model=None, backend=_NoBackend())
    server.app = app
    return server.start(), scripted


class _NoBackend:
    """LocalServer builds its default app from a backend; this one is never asked."""

    def __init__(self) -> None:
        from vt_middleware.server.backends import FaultPlan

        self.faults = FaultPlan()

    def list_models(self) -> List[str]:
        return []

    def has_model(self, model_id: str) -> bool:
        return False
