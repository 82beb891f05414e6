"""Line-level candidates: lines the fixes remove, lines they add next to a known line, and
changed line prefixes (list markers).

Lines are aligned with ``difflib.SequenceMatcher`` on the outputs' lines, so a line every fix
adds is learned as a line (with its position and slots), not as a rewrite of whatever phrase
happened to sit next to it. Lines added at the very start or end are additions
(``candidates.mine_additions``).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .candidates import Candidate, _addition_parts, _skeletons, line_opcodes, rule_id
from .slots import ATOM_RE, NUMBER_PATTERN, WORD_PATTERN, is_number, slot_value_atom

MAX_LINE_CHARS = 300
MAX_PREFIX_CHARS = 6


def line_pattern(line: str, input_prompt: str, words: bool) -> Optional[Tuple[str, str]]:
    """(full-line pattern, anchor literal) of ``line``: numbers become slots, and with ``words``
    so do words that occur in the call's input (names, ids). None when no literal word is left."""
    if len(line) > MAX_LINE_CHARS:
        return None
    in_input = set(ATOM_RE.findall(input_prompt)) if words else set()
    pieces: List[str] = []
    literals: List[str] = []
    current = ""
    slotted = False
    for atom in ATOM_RE.findall(line):
        numeric = is_number(atom)
        if numeric or (atom in in_input and slot_value_atom(atom) and atom[0].isalpha()):
            if current:
                literals.append(current)
                pieces.append(re.escape(current))
                current = ""
            pieces.append(NUMBER_PATTERN if numeric else WORD_PATTERN)
            slotted = slotted or not numeric
        else:
            current += atom
    if current:
        literals.append(current)
        pieces.append(re.escape(current))
    if words and not slotted:
        return None  # same as the numbers-only pattern
    anchor = max(literals, key=len, default="")
    if sum(ch.isalnum() for ch in anchor) < 3:
        return None
    return "".join(pieces), anchor


def _prefix_pattern(prefix: str) -> Tuple[str, str]:
    pattern = "(?m)^" + "".join(r"\d{1,3}" if ch.isdigit() else re.escape(ch) for ch in re.sub(r"\d+", "0", prefix))
    return pattern, re.sub(r"\d+", "", prefix)


def _group_add(groups: Dict[Any, Dict[str, Any]], key: Any, diff: Dict[str, Any], value: Any = None) -> None:
    group = groups.setdefault(key, {"pairs": [], "members": []})
    if diff["pair_id"] not in group["pairs"]:
        group["pairs"].append(diff["pair_id"])
        group["members"].append((diff, value))


def _collect(diffs: Sequence[Dict[str, Any]]) -> Tuple[Dict[Any, Dict[str, Any]], ...]:
    removed: Dict[Any, Dict[str, Any]] = {}
    inserted: Dict[Any, Dict[str, Any]] = {}
    prefixes: Dict[Any, Dict[str, Any]] = {}
    anchors: Dict[str, str] = {}  # anchor line pattern -> a literal every matching line holds
    for diff in diffs:
        bad_lines, fixed_lines = diff["bad_output"].split("\n"), diff["fixed_output"].split("\n")
        prompt = diff["input_prompt"]
        for tag, i1, i2, j1, j2 in line_opcodes(diff):
            if tag == "delete":
                for line in bad_lines[i1:i2]:
                    for words in (False, True):
                        found = line_pattern(line, prompt, words) if line.strip() else None
                        if found:
                            _group_add(removed, found, diff, line)
            elif tag == "insert" and 0 < i1 < len(bad_lines):
                block = "\n".join(fixed_lines[j1:j2])
                if not block.strip() or len(block) > MAX_LINE_CHARS:
                    continue
                for position, anchor_line in (("after", bad_lines[i1 - 1]), ("before", bad_lines[i1])):
                    for words in (False, True):
                        found = line_pattern(anchor_line, prompt, words) if anchor_line.strip() else None
                        if not found:
                            continue
                        anchors[found[0]] = found[1]
                        for skeleton, values in _skeletons(block, prompt):
                            _group_add(inserted, (position, found[0], skeleton), diff, values)
            elif tag == "replace" and i2 - i1 == j2 - j1:
                for bad, fixed in zip(bad_lines[i1:i2], fixed_lines[j1:j2]):
                    common = 0
                    while common < min(len(bad), len(fixed)) and bad[-1 - common] == fixed[-1 - common]:
                        common += 1
                    head_bad, head_fixed = bad[: len(bad) - common], fixed[: len(fixed) - common]
                    if (
                        head_bad != head_fixed
                        and 0 < len(head_bad) <= MAX_PREFIX_CHARS
                        and len(head_fixed) <= MAX_PREFIX_CHARS
                        and common
                        and not any(ch.isalpha() for ch in head_bad + head_fixed)
                    ):
                        _group_add(prefixes, (_prefix_pattern(head_bad), head_fixed), diff)
    return removed, inserted, prefixes, anchors


def mine_line_edits(diffs: Sequence[Dict[str, Any]], min_support: int) -> List[Candidate]:
    """Line removal, line insertion next to an anchor line, and line-prefix candidates."""
    removed, inserted, prefixes, anchors = _collect(diffs)
    candidates: List[Candidate] = []
    for (pattern, anchor), group in sorted(removed.items()):
        if len(group["pairs"]) < min_support:
            continue
        example = group["members"][0][1]
        candidates.append(
            {
                "id": rule_id("line_remove", [pattern]),
                "kind": "line_remove",
                "target": "output",
                "priority": 60,
                "description": f"Remove lines like {example.strip()!r}",
                "pattern": pattern,
                "anchor": anchor,
                "mined_from": sorted(group["pairs"]),
            }
        )
    for (position, anchor_pattern, skeleton), group in sorted(inserted.items(), key=lambda kv: repr(kv[0])):
        if len(group["pairs"]) < min_support:
            continue
        members = [(diff, "", values) for diff, values in group["members"]]
        built = _addition_parts(skeleton, members)
        if built is None:
            continue
        parts, presence, template, _hints = built
        candidates.append(
            {
                "id": rule_id("line_insert", [position, anchor_pattern, parts]),
                "kind": "line_insert",
                "target": "output",
                "priority": 25,
                "description": f"Add the line {template!r} {position} lines matching {anchor_pattern!r} when it is missing",
                "pattern": presence,
                "position": position,
                "anchor_line": anchor_pattern,
                "anchor": anchors[anchor_pattern],
                "parts": parts,
                "mined_from": sorted(group["pairs"]),
            }
        )
    for ((pattern, anchor), replacement), group in sorted(prefixes.items()):
        if len(group["pairs"]) < min_support:
            continue
        candidates.append(
            {
                "id": rule_id("replace", [pattern, replacement]),
                "kind": "replace",
                "target": "output",
                "priority": 55,
                "description": f"Start lines with {replacement!r} instead of {pattern[5:]!r}",
                "pattern": pattern,
                "anchor": anchor if anchor.strip() else "",
                "ignore_case": False,
                "parts": [["lit", replacement, ""]] if replacement else [],
                "mined_from": sorted(group["pairs"]),
            }
        )
    return candidates
