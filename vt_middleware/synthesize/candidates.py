"""Candidate rules mined from diff records, before they are scored.

A candidate is a hook-table rule dict (the shape ``hook_runtime`` interprets) plus
the pair ids it was mined from. Feedback text only ever lands in string fields;
regexes are ``re.escape``-d literals joined with fixed slot patterns.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .slots import (
    ATOM_RE,
    INPUT_SLOT,
    NUMBER_FULL_RE,
    NUMBER_PATTERN,
    WORD_PATTERN,
    is_number,
    learn_input_slot,
    slot_value_atom,
)
from .typed import conversions

MAX_SEGMENT_CHARS = 300  # longer edits are rewrites, not reusable rules
MAX_ADDITION_CHARS = 500

Candidate = Dict[str, Any]


def rule_id(kind: str, key: Any) -> str:
    """Deterministic id from the rule's kind and defining key."""
    digest = hashlib.sha1(json.dumps([kind, key], ensure_ascii=True, sort_keys=True).encode()).hexdigest()
    return f"{kind}-{digest[:10]}"


def _is_word(atom: str) -> bool:
    return bool(atom) and (atom[0].isalnum() or atom[0] == "_")


def _join_literals(parts: List[List[str]]) -> List[List[str]]:
    out: List[List[str]] = []
    for part in parts:
        if part[0] == "lit" and out and out[-1][0] == "lit":
            out[-1] = ["lit", out[-1][1] + part[1], ""]
        elif part[0] != "lit" or part[1]:
            out.append(part)
    return out


@lru_cache(maxsize=50_000)
def abstract_replacement(bad: str, fixed: str, input_prompt: str = "") -> Optional[Tuple[str, str, List[List[str]]]]:
    """Generalise one edit ``bad`` -> ``fixed`` into ``(pattern, anchor, parts)``.

    Numbers copied from ``bad`` into ``fixed`` become number slots; words copied
    with a case change (``the`` -> ``The``) or capitalised names become word slots.
    Numbers and words the fix brings in from ``input_prompt`` are marked
    ``["from_input", value, ""]`` (resolved across pairs by :func:`mine_replacements`).
    Returns None when no literal anchor is left (the rule would match anything).
    """
    bad_atoms, fixed_atoms = ATOM_RE.findall(bad), ATOM_RE.findall(fixed)
    fixed_lower = {a.lower() for a in fixed_atoms if _is_word(a)}
    pattern: List[str] = []
    slots: Dict[str, int] = {}  # lower-cased slot value -> group number
    literals: List[str] = []
    current = ""
    for atom in bad_atoms:
        numeric = is_number(atom)
        copied = atom.lower() in fixed_lower and atom.lower() not in slots
        name_like = atom[:1].isupper() or atom.lower() != atom or atom not in fixed_atoms
        if _is_word(atom) and copied and (numeric or name_like):
            if current:
                literals.append(current)
                pattern.append(re.escape(current))
                current = ""
            slots[atom.lower()] = len(slots) + 1
            pattern.append(f"({NUMBER_PATTERN if numeric else WORD_PATTERN})")
        else:
            current += atom
    if current:
        literals.append(current)
        pattern.append(re.escape(current))
    anchor = max(literals, key=len, default="")
    if not anchor.strip() or (not any(ch.isalnum() for ch in anchor) and len(anchor.strip()) < 2):
        return None
    regex = "".join(pattern)
    if bad[:1] and _is_word(bad[:1]):
        regex = r"\b" + regex
    if bad[-1:] and _is_word(bad[-1:]):
        regex += r"\b"
    parts: List[List[str]] = []
    bad_words = {a.lower(): a for a in bad_atoms if _is_word(a)}
    input_atoms = set(ATOM_RE.findall(input_prompt)) if input_prompt else set()
    for atom in fixed_atoms:
        group = slots.get(atom.lower())
        if group is None:
            from_input = atom in input_atoms and atom.lower() not in bad_words and slot_value_atom(atom)
            parts.append(["from_input" if from_input else "lit", atom, ""])
            continue
        original = bad_words[atom.lower()]
        if atom == original:
            kind = "group"
        elif atom == original[:1].upper() + original[1:]:
            kind = "group_cap"
        elif atom == original[:1].lower() + original[1:]:
            kind = "group_lower"
        else:
            parts.append(["lit", atom, ""])
            continue
        parts.append([kind, str(group), original])
    return regex, anchor, _join_literals(parts)


