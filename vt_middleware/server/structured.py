"""Structured outputs for the local server: a JSON value valid for a JSON schema, built from
the model's text by construction (a tiny model cannot be relied on to write valid JSON).

Strings take the model's text (the first property that is a string gets it, the others short
slices of it), numbers and booleans their minimum/``0``/``False``, enums their first value,
arrays one item, objects every property. ``$ref`` to ``#/$defs/...`` is followed.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

_MAX_DEPTH = 8


def schema_of(response_format: Any) -> Optional[Dict[str, Any]]:
    """The JSON schema of a chat ``response_format`` or a Responses ``text.format``
    (``{"type": "json_object"}`` gives an empty object schema); None for plain text."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object", "properties": {}}
    if kind != "json_schema":
        return None
    inner = response_format.get("json_schema", response_format)  # chat nests it, Responses does not
    schema = inner.get("schema") if isinstance(inner, dict) else None
    return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}


def conform(schema: Dict[str, Any], text: str) -> str:
    """JSON text valid for ``schema`` whose string fields hold ``text``."""
    words = text.split() or ["ok"]
    return json.dumps(_value(schema, schema, words, [0], 0), ensure_ascii=False)


def _resolve(schema: Dict[str, Any], root: Dict[str, Any]) -> Dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for key in ref[2:].split("/"):
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}
    return schema


def _value(schema: Dict[str, Any], root: Dict[str, Any], words: List[str], used: List[int], depth: int) -> Any:
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _value((non_null or options)[0], root, words, used, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        if depth >= _MAX_DEPTH:
            return {}
        props = schema.get("properties") or {}
        return {
            name: _value(sub if isinstance(sub, dict) else {}, root, words, used, depth + 1)
            for name, sub in props.items()
        }
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        count = max(1, int(schema.get("minItems") or 1))
        return [_value(items, root, words, used, depth + 1) for _ in range(count)] if depth < _MAX_DEPTH else []
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    # strings (and schemas without a type): the first gets the whole text, later ones a word each
    used[0] += 1
    return " ".join(words) if used[0] == 1 else words[(used[0] - 2) % len(words)]
