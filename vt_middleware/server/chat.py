"""/v1/chat/completions (plain and SSE stream, tool calls, structured outputs) and /v1/models,
in OpenAI's wire format."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .backends import ChatBackend, ChatParams, Completion, InjectedFault, StreamedCompletion
from .structured import conform, schema_of

router = APIRouter()

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
DEFAULT_MAX_TOKENS = 64
MAX_CHOICES = 8
PIECE_CHARS = 8  # text streamed from a whole answer (structured output, tool arguments) goes in pieces this long


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: Optional[str] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        return JSONResponse(
            status_code=self.status,
            content={"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}},
        )


def _backend(request: Request) -> ChatBackend:
    return request.app.state.backend


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise APIError(
        400,
        f"message content must be a string or a list of content parts, got {type(content).__name__}",
        param="messages",
    )


def parse_chat_request(body: Any, backend: ChatBackend) -> Dict[str, Any]:
    """Validate a chat request body; raise APIError naming the bad field."""
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty array", param="messages")
    clean: List[Dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise APIError(
                400, f"messages[{i}] must be an object with a role in {sorted(_ROLES)}", param=f"messages.[{i}].role"
            )
        clean.append({"role": message["role"], "content": _text(message.get("content"))})
    if not backend.has_model(model):
        raise APIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise APIError(400, f"max_tokens must be a positive integer, got {max_tokens!r}", param="max_tokens")
    temperature = body.get("temperature", 0.0)
    if temperature is None:
        temperature = 0.0
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise APIError(400, f"temperature must be between 0 and 2, got {temperature!r}", param="temperature")
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise APIError(400, f"n must be between 1 and {MAX_CHOICES}, got {n!r}", param="n")
    stream_options = body.get("stream_options") or {}
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or not all(
            isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name") for t in tools
        )
    ):
        raise APIError(400, "tools must be an array of {type: 'function', function: {name, parameters}}", param="tools")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict)
        or response_format.get("type") not in ("text", "json_object", "json_schema")
    ):
        raise APIError(
            400, "response_format.type must be one of 'text', 'json_object', 'json_schema'", param="response_format"
        )
    return {
        "params": ChatParams(
            model=model,
            messages=clean,
            max_tokens=max_tokens,
            temperature=float(temperature),
            seed=body.get("seed"),
            tools=tools or None,
            raw_messages=messages,
        ),
        "stream": bool(body.get("stream")),
        "n": n,
        "schema": schema_of(response_format),
        "include_usage": bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
    }


def generate(backend: ChatBackend, params: ChatParams, schema: Optional[Dict[str, Any]]) -> Completion:
    """One answer; with a JSON ``schema`` its text is made schema-valid (tool calls stay as they are)."""
    out = backend.complete(params)
    if schema is not None and not out.tool_calls:
        out.text = conform(schema, out.text)
    return out


def pieces(text: str, size: int = PIECE_CHARS) -> List[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def whole_as_stream(out: Completion) -> StreamedCompletion:
    """A finished answer replayed as a stream of pieces."""
    streamed = StreamedCompletion(
        iter(pieces(out.text)), lambda _text: out.completion_tokens, out.prompt_tokens, 1 << 30
    )
    streamed.tool_calls = out.tool_calls
    return streamed


def open_stream(backend: ChatBackend, params: ChatParams, schema: Optional[Dict[str, Any]]) -> StreamedCompletion:
    """The backend's own stream, or (structured output: the text must be whole to be conformed)
    the conformed answer in pieces."""
    if schema is not None:
        return whole_as_stream(generate(backend, params, schema))
    return backend.stream(params)


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _apply_faults(backend: ChatBackend) -> None:
    faults = backend.faults
    if faults.delay_s:
        time.sleep(faults.delay_s)
    if faults.take_failure():
        raise APIError(
            faults.fail_status,
            "The server had an error while processing your request (injected fault).",
            type_="server_error",
            code="injected_fault",
        )


@router.post("/v1/chat/completions")
def chat_completions(body: Dict[str, Any], request: Request) -> Any:
    backend = _backend(request)
    parsed = parse_chat_request(body, backend)
    _apply_faults(backend)
    params: ChatParams = parsed["params"]
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if parsed["stream"]:
        return StreamingResponse(
            _sse(backend, params, parsed["schema"], completion_id, created, parsed["include_usage"], parsed["n"]),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index in range(parsed["n"]):
        out = generate(backend, _choice_params(params, index), parsed["schema"])
        prompt_tokens = out.prompt_tokens
        completion_tokens += out.completion_tokens
        message: Dict[str, Any] = {"role": "assistant", "content": out.text, "refusal": None}
        if out.tool_calls:
            message["content"] = out.text or None
            message["tool_calls"] = [
                {"id": call_id(), "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in out.tool_calls
            ]
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if out.tool_calls else out.finish_reason,
            }
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": params.model,
        "choices": choices,
        "system_fingerprint": None,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _choice_params(params: ChatParams, index: int) -> ChatParams:
    """Choice ``index`` of an n > 1 request: a seed of its own where one was given."""
    return params if params.seed is None or index == 0 else dataclasses.replace(params, seed=params.seed + index)


def _sse(
    backend: ChatBackend,
    params: ChatParams,
    schema: Optional[Dict[str, Any]],
    completion_id: str,
    created: int,
    include_usage: bool,
    n: int = 1,
) -> Iterator[str]:
    """OpenAI's chunk sequence, per choice (n > 1: one choice after another, each chunk
    naming its choice's index): role chunk, content chunks, tool-call chunks (id and name,
    then argument pieces), finish chunk; then [usage chunk], [DONE]."""
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": params.model,
        "system_fingerprint": None,
    }

    def chunk(index: int, delta: Dict[str, Any], finish: Optional[str] = None) -> str:
        body = {**base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            body["usage"] = None
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    prompt_tokens = completion_tokens = 0
    cut_after = backend.faults.cut_stream_after
    for choice in range(n):
        yield chunk(choice, {"role": "assistant", "content": "", "refusal": None})
        streamed = open_stream(backend, _choice_params(params, choice), schema)
        for sent, piece in enumerate(streamed):
            if cut_after is not None and sent >= cut_after:
                raise InjectedFault(f"stream cut after {cut_after} chunks (injected fault)")
            yield chunk(choice, {"content": piece})
        for index, call in enumerate(streamed.tool_calls or []):
            yield chunk(
                choice,
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id(),
                            "type": "function",
                            "function": {"name": call["name"], "arguments": ""},
                        }
                    ]
                },
            )
            for piece in pieces(call["arguments"]):
                yield chunk(choice, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk(choice, {}, "tool_calls" if streamed.tool_calls else streamed.finish_reason)
        prompt_tokens = streamed.prompt_tokens
        completion_tokens += streamed.completion_tokens
    if include_usage:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def _model_entry(backend: Any, model_id: str) -> Dict[str, Any]:
    owner = backend.owner(model_id) if hasattr(backend, "owner") else "vt_middleware"
    return {"id": model_id, "object": "model", "created": getattr(backend, "created", 0), "owned_by": owner}


@router.get("/v1/models")
def list_models(request: Request) -> Dict[str, Any]:
    backend = _backend(request)
    return {"object": "list", "data": [_model_entry(backend, m) for m in backend.list_models()]}


@router.get("/v1/models/{model_id:path}")
def retrieve_model(model_id: str, request: Request) -> Dict[str, Any]:
    backend = _backend(request)
    if not backend.has_model(model_id):
        raise APIError(
            404,
            f"The model `{model_id}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return _model_entry(backend, model_id)
