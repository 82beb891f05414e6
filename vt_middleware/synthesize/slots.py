"""Slots filled from the call's input: where does a value a fix inserted come from?

When fixes insert a value (a number or a word) that also occurs in the call's input --
"Rating: 3/5" for the prompt "Summarise this review (3 stars): ..." -- the value is a
slot, not a constant: the hook fills it at run time with a regular expression over the
input. The expression is the literal context the pairs share around the value (up to
``CONTEXT_ATOMS`` atoms each side, e.g. ``review \\(`` + value + ``\\s+stars\\)``) with one
capture group, and it is learned only when, re-applied to every pair's input, it yields
that pair's value for at least ``MIN_AGREEMENT`` of them (and for two pairs or more).
Feedback text enters the expression only through ``re.escape``; the slot itself is a fixed
pattern, so the expression has no nested quantifiers.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import List, Optional, Sequence

ATOM_RE = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)
NUMBER_FULL_RE = re.compile(r"\d+(?:[.,]\d+)*")
# Slot patterns are bounded and atomic or possessive (no backtracking into them), so rule
# patterns provably match in linear time (hook_runtime.pattern_is_linear).
NUMBER_PATTERN = r"(?>\d(?:[\d.,]{0,38}\d)?)"
WORD_PATTERN = r"\w{1,40}+"
CONTEXT_ATOMS = 4
MIN_AGREEMENT = 0.8
INPUT_SLOT = "input_match"  # part kind: ["input_match", regex with one group, default]


@dataclass(frozen=True)
class InputSlot:
    """A learned slot: ``part`` for the rule table, ``hint`` for descriptions, ``agreement``
    the share of pairs whose input gives back their own value."""

    part: List[str]
    hint: str
    agreement: float


def is_number(atom: str) -> bool:
    return NUMBER_FULL_RE.fullmatch(atom) is not None


def slot_value_atom(atom: str) -> bool:
    """Atoms that may become input slots: numbers and words of two characters or more."""
    return bool(atom) and (atom[0].isalnum() or atom[0] == "_") and (is_number(atom) or len(atom) >= 2)


def _atom_pattern(atom: str) -> str:
    return r"\s{1,8}+" if atom.isspace() else re.escape(atom)


def _shared_suffix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    return n


def _shared_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _context(atoms: List[str], index: int) -> tuple:
    return atoms[max(0, index - CONTEXT_ATOMS) : index], atoms[index + 1 : index + 1 + CONTEXT_ATOMS]


def learn_input_slot(values: Sequence[str], inputs: Sequence[str]) -> Optional[InputSlot]:
    """An input slot for ``values[i]`` read from ``inputs[i]``, or None when the pairs do not
    agree on one context (or every value is the same: that is a constant, not a slot)."""
    if len(values) != len(inputs) or len(values) < 2 or len(set(values)) < 2:
        return None
    numeric = all(is_number(v) for v in values)
    if not numeric and not all(slot_value_atom(v) for v in values):
        return None
    atom_lists = [ATOM_RE.findall(text) if isinstance(text, str) else [] for text in inputs]
    positions = [[j for j, atom in enumerate(atoms) if atom == value] for atoms, value in zip(atom_lists, values)]
    present = [i for i, found in enumerate(positions) if found]
    if len(present) < max(2, MIN_AGREEMENT * len(values)):
        return None
    seed = present[0]
    best: Optional[tuple] = None
    for index in positions[seed]:
        left, right = _context(atom_lists[seed], index)
        n_left, n_right = len(left), len(right)
        for other in present[1:]:
            contexts = [_context(atom_lists[other], j) for j in positions[other]]
            n_left = min(n_left, max(_shared_suffix(left, c[0]) for c in contexts))
            n_right = min(n_right, max(_shared_prefix(right, c[1]) for c in contexts))
        while n_left and left[len(left) - n_left].isspace():
            n_left -= 1  # context starts and ends on a word or mark, not on spacing
        while n_right and right[n_right - 1].isspace():
            n_right -= 1
        literal = left[len(left) - n_left :] + right[:n_right]
        if not any(ch.isalnum() for atom in literal for ch in atom):
            continue  # no word in the context: it would match any number/word
        regex = (
            "".join(_atom_pattern(a) for a in left[len(left) - n_left :])
            + f"({NUMBER_PATTERN if numeric else WORD_PATTERN})"
            + "".join(_atom_pattern(a) for a in right[:n_right])
        )
        compiled = re.compile(regex)
        agree = 0
        for text, value in zip(inputs, values):
            found = compiled.search(text) if isinstance(text, str) else None
            agree += found is not None and found.group(1) == value
        hint = "".join(left[len(left) - n_left :]) + ("N" if numeric else "X") + "".join(right[:n_right])
        key = (agree, n_left + n_right)
        if best is None or key > best[0]:
            best = (key, regex, hint.strip())
    if best is None:
        return None
    (agree, _), regex, hint = best
    if agree < 2 or agree < MIN_AGREEMENT * len(values):
        return None
    mode = Counter(values).most_common(1)[0][0]
    return InputSlot([INPUT_SLOT, regex, mode], hint, round(agree / len(values), 4))
