"""Rule interpreter shared by the synthesiser and every generated hook module.

The code generator copies this module's functions (parsed with libcst) into each
generated hook, so a hook is self-contained and runs exactly the code the
synthesiser used to score its rules. Only the standard library is used here.

Safety by construction: the only loops run over the finite rule table, every
regular expression is built from ``re.escape``-d feedback text plus fixed slot
patterns (no nested quantifiers), and JSON repair uses ``ast.literal_eval``,
which evaluates literals only. A hook therefore cannot loop forever.
"""
import ast
import json
import re

_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
_WORD_RE = re.compile(r"\w+")
_FENCE_RE = re.compile(r"^```[\w-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"})
_NORMALIZE_MAX_CHARS = 200_000  # JSON repair of bigger texts is skipped (latency bound)


def _user_text(context):
    """The user's input for this call: ``user_input`` or the last user chat message."""
    value = context.get("user_input")
    if isinstance(value, str):
        return value
    messages = context.get("messages")
    if isinstance(messages, (list, tuple)):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else ""
    return ""


def _render(parts, match, text, context):
    """Build replacement/addition text from literal pieces and slots; None when an input
    slot finds no value in this call's input (the rule then leaves the text alone)."""
    pieces = []
    for kind, arg, default in parts:
        if kind == "lit":
            pieces.append(arg)
        elif kind in ("group", "group_cap", "group_lower"):
            value = (match.group(int(arg)) if match is not None else None) or default
            if kind == "group_cap":
                value = value[:1].upper() + value[1:]
            elif kind == "group_lower":
                value = value[:1].lower() + value[1:]
            pieces.append(value)
        elif kind == "input_match":  # arg: a learned regex whose group 1 is the value
            found = re.search(arg, _user_text(context))
            if found is None:
                return None
            pieces.append(found.group(1))
        else:  # "input_number" / "output_number": the arg-th number in that text
            source = _user_text(context) if kind == "input_number" else text
            numbers = _NUMBER_RE.findall(source)
            index = int(arg)
            pieces.append(numbers[index] if index < len(numbers) else default)
    return "".join(pieces)


def _substitute(rule, match, text, context):
    rendered = _render(rule["parts"], match, text, context)
    return match.group(0) if rendered is None else rendered


def _norm_collapse_spaces(text, param):
    return "\n".join(re.sub(r"[ \t]{2,}", " ", line).rstrip() for line in text.split("\n"))


def _norm_strip(text, param):
    return text.strip()


def _norm_blank_lines(text, param):
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text)


def _norm_straight_quotes(text, param):
    return text.translate(_QUOTES)


def _norm_capitalize_first(text, param):
    for index, char in enumerate(text):
        if char.isalpha():
            return text[:index] + char.upper() + text[index + 1 :]
        if not char.isspace():
            return text
    return text


def _norm_json_repair(text, param):
    body = text.strip()
    fenced = _FENCE_RE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body or body[0] not in "{[" or len(body) > _NORMALIZE_MAX_CHARS:
        return text
    try:
        value = json.loads(body)
    except ValueError:
        cleaned = _TRAILING_COMMA_RE.sub(r"\1", body)
        try:
            value = json.loads(cleaned)
        except ValueError:
            try:
                value = ast.literal_eval(cleaned)  # literals only: never runs code
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return text
    if not isinstance(value, (dict, list)):
        return text
    try:
        if param:
            return json.dumps(value, ensure_ascii=False, indent=int(param))
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return text


def _norm_truncate(text, param):
    limit = int(param)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind(".\n"))
    if cut.endswith((".", "!", "?")):
        end = len(cut) - 1
    return cut[: end + 1] if end > 0 else cut.rstrip()


_NORMALIZERS = {
    "collapse_spaces": _norm_collapse_spaces,
    "strip": _norm_strip,
    "blank_lines": _norm_blank_lines,
    "straight_quotes": _norm_straight_quotes,
    "capitalize_first": _norm_capitalize_first,
    "json_repair": _norm_json_repair,
    "truncate": _norm_truncate,
}


def _compile_rules(rules):
    """Precompile a rule table into ``(rule, regex)`` pairs sorted by priority."""
    entries = []
    for rule in rules:
        pattern = rule.get("pattern")
        flags = re.IGNORECASE if rule.get("ignore_case") else 0
        entries.append((rule, re.compile(pattern, flags) if pattern else None))
    entries.sort(key=lambda entry: (-entry[0]["priority"], entry[0]["id"]))
    return entries


def _apply_one(rule, regex, text, context):
    kind = rule["kind"]
    if kind in ("replace", "remove"):
        anchor = rule.get("anchor") or ""
        if anchor and anchor not in (text.lower() if rule.get("ignore_case") else text):
            return text
        return regex.sub(lambda m: _substitute(rule, m, text, context), text)
    if kind in ("append", "prepend"):
        present = regex.search(text) if regex is not None else None
        if present is not None and not rule.get("correct"):
            return text
        addition = _render(rule["parts"], None, text, context)
        if addition is None:
            return text
        if present is not None:  # "correct": the required line is there; make its values right
            if present.group(0) == addition:
                return text
            return text[: present.start()] + addition + text[present.end() :]
        if kind == "append":
            return text.rstrip() + rule["separator"] + addition
        return addition + rule["separator"] + text.lstrip()
    if kind == "normalize":
        return _NORMALIZERS[rule["normalizer"]](text, rule.get("param"))
    if kind == "prompt":
        keywords = rule.get("keywords") or ()
        if keywords:
            words = set(_WORD_RE.findall(text.lower()))
            if len(words.intersection(keywords)) < rule["min_overlap"] * len(keywords):
                return text
        block = rule["block"]
        return text if block in text else text + block
    return text


def _apply_rules(entries, text, context, only=None):
    """Apply compiled rules in order; ``only`` limits them to a set of rule ids."""
    scope = context.get("function_name")
    for rule, regex in entries:
        if only is not None and rule["id"] not in only:
            continue
        if rule["scope"] is not None and rule["scope"] != scope:
            continue
        text = _apply_one(rule, regex, text, context)
    return text


# --- entry points: the code generator replaces HOOK_VERSION and RULES ----------
HOOK_VERSION = None
RULES = ()

_OUTPUT_ENTRIES = _compile_rules([rule for rule in RULES if rule["target"] == "output"])
_PROMPT_ENTRIES = _compile_rules([rule for rule in RULES if rule["target"] == "prompt"])


def intercept_prompt(user_input, context):
    """Rewrite the user's input before the model sees it (prompt rules)."""
    if not isinstance(user_input, str) or not _PROMPT_ENTRIES:
        return user_input
    return _apply_rules(_PROMPT_ENTRIES, user_input, context if isinstance(context, dict) else {})


def intercept_output(model_output, context):
    """Rewrite the model's output before the caller gets it (output rules)."""
    if not isinstance(model_output, str) or not _OUTPUT_ENTRIES:
        return model_output
    return _apply_rules(_OUTPUT_ENTRIES, model_output, context if isinstance(context, dict) else {})


def apply_rules(text, context, rule_ids=None, target="output"):
    """Apply only the rules named in ``rule_ids`` (validation checks each rule's claim)."""
    entries = _OUTPUT_ENTRIES if target == "output" else _PROMPT_ENTRIES
    only = None if rule_ids is None else set(rule_ids)
    return _apply_rules(entries, text, context if isinstance(context, dict) else {}, only)
