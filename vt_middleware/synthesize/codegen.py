"""Hook module generation with libcst.

The generated module is ``hook_runtime.py`` parsed into a libcst tree, with its
``HOOK_VERSION`` and ``RULES`` assignments replaced by nodes built here. Every
value that comes from feedback becomes a ``cst.SimpleString`` holding ``repr()``
of the text, so it is always a complete string literal; comments carry only ids,
kinds and numbers that this module produces itself.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import libcst as cst

from ..errors import HookError
from ..runtime.hook_dir import write_atomic
from ..types import Rule
from .hook_runtime import pattern_is_linear
from .hook_stream import stream_class
from .rules import to_hook_dict

RUNTIME_SOURCE = Path(__file__).with_name("hook_runtime.py")
STREAM_SOURCE = Path(__file__).with_name("hook_stream.py")
DEFAULT_FILENAME = "generated_prompt_hook.py"
KINDS = {
    "replace": "rewrites a matched phrase",
    "remove": "deletes a matched phrase",
    "append": "adds a required ending when it is missing",
    "prepend": "adds a required opening when it is missing",
    "normalize": "normalises the format",
    "line_remove": "deletes matching lines",
    "line_insert": "adds a required line next to a known line",
    "prompt": "adds learned guidance to similar prompts",
}
_REQUIRED = {
    "replace": ("pattern", "parts"),
    "remove": ("pattern", "parts"),
    "append": ("parts", "separator"),
    "prepend": ("parts", "separator"),
    "normalize": ("normalizer",),
    "line_remove": ("pattern",),
    "line_insert": ("parts", "position"),
    "prompt": ("block", "min_overlap"),
}
_SAFE_COMMENT = re.compile(r"[^A-Za-z0-9_.:+-]")


@dataclass
class CodegenResult:
    """Outcome of building a hook module: ``status`` is "ok" or "error"; never raised."""

    status: str
    code: Optional[str] = None
    errors: List[str] = field(default_factory=list)
    rule_count: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _safe(text: Any) -> str:
    """Text fit for a comment: our own ids and numbers only, anything else replaced."""
    return _SAFE_COMMENT.sub("_", str(text))[:80]


def literal(value: Any) -> cst.BaseExpression:
    """A libcst expression for a plain data value (str, int, float, bool, None, list, dict)."""
    if isinstance(value, str):
        return cst.SimpleString(repr(value))
    if value is None or isinstance(value, bool):
        return cst.Name(repr(value))
    if isinstance(value, int):
        node: cst.BaseExpression = cst.Integer(str(abs(value)))
        return cst.UnaryOperation(cst.Minus(), node) if value < 0 else node
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite float {value!r} cannot be a literal")
        node = cst.Float(repr(abs(value)))
        return cst.UnaryOperation(cst.Minus(), node) if value < 0 else node
    if isinstance(value, (list, tuple)):
        items = [literal(v) for v in value]
        elements = [
            cst.Element(
                item,
                comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                if i < len(items) - 1
                else (cst.Comma() if len(items) == 1 else cst.MaybeSentinel.DEFAULT),
            )
            for i, item in enumerate(items)
        ]
        return cst.Tuple(elements)
    if isinstance(value, dict):
        pairs = list(value.items())
        return cst.Dict(
            [
                cst.DictElement(
                    literal(str(k)),
                    literal(v),
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                    if i < len(pairs) - 1
                    else cst.MaybeSentinel.DEFAULT,
                )
                for i, (k, v) in enumerate(pairs)
            ]
        )
    raise TypeError(f"cannot write a {type(value).__name__} into a hook module")


def _line_break(comment: Optional[str], last: bool = False) -> cst.ParenthesizedWhitespace:
    lines = (
        [cst.EmptyLine(indent=True, whitespace=cst.SimpleWhitespace("    "), comment=cst.Comment(comment))]
        if comment
        else []
    )
    return cst.ParenthesizedWhitespace(
        first_line=cst.TrailingWhitespace(),
        empty_lines=lines,
        indent=True,
        last_line=cst.SimpleWhitespace("" if last else "    "),
    )


def _rule_comment(rule: Rule) -> str:
    return (
        f"# {_safe(rule.rule_id)}: {_safe(rule.kind)} ({KINDS.get(rule.kind, 'rule')}) -> {_safe(rule.target)};"
        f" support {int(rule.support)}, confidence {float(rule.confidence):.2f}, {len(rule.sources)} source pairs"
    )


def _rules_table(rules: Sequence[Rule]) -> cst.BaseExpression:
    if not rules:
        return cst.Tuple([], lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    elements = []
    for index, rule in enumerate(rules):
        last = index == len(rules) - 1
        comment = None if last else _rule_comment(rules[index + 1])
        comma = cst.Comma(whitespace_after=_line_break(comment, last=last))
        row = to_hook_dict(rule)
        row["stream"] = stream_class(row) if row["target"] == "output" else "full"
        elements.append(cst.Element(literal(row), comma=comma))
    lpar = cst.LeftParen(whitespace_after=_line_break(_rule_comment(rules[0])))
    return cst.Tuple(elements, lpar=[lpar], rpar=[cst.RightParen()])


def check_rule(rule: Rule) -> List[str]:
    """Problems that would make ``rule`` unusable in a hook (empty list when fine)."""
    problems = []
    if not isinstance(rule, Rule):
        return [f"expected a Rule, got {type(rule).__name__}"]
    if rule.kind not in KINDS:
        problems.append(f"rule {rule.rule_id!r}: unknown kind {rule.kind!r}")
    if rule.target not in ("output", "prompt"):
        problems.append(f"rule {rule.rule_id!r}: target must be 'output' or 'prompt', got {rule.target!r}")
    data = to_hook_dict(rule)
    for key in _REQUIRED.get(rule.kind, ()):
        if key not in data:
            problems.append(f"rule {rule.rule_id!r}: {rule.kind} rule needs {key!r}")
    for key in ("pattern", "anchor_line"):
        if isinstance(data.get(key), str):
            try:
                re.compile(data[key])
            except re.error as exc:
                problems.append(f"rule {rule.rule_id!r}: {key} does not compile: {exc}")
                continue
            if not pattern_is_linear(data[key]):
                problems.append(f"rule {rule.rule_id!r}: {key} is not provably linear-time")
    for part in data.get("parts") or ():
        if isinstance(part, (list, tuple)) and len(part) == 3 and part[0] in ("input_match", "output_match"):
            try:
                if re.compile(part[1]).groups < 1:
                    problems.append(f"rule {rule.rule_id!r}: input slot pattern has no group")
            except (re.error, TypeError) as exc:
                problems.append(f"rule {rule.rule_id!r}: input slot pattern does not compile: {exc}")
    if not isinstance(rule.priority, int):
        problems.append(f"rule {rule.rule_id!r}: priority must be int")
    return problems


def runtime_module() -> cst.Module:
    """``hook_runtime.py`` with ``hook_stream.py`` appended (its docstring and its import of
    the runtime left out): the code every generated module carries."""
    runtime = cst.parse_module(RUNTIME_SOURCE.read_text(encoding="utf-8"))
    stream = cst.parse_module(STREAM_SOURCE.read_text(encoding="utf-8"))
    body = []
    for statement in stream.body[1:]:
        if isinstance(statement, cst.SimpleStatementLine) and any(
            isinstance(s, cst.ImportFrom) and s.relative for s in statement.body
        ):
            continue
        body.append(statement)
    return runtime.with_changes(body=list(runtime.body) + body)


class _Fill(cst.CSTTransformer):
    """Replaces the runtime's placeholder HOOK_VERSION/RULES values and docstring."""

    def __init__(self, values: Dict[str, cst.BaseExpression], docstring: str) -> None:
        self.values = values
        self.docstring = docstring

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        target = updated.targets[0].target
        if isinstance(target, cst.Name) and target.value in self.values:
            return updated.with_changes(value=self.values[target.value])
        return updated

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        body = list(updated.body)
        body[0] = cst.SimpleStatementLine([cst.Expr(cst.SimpleString(repr(self.docstring)))])
        return updated.with_changes(body=body)