def _tokens(text: str) -> List[str]:
    from .analyzer import tokenize

    return tokenize(text)


CONTEXT_VARIANTS = ((0, 0), (1, 0), (0, 1), (1, 1))


def _edit_spans(diff: Dict[str, Any]) -> List[Tuple[str, str, str, str, str, str]]:
    """Middle edits of a diff as ``(bad, fixed, left, right, bad core, fixed core)``: each edit
    with none or one token of the unchanged text on either side (inserts need some context)."""
    segments = diff["segments"]
    edits = []
    for index, seg in enumerate(segments):
        if seg["op"] == "equal":
            continue
        bad, fixed = seg["bad"], seg["fixed"]
        if bad.split() == fixed.split():
            continue  # whitespace-only edits are the normalisers' job
        if len(bad) > MAX_SEGMENT_CHARS or len(fixed) > MAX_SEGMENT_CHARS:
            continue
        before = _tokens(segments[index - 1]["bad"]) if index > 0 else []
        after = _tokens(segments[index + 1]["bad"]) if index + 1 < len(segments) else []
        for n_left, n_right in CONTEXT_VARIANTS:
            if n_left > len(before) or n_right > len(after):
                continue
            left = "".join(before[len(before) - n_left :]) if n_left else ""
            right = "".join(after[:n_right])
            if seg["op"] == "insert" and not (left.strip() or right.strip()):
                continue
            edits.append((left + bad + right, left + fixed + right, left, right, bad, fixed))
    return edits


def _replacement_variants(parts: List[List[str]]) -> List[Tuple[str, List[List[str]], List[str]]]:
    """(group key, parts, values from the input) of one abstracted edit: always the literal
    version; also one with input slots when the fix brought in values from the input."""
    literal = _join_literals([["lit", p[1], ""] if p[0] == "from_input" else p for p in parts])
    variants = [(json.dumps([p[:2] for p in literal]), literal, [])]
    if any(p[0] == "from_input" for p in parts):
        shape = [[p[0], "\x00"] if p[0] == "from_input" else p[:2] for p in parts]
        variants.append((json.dumps(shape), parts, [p[1] for p in parts if p[0] == "from_input"]))
    return variants


def _resolve_input_parts(group: Dict[str, Any]) -> Optional[Tuple[List[List[str]], List[str]]]:
    """Replace each ``from_input`` part by a learned input slot (or a literal when every
    pair has the same value); None when some slot has no consistent source."""
    parts: List[List[str]] = []
    hints: List[str] = []
    slot = 0
    for part in group["parts"]:
        if part[0] != "from_input":
            parts.append(part)
            continue
        values = [example[2][slot] for example in group["examples"]]
        slot += 1
        if len(set(values)) == 1:
            parts.append(["lit", values[0], ""])
            continue
        learned = learn_input_slot(values, [example[3] for example in group["examples"]])
        if learned is None:
            return None
        parts.append(learned.part)
        hints.append(learned.hint)
    if not hints:
        return None  # the literal variant is the same rule
    return _join_literals(parts), hints


