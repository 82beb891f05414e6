"""Validation of chat fine-tuning JSONL against OpenAI's format rules.

One example per line: ``{"messages": [{"role": ..., "content": ...}, ...]}``; roles
system/user/assistant/tool (and the legacy function); at least one assistant message
with content (or tool calls); ``weight`` 0 or 1; each example within the model's token
limit. Errors name the line. This is the single validator of the project: the
selection stage, both trainers and the local server's upload endpoint use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from .errors import DataError
from .tokens import content_text, count_chat_tokens, max_example_tokens

ROLES = ("system", "user", "assistant", "tool", "function")
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"}
EXAMPLE_KEYS = {"messages", "tools", "functions", "parallel_tool_calls"}
MAX_ERRORS_SHOWN = 10


@dataclass
class ValidationReport:
    """What :func:`validate_chat_jsonl` found: examples, tokens, and errors by line."""

    path: str
    n_examples: int = 0
    n_tokens: int = 0  # cookbook count over valid examples (one epoch)
    errors: List[str] = field(default_factory=list)
    example_tokens: List[int] = field(default_factory=list)
    n_assistant_messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_invalid(self) -> ValidationReport:
        """Raise :class:`DataError` listing the first errors; return self when valid."""
        if self.errors:
            shown = "\n  ".join(self.errors[:MAX_ERRORS_SHOWN])
            more = len(self.errors) - MAX_ERRORS_SHOWN
            tail = f"\n  ... and {more} more" if more > 0 else ""
            raise DataError(
                f"{self.path} is not valid chat fine-tuning JSONL ({len(self.errors)} error(s)):\n  {shown}{tail}"
            )
        return self


def iter_jsonl_lines(path: Union[str, Path]) -> Iterator[Tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines of ``path``."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if text:
                yield number, text


def message_errors(message: Any, index: int) -> List[str]:
    """Problems of one message (``index`` is its position in the example)."""
    where = f"message {index}"
    if not isinstance(message, dict):
        return [f"{where} is {type(message).__name__}, expected an object"]
    errors: List[str] = []
    role = message.get("role")
    if "role" not in message:
        errors.append(f"{where} has no 'role'")
    elif role not in ROLES:
        errors.append(f"{where} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
    unknown = sorted(set(message) - MESSAGE_KEYS)
    if unknown:
        errors.append(f"{where} has unrecognised key(s) {', '.join(unknown)}")
    content = message.get("content")
    has_calls = bool(message.get("tool_calls") or message.get("function_call"))
    if content is None and not has_calls:
        errors.append(f"{where} ({role}) has no 'content'")
    elif content is not None and not isinstance(content, (str, list)):
        errors.append(f"{where} ({role}) content is {type(content).__name__}, expected a string")
    if "weight" in message and message["weight"] not in (0, 1):
        errors.append(f"{where} has weight {message['weight']!r}; weight must be 0 or 1")
    return errors


def example_errors(example: Any) -> List[str]:
    """Format problems of one parsed line (token limits are checked separately)."""
    if not isinstance(example, dict):
        return [f"line is {type(example).__name__}, expected an object with 'messages'"]
    messages = example.get("messages")
    if messages is None:
        return ["no 'messages' list"]
    if not isinstance(messages, list) or not messages:
        return ["'messages' must be a non-empty list"]
    errors: List[str] = []
    unknown = sorted(set(example) - EXAMPLE_KEYS)
    if unknown:
        errors.append(f"unrecognised key(s) {', '.join(unknown)}")
    for index, message in enumerate(messages):
        errors.extend(message_errors(message, index))
    assistants = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if not assistants:
        errors.append("no assistant message (each example needs at least one)")
    elif not any(
        content_text(m.get("content")).strip() or m.get("tool_calls") or m.get("function_call") for m in assistants
    ):
        errors.append("every assistant message is empty")
    return errors


def validate_chat_jsonl(path: Union[str, Path], model: Optional[str] = None, min_examples: int = 1) -> ValidationReport:
    """Check a chat fine-tuning JSONL file; never raises for bad content
    (see :meth:`ValidationReport.raise_if_invalid`). ``model`` picks the token limit
    and tokenizer."""
    report = ValidationReport(path=str(path))
    source = Path(path)
    if not source.exists():
        raise DataError(f"training file {source} does not exist")
    if not source.is_file():
        raise DataError(f"training file {source} is not a file")
    limit = max_example_tokens(model)
    try:
        lines = list(iter_jsonl_lines(source))
    except UnicodeDecodeError as exc:
        report.errors.append(f"file is not UTF-8 text: {exc}")
        return report
    for number, text in lines:
        try:
            example = json.loads(text)
        except json.JSONDecodeError as exc:
            report.errors.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        problems = example_errors(example)
        if problems:
            report.errors.extend(f"line {number}: {problem}" for problem in problems)
            continue
        tokens = count_chat_tokens(example["messages"], model)
        if tokens > limit:
            report.errors.append(
                f"line {number}: {tokens} tokens, over the {limit}-token limit per example"
                + (f" for {model}" if model else "")
            )
            continue
        report.n_examples += 1
        report.n_tokens += tokens
        report.example_tokens.append(tokens)
        report.n_assistant_messages += sum(1 for m in example["messages"] if m.get("role") == "assistant")
    if not lines:
        report.errors.append("file is empty (no examples)")
    elif report.n_examples < min_examples and not report.errors:
        report.errors.append(f"only {report.n_examples} example(s); at least {min_examples} required")
    return report


def read_chat_examples(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """The examples of a JSONL file already validated (``[{"messages": [...]}, ...]``)."""
    return [json.loads(text) for _, text in iter_jsonl_lines(path)]


# -- tool turns as text (for chat templates without tool support) ------------------------------
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def _tool_schema(tool: Any) -> Any:
    return tool.get("function", tool) if isinstance(tool, dict) else tool


def messages_as_text(messages: List[Dict[str, Any]], tools: Optional[List[Any]] = None) -> List[Dict[str, Any]]:
    """``messages`` as plain ``{"role", "content"}`` text turns that any chat template can render,
    tool use included (Hermes-style): the tools offered are listed in the system turn, an
    assistant's tool calls become ``<tool_call>{"name", "arguments"}</tool_call>`` blocks and a
    tool result a user turn in ``<tool_response>``. Other keys (``weight``) are kept."""
    out: List[Dict[str, Any]] = []
    for message in messages:
        role = str(message.get("role"))
        text = content_text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            blocks = []
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except (TypeError, ValueError):
                    arguments = function.get("arguments")
                payload = json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False)
                blocks.append(f"{TOOL_CALL_OPEN}\n{payload}\n{TOOL_CALL_CLOSE}")
            text = "\n".join([text, *blocks] if text else blocks)
        elif role in ("tool", "function"):
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        turn = {k: v for k, v in message.items() if k not in ("content", "tool_calls", "tool_call_id", "name")}
        out.append({**turn, "role": role, "content": text})
    if tools:
        listing = "\n".join(json.dumps(_tool_schema(t), ensure_ascii=False, sort_keys=True) for t in tools)
        offer = (
            "You may call one or more of these functions, each in a <tool_call></tool_call> block "
            f'holding {{"name": ..., "arguments": ...}}:\n<tools>\n{listing}\n</tools>'
        )
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{offer}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": offer})
    return out


def parse_tool_calls(text: str) -> Tuple[str, List[Dict[str, str]]]:
    """``(text outside the blocks, [{"name", "arguments" (JSON text)}])`` of a model's answer
    written in the form :func:`messages_as_text` teaches; a block that is not a JSON object with
    a string ``name`` stays text."""
    calls: List[Dict[str, str]] = []
    kept: List[str] = []
    at = 0
    for match in _TOOL_CALL_BLOCK.finditer(text):
        try:
            body = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            continue
        arguments = body.get("arguments", {})
        calls.append(
            {
                "name": body["name"],
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
            }
        )
        kept.append(text[at : match.start()])
        at = match.end()
    kept.append(text[at:])
    return ("".join(kept).strip() if calls else text), calls
