"""The Responses API side of the wrapped client: its input as chat messages (for prompt
hooks and the record), hooking a ``Response``'s text in place, and reading its record."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .record import ChatCall, assistant_output

RESPONSES_FUNCTION = "openai.responses"
RESPONSES_PARAM_KEYS = frozenset(
    (
        "temperature",
        "max_output_tokens",
        "top_p",
        "stream",
        "text",
        "tools",
        "tool_choice",
        "reasoning",
        "previous_response_id",
        "parallel_tool_calls",
    )
)


def input_messages(kwargs: Dict[str, Any]) -> List[Any]:
    """``instructions`` and ``input`` as the call's messages (a string input is one user message;
    input items are kept as they are: messages, function calls and their outputs)."""
    instructions = kwargs.get("instructions")
    head = [{"role": "system", "content": instructions}] if type(instructions) is str and instructions else []
    given = kwargs.get("input")
    if type(given) is str:
        return [*head, {"role": "user", "content": given}]
    if isinstance(given, (list, tuple)):
        return head + list(given)
    return head


def send_input(send: Dict[str, Any], kwargs: Dict[str, Any], hooked: List[Any]) -> None:
    """Put the prompt-hooked messages back as ``input`` (a string input stays a string)."""
    instructions = kwargs.get("instructions")
    items = hooked[1:] if type(instructions) is str and instructions else hooked
    send["input"] = items[-1]["content"] if type(kwargs.get("input")) is str else items


def is_structured(kwargs: Dict[str, Any]) -> bool:
    text = kwargs.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")


def _text_parts(response: Any) -> List[Any]:
    return [
        part
        for item in (getattr(response, "output", None) or [])
        if getattr(item, "type", None) == "message"
        for part in item.content
        if getattr(part, "type", None) == "output_text"
    ]


def hook_response(call: ChatCall, response: Any, parse_as: Any = None) -> Tuple[str, str]:
    """Hook each output text of ``response`` in place (function calls untouched); re-parse a
    ``responses.parse`` result's ``parsed`` when a JSON hook changed it. Returns (output, raw)."""
    hooked: List[str] = []
    raw: List[str] = []
    for part in _text_parts(response):
        text = part.text
        new = call.apply_output(text)
        if new != text:
            if parse_as is not None and hasattr(part, "parsed"):
                part.parsed = parse_as.model_validate_json(new)
            part.text = new
        raw.append(text)
        hooked.append(new)
    return "".join(hooked), "".join(raw)


def read_response(response: Any) -> Tuple[Optional[str], Optional[str], Optional[str], Any, Dict[str, Any]]:
    """(output, raw_output, model_used, usage, extra) of a ``Response`` (worker thread)."""
    texts: List[str] = []
    tool_calls: List[Dict[str, Any]] = []
    for item in getattr(response, "output", None) or []:
        kind = getattr(item, "type", None)
        if kind == "message":
            texts.extend(p.text for p in item.content if getattr(p, "type", None) == "output_text")
        elif kind == "function_call":
            tool_calls.append(
                {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
            )
    extra: Dict[str, Any] = {"response_id": getattr(response, "id", None), "status": getattr(response, "status", None)}
    output = assistant_output("".join(texts) or None, tool_calls, extra)
    return output, output, getattr(response, "model", None), getattr(response, "usage", None), extra