def mine_replacements(diffs: Sequence[Dict[str, Any]], min_support: int) -> List[Candidate]:
    """Replace/remove candidates seen in at least ``min_support`` pairs."""
    groups: Dict[Tuple[str, str], Dict[str, Any]] = {}

    def add(regex: str, shape: str, anchor: str, parts: List[List[str]], diff: Dict[str, Any], example: tuple) -> None:
        group = groups.setdefault((regex, shape), {"pairs": [], "examples": [], "anchor": anchor, "parts": parts})
        if diff["pair_id"] not in group["pairs"]:
            group["pairs"].append(diff["pair_id"])
            group["examples"].append(example)

    for diff in diffs:
        seen = set()
        for bad, fixed, left, right, core_bad, core_fixed in _edit_spans(diff):
            abstracted = abstract_replacement(bad, fixed, diff["input_prompt"])
            if abstracted is not None:
                regex, anchor, parts = abstracted
                for shape, variant, values in _replacement_variants(parts):
                    add(regex, shape, anchor, variant, diff, (bad, fixed, values, diff["input_prompt"]))
            key = (core_bad, core_fixed, left, right)
            if key in seen:
                continue
            seen.add(key)
            if right or (left and any(ch.isalnum() for ch in core_bad if not ch.isdigit())):
                continue  # typed rewrites: the value with its own text, or with one word before it
            for regex, parts, _label, literals in conversions(core_bad, core_fixed):
                anchor = max((x for x in [left, right, *literals] if x.strip()), key=len, default="")
                full = _join_literals([["lit", left, ""], *parts, ["lit", right, ""]])
                pattern = re.escape(left) + regex + re.escape(right)
                add(pattern, json.dumps(full), anchor, full, diff, (bad, fixed, [], diff["input_prompt"]))
    candidates = []
    for (regex, _), group in sorted(groups.items()):
        if len(group["pairs"]) < min_support:
            continue
        parts, hints = group["parts"], []
        if any(p[0] == "from_input" for p in parts):
            resolved = _resolve_input_parts(group)
            if resolved is None:
                continue
            parts, hints = resolved
        bad, fixed = group["examples"][0][:2]
        kind = "remove" if not parts else "replace"
        description = (
            f"Remove {bad.strip()!r}" if kind == "remove" else f"Replace {bad.strip()!r} with {fixed.strip()!r}"
        )
        if "(" in regex:
            description += " (generalised over numbers/names)"
        if hints:
            description += " (values from the input: " + "; ".join(repr(h) for h in hints) + ")"
        candidates.append(
            {
                "id": rule_id(kind, [regex, parts]),
                "kind": kind,
                "target": "output",
                "priority": 50,
                "description": description,
                "pattern": regex,
                "anchor": group["anchor"],
                "ignore_case": False,
                "parts": parts,
                "mined_from": sorted(group["pairs"]),
            }
        )
    return candidates


def line_opcodes(diff: Dict[str, Any]) -> List[Tuple[str, int, int, int, int]]:
    """Line-level alignment of a diff's bad and fixed outputs (cached on the diff record)."""
    found = diff.get("_line_ops")
    if found is None:
        bad, fixed = diff["bad_output"].split("\n"), diff["fixed_output"].split("\n")
        found = difflib.SequenceMatcher(None, bad, fixed, autojunk=False).get_opcodes()
        diff["_line_ops"] = found
    return found


def _addition(diff: Dict[str, Any], where: str) -> Optional[Tuple[str, str]]:
    """(separator, body) of text the fix added at the end (or start) of the output: whole lines
    (after blank lines, learned whole), or words added to the last (first) line."""
    ops = line_opcodes(diff)
    bad_lines, fixed_lines = diff["bad_output"].split("\n"), diff["fixed_output"].split("\n")
    if not ops or not diff["bad_output"].strip():
        return None
    tag, i1, i2, j1, j2 = ops[-1] if where == "append" else ops[0]
    at_edge = i2 == len(bad_lines) if where == "append" else i1 == 0
    grown = tag == "replace" and at_edge and j2 - j1 > i2 - i1
    if (tag == "insert" and at_edge) or grown:
        # lines beyond those that replace the bad ones are added (the last line may change too)
        extra = (i2 - i1) if grown else 0
        block = fixed_lines[j1 + extra : j2] if where == "append" else fixed_lines[j1 : j2 - extra]
        blanks = 0
        order = block if where == "append" else block[::-1]
        while blanks < len(order) and not order[blanks].strip():
            blanks += 1
        body = "\n".join(block).strip()
        separator = "\n" * (blanks + 1)
    else:
        bad_line = bad_lines[-1] if where == "append" else bad_lines[0]
        fixed_line = fixed_lines[-1] if where == "append" else fixed_lines[0]
        kept = bad_line.rstrip() if where == "append" else bad_line.lstrip()
        if not kept or len(fixed_line) <= len(kept):
            return None
        if where == "append" and fixed_line.startswith(kept):
            extra = fixed_line[len(kept) :]
            separator = extra[: len(extra) - len(extra.lstrip())]
        elif where == "prepend" and fixed_line.endswith(kept):
            extra = fixed_line[: len(fixed_line) - len(kept)]
            separator = extra[len(extra.rstrip()) :]
        else:
            return None
        body = extra.strip()
    if not body or len(body) > MAX_ADDITION_CHARS:
        return None
    return separator, body


