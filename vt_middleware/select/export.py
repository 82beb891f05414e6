"""ChatML JSONL export of selected calls, built from the real recorded inputs.

The seed wrote metadata (function name, strategy, density) as the user message. Here
each example is ``{"messages": [system?, user, ..., assistant]}`` where

- chat calls keep the messages they actually sent (system/user/assistant turns with text,
  assistant ``tool_calls`` and ``tool`` results, Responses API function-call items converted),
  with the call's function ``tools``, in OpenAI's fine-tuning format;
- decorated functions become a system message naming the function and a user message
  holding its arguments as JSON;
- the assistant message is the output the user got (its tool calls when it called tools),
  or the human's corrected output when a feedback pair with this call's ``run_id`` fixed it.

Identical examples are written once; ``val_fraction`` splits off a deterministic
validation file (``<stem>.val.jsonl``). Calls that cannot be used (no output, no input,
over the per-example token limit) are skipped with their reason in the report; the
written files are checked by :func:`vt_middleware.chatml.validate_chat_jsonl`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigError, DataError
from ..types import CallRecord

CHAT_ROLES = ("system", "user", "assistant", "tool")


@dataclass
class ExportReport:
    """What an export wrote and what it skipped (uuid, reason)."""

    path: str = ""
    validation_path: Optional[str] = None
    written: int = 0
    validation_written: int = 0
    duplicates: int = 0
    corrected: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict)).strip()
    return "" if content is None else str(content)


def _tool_call(call: Any) -> Optional[Dict[str, Any]]:
    """One tool call in the fine-tuning format (``{"id", "type": "function", "function": {...}}``)."""
    if not isinstance(call, dict):
        return None
    function = call.get("function") if isinstance(call.get("function"), dict) else call  # Responses items are flat
    name = function.get("name")
    if not name:
        return None
    arguments = function.get("arguments")
    return {
        "id": str(call.get("id") or call.get("call_id") or ""),
        "type": "function",
        "function": {
            "name": str(name),
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False),
        },
    }


def _tool_calls(calls: Any) -> List[Dict[str, Any]]:
    return [c for c in map(_tool_call, calls if isinstance(calls, list) else []) if c is not None]


def _chat_message(message: Any) -> Optional[Dict[str, Any]]:
    """A recorded message (chat, or a Responses input item) in the fine-tuning format;
    None when it carries nothing to learn from."""
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == "function_call":  # Responses API: the assistant called a function
        calls = _tool_calls([message])
        return {"role": "assistant", "content": None, "tool_calls": calls} if calls else None
    if kind == "function_call_output":
        return {
            "role": "tool",
            "tool_call_id": str(message.get("call_id") or ""),
            "content": _text(message.get("output")),
        }
    role = "system" if message.get("role") == "developer" else message.get("role")
    if role not in CHAT_ROLES:
        return None
    text = _text(message.get("content"))
    if role == "tool":
        return {"role": "tool", "tool_call_id": str(message.get("tool_call_id") or ""), "content": text}
    calls = _tool_calls(message.get("tool_calls")) if role == "assistant" else []
    if calls:
        return {"role": "assistant", "content": text or None, "tool_calls": calls}
    return {"role": role, "content": text} if text.strip() else None


def _tools(params: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The call's function tools in the fine-tuning format (chat's shape; Responses' flat one converted)."""
    tools = []
    for tool in params.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type", "function") == "function":
            function = (
                tool.get("function")
                if isinstance(tool.get("function"), dict)
                else {k: v for k, v in tool.items() if k != "type"}
            )
            if function.get("name"):
                tools.append({"type": "function", "function": function})
    return tools


