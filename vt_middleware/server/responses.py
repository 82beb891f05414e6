"""/v1/responses (plain and SSE stream), in OpenAI's wire format: text and function-call
output items, structured outputs (``text.format`` json_schema), usage, and the stream's
event sequence (created, in_progress, output_item.added, content_part.added,
output_text.delta..., output_text.done, content_part.done, output_item.done, completed)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .backends import ChatBackend, Completion, InjectedFault
from .chat import APIError, _apply_faults, generate, open_stream, parse_chat_request, pieces
from .structured import schema_of

router = APIRouter()


def _item_text(content: Any) -> Any:
    """Responses content (a string or input_text/output_text/input_image parts) as chat content."""
    if isinstance(content, list):
        return [
            {"type": "text", "text": p.get("text", "")}
            for p in content
            if isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "text")
        ]
    return content


def to_chat_messages(body: Dict[str, Any]) -> List[Dict[str, Any]]:
    """``instructions`` + ``input`` as chat messages (function calls and their outputs included)."""
    messages: List[Dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    given = body.get("input")
    if isinstance(given, str):
        return [*messages, {"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        raise APIError(400, "input must be a string or a non-empty array of input items", param="input")
    for i, item in enumerate(given):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message" and item.get("role") in ("system", "developer", "user", "assistant"):
            messages.append({"role": item["role"], "content": _item_text(item.get("content"))})
        elif kind == "function_call":
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": item.get("call_id"),
                            "type": "function",
                            "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
                        }
                    ],
                }
            )
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": str(item.get("output"))})
        else:
            raise APIError(
                400, f"input[{i}] must be a message, function_call or function_call_output item", param=f"input[{i}]"
            )
    return messages


def _chat_tools(tools: Any) -> Optional[List[Dict[str, Any]]]:
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("name") for t in tools):
        raise APIError(400, "tools must be an array of {type: 'function', name, parameters}", param="tools")
    return [{"type": "function", "function": {k: v for k, v in t.items() if k != "type"}} for t in tools]


def _message_item(text: str, status: str = "completed") -> Dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(call: Dict[str, str], arguments: Optional[str] = None, status: str = "completed") -> Dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{uuid.uuid4().hex[:24]}",
        "call_id": f"call_{uuid.uuid4().hex[:24]}",
        "name": call["name"],
        "arguments": call["arguments"] if arguments is None else arguments,
        "status": status,
    }


def _response(
    body: Dict[str, Any], model: str, output: List[Dict[str, Any]], out: Optional[Completion], status: str = "completed"
) -> Dict[str, Any]:
    usage = (
        None
        if out is None
        else {
            "input_tokens": out.prompt_tokens,
            "output_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
    )
    return {
        "id": body["_id"],
        "object": "response",
        "created_at": body["_created"],
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": True,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "max_output_tokens": body.get("max_output_tokens"),
        "previous_response_id": None,
    }


def _output_items(out: Completion) -> List[Dict[str, Any]]:
    items = [_message_item(out.text)] if out.text or not out.tool_calls else []
    return items + [_call_item(c) for c in out.tool_calls or []]


@router.post("/v1/responses")
def create_response(body: Dict[str, Any], request: Request) -> Any:
    backend: ChatBackend = request.app.state.backend
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    text_config = body.get("text")
    schema = schema_of(text_config.get("format")) if isinstance(text_config, dict) else None
    chat_body = {
        "model": body.get("model"),
        "messages": to_chat_messages(body),
        "temperature": body.get("temperature"),
        "max_tokens": body.get("max_output_tokens"),
        "tools": _chat_tools(body.get("tools")),
    }
    parsed = parse_chat_request(chat_body, backend)
    _apply_faults(backend)
    body = {**body, "_id": f"resp_{uuid.uuid4().hex[:24]}", "_created": int(time.time())}
    if body.get("stream"):
        return StreamingResponse(
            _events(backend, parsed["params"], schema, body),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    out = generate(backend, parsed["params"], schema)
    return _response(body, parsed["params"].model, _output_items(out), out)


def _events(backend: ChatBackend, params: Any, schema: Optional[Dict[str, Any]], body: Dict[str, Any]) -> Iterator[str]:
    seq = iter(range(1 << 30))

    def event(kind: str, **fields: Any) -> str:
        data = {"type": kind, "sequence_number": next(seq), **fields}
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield event("response.created", response=_response(body, params.model, [], None, "in_progress"))
    yield event("response.in_progress", response=_response(body, params.model, [], None, "in_progress"))
    streamed = open_stream(backend, params, schema)
    cut_after = backend.faults.cut_stream_after
    done: List[Dict[str, Any]] = []
    message: Dict[str, Any] = {}
    parts: List[str] = []

    def open_message() -> Iterator[str]:
        message.update(_message_item("", "in_progress"), content=[])
        yield event("response.output_item.added", output_index=0, item=message)
        yield event(
            "response.content_part.added",
            item_id=message["id"],
            output_index=0,
            content_index=0,
            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        )

    for sent, piece in enumerate(streamed):
        if cut_after is not None and sent >= cut_after:
            raise InjectedFault(f"stream cut after {cut_after} events (injected fault)")
        if not message:
            yield from open_message()
        parts.append(piece)
        yield event(
            "response.output_text.delta",
            item_id=message["id"],
            output_index=0,
            content_index=0,
            delta=piece,
            logprobs=[],
        )
    if message or not streamed.tool_calls:
        if not message:
            yield from open_message()
        text = "".join(parts)
        final = {**_message_item(text), "id": message["id"]}
        yield event(
            "response.output_text.done", item_id=final["id"], output_index=0, content_index=0, text=text, logprobs=[]
        )
        yield event(
            "response.content_part.done", item_id=final["id"], output_index=0, content_index=0, part=final["content"][0]
        )
        yield event("response.output_item.done", output_index=0, item=final)
        done.append(final)
    for call in streamed.tool_calls or []:
        index = len(done)
        item = _call_item(call, arguments="", status="in_progress")
        yield event("response.output_item.added", output_index=index, item=item)
        for piece in pieces(call["arguments"]):
            yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
        yield event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=index,
            arguments=call["arguments"],
            name=call["name"],
        )
        final_call = {**item, "arguments": call["arguments"], "status": "completed"}
        yield event("response.output_item.done", output_index=index, item=final_call)
        done.append(final_call)
    out = Completion("".join(parts), streamed.prompt_tokens, streamed.completion_tokens)
    yield event("response.completed", response=_response(body, params.model, done, out))