NUM, WORD = "\x00NUM", "\x00WORD"


def _skeletons(body: str, input_prompt: str) -> List[Tuple[Tuple[str, ...], List[str]]]:
    """(skeleton, slot values) of an added text: numbers are slots; a second skeleton
    also makes slots of words that occur in the call's input."""
    atoms = ATOM_RE.findall(body)
    plain = tuple(NUM if is_number(a) else a for a in atoms)
    found = [(plain, [a for a in atoms if is_number(a)])]
    in_input = set(ATOM_RE.findall(input_prompt))
    words = tuple(s if s != a or not slot_value_atom(a) or a not in in_input else WORD for a, s in zip(atoms, plain))
    if words != plain:
        found.append((words, [a for a, s in zip(atoms, words) if s in (NUM, WORD)]))
    return found


def learned_slot(values: List[str], diffs: List[Dict[str, Any]]) -> Optional[Tuple[List[str], str]]:
    """(part, hint) reading ``values`` from the input, else from the output itself (a value the
    answer states elsewhere); None when neither agrees across the pairs."""
    learned = learn_input_slot(values, [d["input_prompt"] for d in diffs])
    if learned is not None:
        return learned.part, learned.hint
    learned = learn_input_slot(values, [d["bad_output"] for d in diffs])
    if learned is not None:
        return ["output_match", learned.part[1], learned.part[2]], learned.hint + " (in the output)"
    return None


def _slot_source(values: List[str], diffs: List[Dict[str, Any]]) -> Tuple[List[str], Optional[str]]:
    """Where a number in an added text comes from, and a hint for the description: a
    context pattern in the input, else the n-th number of the input or output, else the mode."""
    mode = Counter(values).most_common(1)[0][0]
    if len(set(values)) == 1:
        return ["lit", mode, ""], None
    learned = learned_slot(values, diffs)
    if learned is not None:
        return learned
    for kind, field in (("input_number", "input_prompt"), ("output_number", "bad_output")):
        for index in range(4):
            numbers = [NUMBER_FULL_RE.findall(d[field]) for d in diffs]
            if all(index < len(n) and n[index] == v for n, v in zip(numbers, values)):
                return [kind, str(index), mode], f"number {index + 1} of the {field.split('_')[0]}"
    return ["lit", mode, ""], None


def _addition_parts(
    skeleton: Tuple[str, ...], members: List[Tuple[Dict[str, Any], str, List[str]]]
) -> Optional[Tuple[List[List[str]], str, str, List[str]]]:
    """(parts, presence regex, readable template, slot hints) of one skeleton group; None when a word
    slot has no consistent source (the numbers-only skeleton covers that group)."""
    member_diffs = [m[0] for m in members]
    parts: List[List[str]] = []
    presence: List[str] = []
    template: List[str] = []
    hints: List[str] = []
    slot = 0
    for atom in skeleton:
        if atom not in (NUM, WORD):
            parts.append(["lit", atom, ""])
            presence.append(r"\s{1,8}+" if atom.isspace() else re.escape(atom))
            template.append(atom)
            continue
        values = [m[2][slot] for m in members]
        slot += 1
        if atom == NUM:
            part, hint = _slot_source(values, member_diffs)
        else:
            learned = learned_slot(values, member_diffs)
            if learned is None:
                return None
            part, hint = learned
        constant = part[0] == "lit"
        parts.append(part)
        presence.append(
            re.escape(part[1]) if constant and atom == WORD else NUMBER_PATTERN if atom == NUM else WORD_PATTERN
        )
        template.append(part[1] if constant else "{" + ("N" if atom == NUM else "X") + "}")
        if hint:
            hints.append(hint)
    if WORD in skeleton and not any(p[0] in (INPUT_SLOT, "output_match") for p in parts):
        return None  # same rule as the numbers-only skeleton
    while presence and presence[0] == r"\s{1,8}+":
        presence.pop(0)  # the body's presence is what counts, not the spacing before it
    while presence and presence[-1] == r"\s{1,8}+":
        presence.pop()
    return _join_literals(parts), "".join(presence), "".join(template), hints