def chat_example(record: CallRecord, output: Optional[str], corrected: bool = False) -> Dict[str, Any]:
    """The ChatML example of one call (tools, assistant tool calls and tool results in
    OpenAI's fine-tuning format); DataError says why a call cannot be used. A ``corrected``
    output is the human's text answer, replacing the call's tool calls."""
    params = record.params if isinstance(record.params, dict) else {}
    calls = [] if corrected else _tool_calls(params.get("tool_calls"))
    if not calls and (output is None or not str(output).strip()):
        raise DataError("no text output to learn from")
    messages = record.inputs.get("messages")
    if isinstance(messages, list):
        chat = [m for m in map(_chat_message, messages) if m is not None]
        if not any(m["role"] == "user" and m["content"] for m in chat):
            raise DataError("the recorded messages hold no user message with text")
    else:
        args = record.inputs.get("args", record.inputs)
        if not record.inputs:
            raise DataError("no recorded input")
        chat = [
            {
                "role": "system",
                "content": f"You are the function '{record.function_name}'. "
                "Reply with its output for the arguments given as JSON.",
            },
            {"role": "user", "content": json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)},
        ]
    if calls:
        text = None if params.get("output_is_tool_calls") else (str(output) if output else None)
        answer: Dict[str, Any] = {"role": "assistant", "content": text, "tool_calls": calls}
    else:
        answer = {"role": "assistant", "content": str(output)}
    example: Dict[str, Any] = {"messages": [*chat, answer]}
    tools = _tools(params)
    if tools:
        example["tools"] = tools
    return example


def corrections_by_run(feedback: Sequence[Any]) -> Dict[str, str]:
    """``run_id -> fixed_output`` of feedback pairs linked to a captured call (latest wins)."""
    fixed: Dict[str, str] = {}
    for pair in sorted(feedback, key=lambda p: str(getattr(p, "created_at", ""))):
        if getattr(pair, "run_id", None) and str(pair.fixed_output or "").strip():
            fixed[str(pair.run_id)] = str(pair.fixed_output)
    return fixed


def validation_path(path: Path) -> Path:
    """``golden.jsonl`` -> ``golden.val.jsonl``."""
    path = Path(path)
    return path.with_name(path.stem + ".val" + path.suffix)


def _split(lines: List[str], val_fraction: Optional[float]) -> Tuple[List[str], List[str]]:
    """Deterministic split: the lines with the smallest content hashes go to validation."""
    if val_fraction is None or len(lines) < 2:
        return lines, []
    n_val = min(len(lines) - 1, max(1, round(val_fraction * len(lines))))
    ranked = sorted(range(len(lines)), key=lambda i: hashlib.sha256(lines[i].encode("utf-8")).hexdigest())
    val_ids = set(ranked[:n_val])
    return (
        [line for i, line in enumerate(lines) if i not in val_ids],
        [line for i, line in enumerate(lines) if i in val_ids],
    )


def write_chat_jsonl(
    records: Sequence[Tuple[str, CallRecord]],
    path: Any,
    corrections: Optional[Mapping[str, str]] = None,
    val_fraction: Optional[float] = None,
    model: Optional[str] = None,
) -> ExportReport:
    """Write ``(uuid, record)`` pairs as deduplicated, validated ChatML JSONL."""
    from ..chatml import validate_chat_jsonl
    from ..tokens import count_chat_tokens, max_example_tokens

    if val_fraction is not None and not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    corrections = corrections or {}
    limit = max_example_tokens(model)
    report = ExportReport(path=str(path))
    seen: set = set()
    lines: List[str] = []
    for uuid, record in records:
        fixed = corrections.get(uuid) or corrections.get(record.run_id)
        try:
            example = chat_example(record, fixed if fixed is not None else record.output, corrected=fixed is not None)
        except DataError as exc:
            report.skipped.append((uuid, str(exc)))
            continue
        tokens = count_chat_tokens(example["messages"], model)
        if tokens > limit:
            report.skipped.append((uuid, f"{tokens} tokens, over the {limit}-token limit per example"))
            continue
        line = json.dumps(example, ensure_ascii=False)
        if line in seen:
            report.duplicates += 1
            continue
        seen.add(line)
        lines.append(line)
        report.corrected += fixed is not None
    if not lines:
        reasons = "; ".join(f"{u}: {r}" for u, r in report.skipped[:5]) or "no calls were selected"
        raise DataError(f"no usable examples to export ({reasons})")
    train, val = _split(lines, val_fraction)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(line + "\n" for line in train), encoding="utf-8")
    validate_chat_jsonl(target, model=model).raise_if_invalid()
    report.written = len(train)
    if val_fraction is not None:
        val_target = validation_path(target)
        val_target.write_text("".join(line + "\n" for line in val), encoding="utf-8")
        if val:
            validate_chat_jsonl(val_target, model=model).raise_if_invalid()
        report.validation_path = str(val_target)
        report.validation_written = len(val)
    return report
