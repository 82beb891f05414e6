"""Typed values in edits: a number, date or time the fix kept but wrote differently.

``"USD 1234.5"`` -> ``"$1,234.50"`` is one value in two notations: the rule captures the value
with the source notation's pattern and writes it in the target notation (``num``/``date``/``time``
parts interpreted by the hook runtime). Source and target notations are inferred from the
examples: every notation that parses the bad text and every one that renders the fixed text
gives a candidate; scoring on the pairs keeps the one that fixes them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterator, List, NamedTuple, Tuple

from .hook_runtime import (
    DATE_FORMATS,
    TIME_FORMATS,
    date_values,
    format_date,
    format_number,
    format_time,
    number_regex,
    parse_number,
    time_values,
)

NUMBER_SPECS = ("np", "cp", "dc", "nc", "sp")
_BEFORE = r"(?<![\w.,:/-])"
_AFTER = r"(?![\w:/]|[.,]\d)"
_H24_AFTER = r"(?! ?[AaPp]\.?[Mm])"


class Value(NamedTuple):
    kind: str  # "num" | "date" | "time"
    start: int
    end: int
    notation: str
    value: object
    digits: int  # fraction digits as written (numbers)


_LEADING_DIGITS = re.compile(r"^\(\\d\{(\d)(?:,(\d))?\}\)")


def _guarded(core: str) -> str:
    """``core`` with the not-inside-a-longer-value guard; when it starts with digits the guard
    sits after the first digit, so the regex engine can scan for a digit first (fast)."""
    found = _LEADING_DIGITS.match(core)
    if found is None:
        return _BEFORE + core
    low, high = int(found.group(1)), int(found.group(2) or found.group(1))
    rest = f"\\d{{{low - 1},{high - 1}}}" if high > 1 else ""
    return "(\\d" + _BEFORE.replace("])", "]\\d)") + rest + ")" + core[found.end() :]


def value_regex(kind: str, notation: str) -> str:
    """The bounded capture pattern of one notation (groups start at 1)."""
    if kind == "num":
        return number_regex(notation)
    if kind == "date":
        return _guarded(DATE_FORMATS[notation][0]) + _AFTER
    after = _H24_AFTER if notation.startswith("h24") else ""
    return _guarded(TIME_FORMATS[notation][0]) + after + _AFTER


def values(text: str) -> Iterator[Value]:
    """Every reading of every number, date and time in ``text`` (one span may have several)."""
    for name, (_, order) in DATE_FORMATS.items():
        for match in re.finditer(value_regex("date", name), text):
            ymd = date_values(match.groups(), order)
            if ymd is not None:
                yield Value("date", match.start(), match.end(), name, ymd, 0)
    for name, (_, order) in TIME_FORMATS.items():
        for match in re.finditer(value_regex("time", name), text):
            hm = time_values(match.groups(), order)
            if hm is not None:
                yield Value("time", match.start(), match.end(), name, hm, 0)
    for spec in NUMBER_SPECS:
        for match in re.finditer(number_regex(spec), text):
            raw = match.group(1)
            if spec != "np" and raw.isdigit():
                continue  # a bare number is read one way only
            number = parse_number(raw, spec)
            if number is not None:
                decimal = "," if spec[1] == "c" else "."
                digits = len(raw.rsplit(decimal, 1)[1]) if decimal in raw else 0
                yield Value("num", match.start(1), match.end(1), spec, number, digits)


def _renders(kind: str, value: Value, text: str) -> List[str]:
    """Target notations that write ``value`` as exactly ``text``."""
    found = []
    if kind == "date":
        found = [name for name in DATE_FORMATS if format_date(value.value, name) == text]
    elif kind == "time":
        found = [name for name in TIME_FORMATS if format_time(value.value, name) == text]
    else:
        for spec in NUMBER_SPECS:
            for places in ("k", "0", "1", "2", "3"):
                if format_number(value.value, spec + places, value.digits) == text:
                    found.append(spec + places)
    return found


@lru_cache(maxsize=20_000)
def conversions(bad: str, fixed: str) -> List[Tuple[str, List[List[str]], str, List[str]]]:
    """``(pattern, parts, label, literals of the pattern)`` rewrites that turn ``bad`` into ``fixed`` by re-writing one
    value; literal text around the value is kept as ``re.escape``-d context."""
    out: List[Tuple[str, List[List[str]], str, List[str]]] = []
    bad_values = [v for v in values(bad)]
    fixed_values = [v for v in values(fixed)]
    for kind in ("date", "time", "num"):
        spans_b = {(v.start, v.end) for v in bad_values if v.kind == kind}
        spans_f = {(v.start, v.end) for v in fixed_values if v.kind == kind}
        if len(spans_b) != 1 or len(spans_f) != 1:
            continue
        ((f0, f1),) = spans_f
        for source in (v for v in bad_values if v.kind == kind):
            targets = [f for f in fixed_values if f.kind == kind and f.value == source.value]
            if not targets:
                continue
            written = fixed[f0:f1]
            pre_b, post_b = bad[: source.start], bad[source.end :]
            pre_f, post_f = fixed[:f0], fixed[f1:]
            for target in _renders(kind, source, written):
                if (pre_b, post_b, bad[source.start : source.end]) == (pre_f, post_f, written):
                    continue
                pattern = re.escape(pre_b) + value_regex(kind, source.notation) + re.escape(post_b)
                parts = [["lit", pre_f, ""], [kind, f"1|{source.notation}|{target}", ""], ["lit", post_f, ""]]
                out.append(
                    (
                        pattern,
                        [p for p in parts if p[0] != "lit" or p[1]],
                        f"{kind} {source.notation}->{target}",
                        [pre_b, post_b],
                    )
                )
    return out