def mine_additions(diffs: Sequence[Dict[str, Any]], min_support: int) -> List[Candidate]:
    """Required suffix/prefix candidates (rating lines, disclaimers), with slots filled from
    the input (or output) where the pairs agree on where the value comes from."""
    candidates = []
    for where in ("append", "prepend"):
        groups: Dict[Tuple[str, ...], List[Tuple[Dict[str, Any], str, List[str]]]] = defaultdict(list)
        for diff in diffs:
            found = _addition(diff, where)
            if found is None:
                continue
            separator, body = found
            for skeleton, values in _skeletons(body, diff["input_prompt"]):
                groups[skeleton].append((diff, separator, values))
        for skeleton, members in sorted(groups.items()):
            if len(members) < min_support:
                continue
            built = _addition_parts(skeleton, members)
            if built is None:
                continue
            parts, presence, template, hints = built
            separator = Counter(m[1] for m in members).most_common(1)[0][0]
            verb = "End" if where == "append" else "Start"
            candidate = {
                "id": rule_id(where, [list(skeleton), parts, separator]),
                "kind": where,
                "target": "output",
                "priority": 20,
                "description": f"{verb} the output with {template!r} when it is missing",
                "pattern": presence,
                "parts": parts,
                "separator": separator,
                "mined_from": sorted(m[0]["pair_id"] for m in members),
            }
            if any(p[0] == INPUT_SLOT for p in parts):
                candidate["correct"] = True  # a present line with other values gets them fixed
                candidate["description"] += " or has other values; values from the input: " + "; ".join(
                    repr(h) for h in hints
                )
            candidates.append(candidate)
    return candidates


NORMALIZER_VARIANTS: List[Tuple[str, Optional[int], int, str]] = [
    # (normalizer, param, priority, description)
    ("json_repair", None, 90, "Repair JSON output (fences, trailing commas, quotes) to compact JSON"),
    ("json_repair", 2, 90, "Repair JSON output (fences, trailing commas, quotes) to indented JSON"),
    ("strip", None, 85, "Strip leading and trailing whitespace"),
    ("collapse_spaces", None, 80, "Collapse repeated spaces and trailing spaces on each line"),
    ("blank_lines", None, 80, "Collapse runs of blank lines into one"),
    ("straight_quotes", None, 80, "Replace curly quotes with straight quotes"),
    ("capitalize_first", None, 40, "Capitalise the first letter of the output"),
    ("input_casing", None, 70, "Write names the way the input writes them"),
]


def mine_normalizers(diffs: Sequence[Dict[str, Any]]) -> List[Candidate]:
    """Format normalisation candidates (scored later like every other candidate)."""
    variants = list(NORMALIZER_VARIANTS)
    truncated = [
        d
        for d in diffs
        if d["fixed_output"].strip()
        and len(d["fixed_output"].strip()) < len(d["bad_output"].strip())
        and d["bad_output"].strip().startswith(d["fixed_output"].strip())
    ]
    if truncated:
        limit = max(len(d["fixed_output"].strip()) for d in truncated)
        variants.append(("truncate", limit, 30, f"Cut outputs longer than {limit} characters at a sentence end"))
    return [
        {
            "id": rule_id("normalize", [name, param]),
            "kind": "normalize",
            "target": "output",
            "priority": priority,
            "description": description,
            "normalizer": name,
            "param": param,
            "mined_from": [],
        }
        for name, param, priority, description in variants
    ]