def build_module(
    rules: Sequence[Rule], version: str = "unversioned", generated_at: Optional[str] = None
) -> CodegenResult:
    """Build the hook module's source; problems come back in the result, never raised."""
    try:
        rules = [r.structured() if isinstance(r, Rule) else r for r in rules]  # seed-shaped rules too
        errors = [problem for rule in rules for problem in check_rule(rule)]
        if errors:
            return CodegenResult("error", errors=errors)
        ordered = sorted(rules, key=lambda r: (r.target, -r.priority, r.rule_id))
        generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        runtime = runtime_module()
        output_count = sum(1 for r in ordered if r.target == "output")
        header = [
            "# Generated by vt_middleware.synthesize with libcst. Do not edit: regenerate instead.",
            f"# version: {_safe(version)}   generated: {_safe(generated_at)}",
            f"# rules: {len(ordered)} ({output_count} output, {len(ordered) - output_count} prompt)."
            " Feedback text lives only inside the string literals of RULES.",
        ]
        filled = runtime.visit(
            _Fill(
                {"HOOK_VERSION": literal(str(version)), "RULES": _rules_table(ordered)},
                "Hook module synthesised from human feedback: intercept_prompt(), intercept_output() and"
                " intercept_output_stream().",
            )
        )
        module = filled.with_changes(
            header=[cst.EmptyLine(comment=cst.Comment(line)) for line in header] + [cst.EmptyLine()]
        )
        code = module.code
        compile(code, f"<hook {version}>", "exec")
        return CodegenResult("ok", code=code, rule_count=len(ordered))
    except Exception as exc:  # noqa: BLE001 - reported in the result (codemod style)
        return CodegenResult("error", errors=[f"{type(exc).__name__}: {exc}"])


class HookScriptGenerator:
    """Rules -> a hook module file (seed API: ``generate(rules, output_dir) -> path``)."""

    def __init__(self, filename: str = DEFAULT_FILENAME) -> None:
        self.filename = filename
        self.last_result: Optional[CodegenResult] = None

    def build(self, rules: Sequence[Rule], version: str = "unversioned") -> CodegenResult:
        self.last_result = build_module(rules, version=version)
        return self.last_result

    def generate(
        self,
        rules: Sequence[Rule],
        output_dir: str | os.PathLike,
        enable_versioning: bool = True,
        version: str = "unversioned",
    ) -> str:
        """Write the module to ``output_dir/<filename>``; raise HookError if it cannot be built.
        ``enable_versioning``: also keep it as a new immutable version in ``output_dir``
        (``vNNNN/``, made active), which ``HookVersionManager.rollback`` can restore."""
        if enable_versioning and version == "unversioned":
            from .versions import HookVersionStore

            version = HookVersionStore(output_dir).reserve_version()
        result = self.build(rules, version=version)
        if not result.ok or result.code is None:
            raise HookError("hook generation failed: " + "; ".join(result.errors))
        path = Path(output_dir) / self.filename
        write_atomic(path, result.code)
        if enable_versioning:
            from .versions import HookVersionStore

            store = HookVersionStore(output_dir)
            store.create_version(
                result.code,
                rules=[r.structured() for r in rules],
                version=version,
                validation={"ok": None, "reason": "generated without feedback pairs to check"},
            )
            store.activate(version, reason="generate")
        return str(path)
