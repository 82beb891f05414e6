"""Candidate rules mined from diff records, before they are scored.

A candidate is a hook-table rule dict (the shape ``hook_runtime`` interprets) plus
the pair ids it was mined from. Feedback text only ever lands in string fields;
regexes are ``re.escape``-d literals joined with fixed slot patterns.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

ATOM_RE = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)
NUMBER_FULL_RE = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_PATTERN = r"\d+(?:[.,]\d+)*"
WORD_PATTERN = r"\w+"
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


def abstract_replacement(bad: str, fixed: str) -> Optional[Tuple[str, str, List[List[str]]]]:
    """Generalise one edit ``bad`` -> ``fixed`` into ``(pattern, anchor, parts)``.

    Numbers copied from ``bad`` into ``fixed`` become number slots; words copied
    with a case change (``the`` -> ``The``) or capitalised names become word slots.
    Returns None when no literal anchor is left (the rule would match anything).
    """
    bad_atoms, fixed_atoms = ATOM_RE.findall(bad), ATOM_RE.findall(fixed)
    fixed_lower = {a.lower() for a in fixed_atoms if _is_word(a)}
    pattern: List[str] = []
    slots: Dict[str, int] = {}  # lower-cased slot value -> group number
    literals: List[str] = []
    current = ""
    for atom in bad_atoms:
        is_number = NUMBER_FULL_RE.fullmatch(atom) is not None
        copied = atom.lower() in fixed_lower and atom.lower() not in slots
        name_like = atom[:1].isupper() or atom.lower() != atom or atom not in fixed_atoms
        if _is_word(atom) and copied and (is_number or name_like):
            if current:
                literals.append(current)
                pattern.append(re.escape(current))
                current = ""
            slots[atom.lower()] = len(slots) + 1
            pattern.append(f"({NUMBER_PATTERN if is_number else WORD_PATTERN})")
        else:
            current += atom
    if current:
        literals.append(current)
        pattern.append(re.escape(current))
    anchor = max(literals, key=len, default="")
    if not anchor.strip() or not any(ch.isalnum() for ch in anchor) and len(anchor.strip()) < 2:
        return None
    regex = "".join(pattern)
    if bad[:1] and _is_word(bad[:1]):
        regex = r"\b" + regex
    if bad[-1:] and _is_word(bad[-1:]):
        regex += r"\b"
    parts: List[List[str]] = []
    bad_words = {a.lower(): a for a in bad_atoms if _is_word(a)}
    for atom in fixed_atoms:
        group = slots.get(atom.lower())
        if group is None:
            parts.append(["lit", atom, ""])
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


def _edit_spans(diff: Dict[str, Any]) -> List[Tuple[str, str]]:
    """Middle edits of a diff as (bad, fixed); inserts get their preceding word as anchor."""
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
        if seg["op"] == "insert":
            if index == 0 or index == len(segments) - 1:
                continue  # prefix/suffix additions are mined separately
            before = ATOM_RE.findall(segments[index - 1]["bad"])
            words = [i for i, a in enumerate(before) if _is_word(a)]
            if not words:
                continue
            context = "".join(before[words[-1] :])
            bad, fixed = context, context + fixed
        edits.append((bad, fixed))
    return edits


def mine_replacements(diffs: Sequence[Dict[str, Any]], min_support: int) -> List[Candidate]:
    """Replace/remove candidates seen in at least ``min_support`` pairs."""
    groups: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for diff in diffs:
        for bad, fixed in _edit_spans(diff):
            abstracted = abstract_replacement(bad, fixed)
            if abstracted is None:
                continue
            regex, anchor, parts = abstracted
            key = (regex, json.dumps([p[:2] for p in parts]))
            group = groups.setdefault(key, {"pairs": [], "examples": [], "anchor": anchor, "parts": parts})
            if diff["pair_id"] not in group["pairs"]:
                group["pairs"].append(diff["pair_id"])
                group["examples"].append((bad, fixed))
    candidates = []
    for (regex, _), group in sorted(groups.items()):
        if len(group["pairs"]) < min_support:
            continue
        bad, fixed = group["examples"][0]
        kind = "remove" if not group["parts"] else "replace"
        description = (
            f"Remove {bad.strip()!r}" if kind == "remove" else f"Replace {bad.strip()!r} with {fixed.strip()!r}"
        )
        if "(" in regex:
            description += " (generalised over numbers/names)"
        candidates.append(
            {
                "id": rule_id(kind, [regex, group["parts"]]),
                "kind": kind,
                "target": "output",
                "priority": 50,
                "description": description,
                "pattern": regex,
                "anchor": group["anchor"],
                "ignore_case": False,
                "parts": group["parts"],
                "mined_from": sorted(group["pairs"]),
            }
        )
    return candidates


def _addition(diff: Dict[str, Any], where: str) -> Optional[Tuple[str, str]]:
    """(separator, body) of text the fix added at the end (or start) of the output."""
    changed = [seg for seg in diff["segments"] if seg["op"] != "equal"]
    if not changed:
        return None
    # From the last change to the end (or start to the first change), so that an
    # alignment which matched a final "." inside the addition still counts.
    if where == "append":
        seg = changed[-1]
        bad, fixed = diff["bad_output"][seg["bad_span"][0] :], diff["fixed_output"][seg["fixed_span"][0] :]
    else:
        seg = changed[0]
        bad, fixed = diff["bad_output"][: seg["bad_span"][1]], diff["fixed_output"][: seg["fixed_span"][1]]
    if where == "append":
        kept = bad.rstrip()
        if not fixed.startswith(kept):
            return None
        tail = fixed[len(kept) :]
        body = tail.strip()
        separator = tail[: len(tail) - len(tail.lstrip())]
    else:
        kept = bad.lstrip()
        if not fixed.endswith(kept):
            return None
        head = fixed[: len(fixed) - len(kept)]
        body = head.strip()
        separator = head[len(head.rstrip()) :]
    if not body or len(body) > MAX_ADDITION_CHARS:
        return None
    if not separator and diff["bad_output"].strip():
        separator = " "
    return separator, body


def _skeleton(body: str) -> Tuple[Tuple[str, ...], List[str]]:
    atoms = ATOM_RE.findall(body)
    skeleton = tuple("\x00NUM" if NUMBER_FULL_RE.fullmatch(a) else a for a in atoms)
    return skeleton, [a for a in atoms if NUMBER_FULL_RE.fullmatch(a)]


def _slot_source(values: List[str], diffs: List[Dict[str, Any]]) -> List[str]:
    """Where a varying number in an added text comes from: input, output, or the mode."""
    mode = Counter(values).most_common(1)[0][0]
    if len(set(values)) == 1:
        return ["lit", mode, ""]
    for kind, field in (("input_number", "input_prompt"), ("output_number", "bad_output")):
        for index in range(4):
            numbers = [NUMBER_FULL_RE.findall(d[field]) for d in diffs]
            if all(index < len(n) and n[index] == v for n, v in zip(numbers, values)):
                return [kind, str(index), mode]
    return ["lit", mode, ""]


def mine_additions(diffs: Sequence[Dict[str, Any]], min_support: int) -> List[Candidate]:
    """Required suffix/prefix candidates (rating lines, disclaimers), with number slots."""
    candidates = []
    for where in ("append", "prepend"):
        groups: Dict[Tuple[str, ...], List[Tuple[Dict[str, Any], str, List[str]]]] = defaultdict(list)
        for diff in diffs:
            found = _addition(diff, where)
            if found is None:
                continue
            separator, body = found
            skeleton, numbers = _skeleton(body)
            groups[skeleton].append((diff, separator, numbers))
        for skeleton, members in sorted(groups.items()):
            if len(members) < min_support:
                continue
            member_diffs = [m[0] for m in members]
            parts: List[List[str]] = []
            presence: List[str] = []
            slot = 0
            for atom in skeleton:
                if atom == "\x00NUM":
                    parts.append(_slot_source([m[2][slot] for m in members], member_diffs))
                    presence.append(NUMBER_PATTERN)
                    slot += 1
                else:
                    parts.append(["lit", atom, ""])
                    presence.append(r"\s+" if atom.isspace() else re.escape(atom))
            parts = _join_literals(parts)
            separator = Counter(m[1] for m in members).most_common(1)[0][0]
            example = _skeleton_text(skeleton, members[0][2])
            verb = "End" if where == "append" else "Start"
            candidates.append(
                {
                    "id": rule_id(where, [list(skeleton), parts, separator]),
                    "kind": where,
                    "target": "output",
                    "priority": 20,
                    "description": f"{verb} the output with {example!r} when it is missing",
                    "pattern": "".join(presence),
                    "parts": parts,
                    "separator": separator,
                    "mined_from": sorted(m[0]["pair_id"] for m in members),
                }
            )
    return candidates


def _skeleton_text(skeleton: Tuple[str, ...], numbers: List[str]) -> str:
    values = iter(numbers)
    return "".join(next(values) if atom == "\x00NUM" else atom for atom in skeleton)


NORMALIZER_VARIANTS: List[Tuple[str, Optional[int], int, str]] = [
    # (normalizer, param, priority, description)
    ("json_repair", None, 90, "Repair JSON output (fences, trailing commas, quotes) to compact JSON"),
    ("json_repair", 2, 90, "Repair JSON output (fences, trailing commas, quotes) to indented JSON"),
    ("strip", None, 85, "Strip leading and trailing whitespace"),
    ("collapse_spaces", None, 80, "Collapse repeated spaces and trailing spaces on each line"),
    ("blank_lines", None, 80, "Collapse runs of blank lines into one"),
    ("straight_quotes", None, 80, "Replace curly quotes with straight quotes"),
    ("capitalize_first", None, 40, "Capitalise the first letter of the output"),
]


def mine_normalizers(diffs: Sequence[Dict[str, Any]]) -> List[Candidate]:
    """Format normalisation candidates (scored later like every other candidate)."""
    variants = list(NORMALIZER_VARIANTS)
    truncated = [
        d for d in diffs
        if d["fixed_output"].strip() and len(d["fixed_output"].strip()) < len(d["bad_output"].strip())
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
