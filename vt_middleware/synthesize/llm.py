"""Optional LLM-assisted rule proposals for the pairs the heuristics did not generalise.

Any OpenAI-compatible client is asked for rules as JSON::

    {"rules": [{"kind": "replace", "find": "...", "replace": "..."},
               {"kind": "remove", "find": "..."},
               {"kind": "append" | "prepend", "text": "...", "separator": "\\n\\n"}]}

The answer is treated as data only: kinds are whitelisted, texts are length-capped, patterns
are ``re.escape``-d literals and every text lands in a string field of the rule table. Each
proposal becomes an ordinary candidate that :class:`~.rules.RuleSetSynthesizer` scores on all
pairs (support, harm, confidence) like a mined one, so it is accepted only when the pairs back
it. A failing call or an unreadable answer yields no proposals; the heuristics stand alone.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .candidates import MAX_ADDITION_CHARS, MAX_SEGMENT_CHARS, Candidate, rule_id

logger = logging.getLogger("vt_middleware.synthesize")

MAX_PROPOSALS = 10
SEPARATORS = ("\n\n", "\n", " ", "")
SYSTEM_PROMPT = (
    "You turn human corrections of an AI assistant's answers into general text-editing rules. "
    "Each item shows the input, the assistant's answer (bad) and the human's correction (fixed). "
    'Reply with JSON only: {"rules": [...]}, each rule one of '
    '{"kind": "replace", "find": TEXT, "replace": TEXT}, {"kind": "remove", "find": TEXT}, '
    '{"kind": "append", "text": TEXT, "separator": "\\n\\n"} or {"kind": "prepend", "text": TEXT}. '
    "Only propose rules that would fix answers like these that you have not seen."
)


def parse_proposals(text: str, mined_from: Sequence[str]) -> List[Candidate]:
    """Candidates from a model's JSON answer (code fences and chatter around it allowed);
    [] when no usable JSON object is found."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return []
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        return []
    items = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    candidates: List[Candidate] = []
    for item in items[:MAX_PROPOSALS]:
        candidate = _candidate(item, sorted(mined_from)) if isinstance(item, dict) else None
        if candidate is not None and candidate["id"] not in {c["id"] for c in candidates}:
            candidates.append(candidate)
    return candidates


def _text(item: Dict[str, Any], key: str, limit: int) -> Optional[str]:
    value = item.get(key, "")
    return value if isinstance(value, str) and len(value) <= limit else None


def _candidate(item: Dict[str, Any], mined_from: List[str]) -> Optional[Candidate]:
    kind = item.get("kind")
    if kind in ("replace", "remove"):
        find = _text(item, "find", MAX_SEGMENT_CHARS)
        replacement = _text(item, "replace", MAX_SEGMENT_CHARS) if kind == "replace" else ""
        if not find or not find.strip() or replacement is None or replacement == find:
            return None
        kind = "replace" if replacement else "remove"
        parts = [["lit", replacement, ""]] if replacement else []
        return {
            "id": rule_id(f"llm-{kind}", [find, replacement]),
            "kind": kind,
            "target": "output",
            "priority": 45,
            "description": (f"Replace {find!r} with {replacement!r}" if replacement else f"Remove {find!r}")
            + " (proposed by an LLM, checked on the pairs)",
            "pattern": re.escape(find),
            "anchor": find,
            "ignore_case": False,
            "parts": parts,
            "mined_from": mined_from,
        }
    if kind in ("append", "prepend"):
        body = _text(item, "text", MAX_ADDITION_CHARS)
        separator = item.get("separator", "\n\n" if kind == "append" else " ")
        if not body or not body.strip() or separator not in SEPARATORS:
            return None
        body = body.strip()
        verb = "End" if kind == "append" else "Start"
        return {
            "id": rule_id(f"llm-{kind}", [body, separator]),
            "kind": kind,
            "target": "output",
            "priority": 20,
            "description": f"{verb} the output with {body!r} when it is missing (proposed by an LLM, checked on the pairs)",
            "pattern": re.escape(body),
            "parts": [["lit", body, ""]],
            "separator": separator,
            "mined_from": mined_from,
        }
    return None


@dataclass
class LLMRuleProposer:
    """Asks ``client`` (OpenAI-compatible) for rules covering the given diffs."""

    client: Any
    model: str
    max_pairs: int = 8
    max_tokens: int = 256
    temperature: float = 0.0
    max_chars: int = 600  # of each text shown to the model
    last_answer: Optional[str] = field(default=None, init=False)

    def messages(self, diffs: Sequence[Dict[str, Any]]) -> List[Dict[str, str]]:
        cap = self.max_chars
        items = [
            {"input": d["input_prompt"][:cap], "bad": d["bad_output"][:cap], "fixed": d["fixed_output"][:cap]}
            for d in diffs[: self.max_pairs]
        ]
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps(items, ensure_ascii=False, indent=1)},
        ]

    def propose(self, diffs: Sequence[Dict[str, Any]]) -> List[Candidate]:
        """Candidates proposed for ``diffs`` (raises on a failed call; the synthesiser logs it)."""
        if not diffs:
            return []
        from ..call_context import suppress_capture

        with suppress_capture():  # the synthesiser's own calls are never captured
            response = self.client.chat.completions.create(
                model=self.model,
                messages=self.messages(diffs),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        self.last_answer = response.choices[0].message.content or ""
        return parse_proposals(self.last_answer, [d["pair_id"] for d in diffs[: self.max_pairs]])
