"""Rule interpreter shared by the synthesiser and every generated hook module.

The code generator copies this module (parsed with libcst) into each generated hook, so a
hook is self-contained and runs exactly the code the synthesiser used to score its rules.
Only the standard library is used here.

Safety by construction: the only loops run over the finite rule table and the text, every
regular expression is built from ``re.escape``-d feedback text plus fixed slot patterns, and
:func:`_linear_cost` proves each one linear-time before it is compiled (bounded repeats only,
a bounded backtracking cost per start position); a rule whose pattern fails the proof is
skipped. JSON repair uses ``ast.literal_eval``, which evaluates literals only. Output hooks
also run under a time budget per call: past it the call gets the model's text unchanged, the
rule running at that moment is counted and, after repeated overruns, skipped (``hook_stats``).
"""

import ast
import json
import re
import time
from decimal import Decimal, InvalidOperation

try:
    from re import _parser as _sre_parse
except ImportError:  # Python < 3.11
    import sre_parse as _sre_parse

_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
_WORD_RE = re.compile(r"\w+")
_NAME_RE = re.compile(r"\b[A-Z][\w-]{2,40}\b")
_FENCE_RE = re.compile(r"^```[\w-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"})
_NORMALIZE_MAX_CHARS = 200_000  # JSON repair of bigger texts is skipped (latency bound)
MAX_PATTERN_COST = 5_000  # backtracking steps per start position a rule pattern may take
OUTPUT_BUDGET_S = 0.05  # per call, plus OUTPUT_BUDGET_PER_KB_S per KiB of output
OUTPUT_BUDGET_PER_KB_S = 0.002
FLAG_AFTER_OVERRUNS = 3
_STATS = {"calls": 0, "budget_exceeded": 0, "unsafe_patterns": 0}
_OVERRUNS = {}

# --- typed values: numbers with their formatting, dates, times -----------------------------
_THOUSANDS = {"n": "", "c": ",", "d": ".", "s": " ", "a": "'"}
_DECIMALS = {"p": ".", "c": ","}
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_ALT = "|".join(_MONTHS)
_MON_ALT = "|".join(m[:3] for m in _MONTHS)
# name -> (regex with groups, group order: letters y/m/d or M (month name) / b (abbreviation))
DATE_FORMATS = {
    "ymd": (r"(\d{4})-(\d{2})-(\d{2})", "ymd"),
    "dmy_slash": (r"(\d{1,2})/(\d{1,2})/(\d{4})", "dmy"),
    "mdy_slash": (r"(\d{1,2})/(\d{1,2})/(\d{4})", "mdy"),
    "dmy_slash0": (r"(\d{2})/(\d{2})/(\d{4})", "dmy"),
    "mdy_slash0": (r"(\d{2})/(\d{2})/(\d{4})", "mdy"),
    "dmy_dot": (r"(\d{1,2})\.(\d{1,2})\.(\d{4})", "dmy"),
    "d_month_y": (r"(\d{1,2}) (" + _MONTH_ALT + r") (\d{4})", "dMy"),
    "month_d_y": (r"(" + _MONTH_ALT + r") (\d{1,2}), (\d{4})", "Mdy"),
    "d_mon_y": (r"(\d{1,2}) (" + _MON_ALT + r") (\d{4})", "dby"),
    "mon_d_y": (r"(" + _MON_ALT + r") (\d{1,2}), (\d{4})", "bdy"),
}
TIME_FORMATS = {
    "h24": (r"(\d{1,2}):(\d{2})", "HM"),
    "h24_0": (r"(\d{2}):(\d{2})", "HM"),
    "h12": (r"(\d{1,2}):(\d{2}) ([AP]M)", "hMp"),
    "h12_lower": (r"(\d{1,2}):(\d{2}) ([ap]m)", "hMp"),
    "h12_tight": (r"(\d{1,2}):(\d{2})([AP]M)", "hMp"),
}


def number_regex(spec):
    """The bounded pattern of one number notation (spec: thousands letter + decimal letter)."""
    thousands, decimal = re.escape(_THOUSANDS[spec[0]]), re.escape(_DECIMALS[spec[1]])
    whole = r"\d{1,15}" if not thousands else r"\d{1,3}(?:" + thousands + r"\d{3}){0,5}"
    return r"(?<![\d.,])(" + whole + r"(?:" + decimal + r"\d{1,6})?)(?![.,]?\d)"


def parse_number(text, spec):
    """Decimal value of ``text`` written in notation ``spec``; None when it is not one."""
    thousands, decimal = _THOUSANDS[spec[0]], _DECIMALS[spec[1]]
    body = text.replace(thousands, "") if thousands else text
    if (thousands and decimal != "." and "." in body) or (decimal == "." and "," in body):
        return None
    try:
        return Decimal(body.replace(decimal, "."))
    except InvalidOperation:
        return None


def format_number(value, spec, places=None):
    """``value`` written in notation ``spec`` (thousands, decimal, places digit or ``k``: keep)."""
    if spec[2] != "k":
        value = value.quantize(Decimal(1).scaleb(-int(spec[2])))
    elif places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    sign, text = ("-", str(-value)) if value < 0 else ("", str(value))
    whole, _, fraction = text.partition(".")
    grouped = f"{int(whole):,}".replace(",", _THOUSANDS[spec[0]])
    return sign + grouped + (_DECIMALS[spec[1]] + fraction if fraction else "")


def _fraction_digits(text, spec):
    decimal = _DECIMALS[spec[1]]
    return len(text.rsplit(decimal, 1)[1]) if decimal in text else 0


def date_values(groups, order):
    """(year, month, day) from a date match's groups; None when not a real date."""
    values = {}
    for letter, raw in zip(order, groups):
        if letter == "M":
            values["m"] = _MONTHS.index(raw) + 1
        elif letter == "b":
            values["m"] = [m[:3] for m in _MONTHS].index(raw) + 1
        else:
            values[letter] = int(raw)
    if not (1 <= values["m"] <= 12 and 1 <= values["d"] <= 31):
        return None
    return values["y"], values["m"], values["d"]


def format_date(ymd, name):
    year, month, day = ymd
    fields = {"y": str(year), "m": str(month), "d": str(day), "M": _MONTHS[month - 1], "b": _MONTHS[month - 1][:3]}
    if name.endswith("0") or name == "ymd":
        fields.update(m=f"{month:02d}", d=f"{day:02d}")
    regex, order = DATE_FORMATS[name]
    out, index = [], 0
    for piece in re.split(r"(\([^)]*\))", regex):
        if piece.startswith("("):
            out.append(fields[order[index]])
            index += 1
        else:
            out.append(piece.replace("\\", ""))
    return "".join(out)


def time_values(groups, order):
    """(hour 0-23, minute) from a time match's groups; None when not a real time."""
    hour, minute = int(groups[0]), int(groups[1])
    if order == "hMp":
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if groups[2].lower() == "pm" else 0)
    return (hour, minute) if hour < 24 and minute < 60 else None


def format_time(hm, name):
    hour, minute = hm
    if name.startswith("h24"):
        return (f"{hour:02d}" if name == "h24_0" else str(hour)) + f":{minute:02d}"
    suffix = "PM" if hour >= 12 else "AM"
    text = f"{hour % 12 or 12}:{minute:02d}"
    if name == "h12_lower":
        return text + " " + suffix.lower()
    return text + ("" if name == "h12_tight" else " ") + suffix


def _typed(kind, arg, match):
    """Render a typed slot: ``arg`` is ``"group|source|target"``."""
    group, source, target = arg.split("|")
    first = int(group)
    if kind == "num":
        raw = match.group(first)
        value = parse_number(raw, source)
        if value is None:
            return None
        return format_number(value, target, _fraction_digits(raw, source))
    formats = DATE_FORMATS if kind == "date" else TIME_FORMATS
    order = formats[source][1]
    groups = [match.group(first + i) for i in range(len(order))]
    if kind == "date":
        ymd = date_values(groups, order)
        return None if ymd is None else format_date(ymd, target)
    hm = time_values(groups, order)
    return None if hm is None else format_time(hm, target)


# --- rendering parts ------------------------------------------------------------------
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


_CASES = {
    "group": lambda v: v,
    "group_cap": lambda v: v[:1].upper() + v[1:],
    "group_lower": lambda v: v[:1].lower() + v[1:],
    "group_upper": str.upper,
    "group_title": str.title,
}


def _render(parts, match, text, context):
    """Build replacement/addition text from literal pieces and slots; None when a slot finds
    no value (the rule then leaves the text alone)."""
    pieces = []
    for kind, arg, default in parts:
        if kind == "lit":
            pieces.append(arg)
        elif kind in _CASES:
            value = (match.group(int(arg)) if match is not None else None) or default
            pieces.append(_CASES[kind](value))
        elif kind in ("num", "date", "time"):
            value = _typed(kind, arg, match) if match is not None else None
            if value is None:
                return None
            pieces.append(value)
        elif kind in ("input_match", "output_match"):  # arg: a learned regex whose group 1 is the value
            found = _compiled(arg).search(_user_text(context) if kind == "input_match" else text)
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


# --- normalisers ----------------------------------------------------------------------
def _collapse_line(line):
    return re.sub(r"[ \t]{2,}", " ", line).rstrip()


def _norm_collapse_spaces(text, param, context):
    if "  " not in text and "\t" not in text and " \n" not in text and not text.endswith(" "):
        return text
    return "\n".join(_collapse_line(line) for line in text.split("\n"))


def _norm_strip(text, param, context):
    return text.strip()


def _norm_blank_lines(text, param, context):
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text)


def _norm_straight_quotes(text, param, context):
    if not any(chr(code) in text for code in _QUOTES):
        return text
    return text.translate(_QUOTES)


def _norm_capitalize_first(text, param, context):
    for index, char in enumerate(text):
        if char.isalpha():
            return text[:index] + char.upper() + text[index + 1 :]
        if not char.isspace():
            return text
    return text


def _norm_input_casing(text, param, context):
    """Names written mid-sentence in the input (``Kalvik``) get that casing in the output."""
    names = {}
    source = _user_text(context)
    for found in _NAME_RE.finditer(source):
        before = source[: found.start()].rstrip()
        if before and before[-1] not in ".!?:\n":  # mid-sentence: a name, not a sentence start
            names.setdefault(found.group(0).lower(), set()).add(found.group(0))
    lowered = text.lower()
    names = {key: spelled.pop() for key, spelled in names.items() if len(spelled) == 1 and key in lowered}
    if not names:
        return text
    pattern = r"\b(?:" + "|".join(re.escape(key) for key in sorted(names, key=len, reverse=True)) + r")\b"
    return re.sub(pattern, lambda m: names.get(m.group(0).lower(), m.group(0)), text, flags=re.IGNORECASE)


def _norm_json_repair(text, param, context):
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


def _norm_truncate(text, param, context):
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
    "input_casing": _norm_input_casing,
    "json_repair": _norm_json_repair,
    "truncate": _norm_truncate,
}


# --- pattern safety -------------------------------------------------------------------
def _linear_cost(pattern):
    """Worst-case backtracking steps per start position of ``pattern`` (None: unbounded).

    Conservative: a sequence multiplies its items' choices, a branch adds them, a repeat of
    a choice-free body costs its count range, any other repeat ``(cost + 1) ** max``. An atomic
    group or possessive repeat keeps no choices: it counts once, on its own.
    """
    worst = [0]

    def cost(items):
        total = 1
        for op, arg in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, body = arg
                if high == _sre_parse.MAXREPEAT:
                    return None
                inner = cost(body)
                if inner is None:
                    return None
                step = high - low + 1 if inner == 1 else (inner + 1) ** min(high, 64)
                if name == "POSSESSIVE_REPEAT":
                    worst[0], step = max(worst[0], step), 1
            elif name == "ATOMIC_GROUP":
                inner = cost(arg)
                if inner is None:
                    return None
                worst[0], step = max(worst[0], inner), 1
            elif name == "SUBPATTERN":
                step = cost(arg[-1])
            elif name == "BRANCH":
                steps = [cost(branch) for branch in arg[1]]
                step = None if None in steps else sum(steps)
            elif name in ("ASSERT", "ASSERT_NOT"):
                step = cost(arg[1])
            elif name in ("GROUPREF", "GROUPREF_EXISTS"):
                return None
            else:
                step = 1
            if step is None:
                return None
            total *= max(step, 1)
            if total > 10**12:
                return None
        return total

    try:
        found = cost(_sre_parse.parse(pattern))
    except Exception:  # noqa: BLE001 - an unparsable pattern is not safe
        return None
    return None if found is None else max(found, worst[0])


_LINEAR = {}


def pattern_is_linear(pattern):
    """True when ``pattern`` runs in linear time on any text (see :func:`_linear_cost`)."""
    known = _LINEAR.get(pattern)
    if known is None:
        found = _linear_cost(pattern)
        known = _LINEAR[pattern] = found is not None and found <= MAX_PATTERN_COST
    return known


_REGEX_CACHE = {}


def _compiled(pattern):
    """Compile a learned slot pattern once; unsafe ones never match."""
    regex = _REGEX_CACHE.get(pattern)
    if regex is None:
        regex = re.compile(pattern if pattern_is_linear(pattern) else r"(?!x)x")
        _REGEX_CACHE[pattern] = regex
    return regex


def _compile_rules(rules):
    """Precompile a rule table into ``(rule, regex)`` pairs sorted by priority; rules whose
    pattern is not provably linear are left out (counted in ``hook_stats``)."""
    entries = []
    for rule in rules:
        pattern = rule.get("pattern")
        if pattern and not pattern_is_linear(pattern):
            _STATS["unsafe_patterns"] += 1
            continue
        flags = re.IGNORECASE if rule.get("ignore_case") else 0
        entries.append((rule, re.compile(pattern, flags) if pattern else None))
    entries.sort(key=lambda entry: (-entry[0]["priority"], entry[0]["id"]))
    return entries


# --- applying rules -------------------------------------------------------------------
def _line_position(lines, rule):
    """Index after which a ``line_insert`` rule's block goes, or None when its anchor is absent."""
    where = rule["position"]
    if where == "first":
        return 0
    if where == "last":
        return len(lines)
    anchor = _compiled(rule["anchor_line"])
    for index, line in enumerate(lines):
        if anchor.fullmatch(line):
            return index + (1 if where == "after" else 0)
    return None


def _apply_one(rule, regex, text, context):
    kind = rule["kind"]
    if kind in ("replace", "remove"):
        anchor = rule.get("anchor") or ""
        if anchor and anchor not in text:
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
    if kind == "line_remove":
        if rule.get("anchor") and rule["anchor"] not in text:
            return text
        return "\n".join(line for line in text.split("\n") if not regex.fullmatch(line))
    if kind == "line_insert":
        if (rule.get("anchor") and rule["anchor"] not in text) or (regex is not None and regex.search(text)):
            return text
        lines = text.split("\n")
        index = _line_position(lines, rule)
        block = None if index is None else _render(rule["parts"], None, text, context)
        if block is None:
            return text
        return "\n".join(lines[:index] + block.split("\n") + lines[index:])
    if kind == "normalize":
        return _NORMALIZERS[rule["normalizer"]](text, rule.get("param"), context)
    if kind == "prompt":
        keywords = rule.get("keywords") or ()
        if keywords:
            words = set(_WORD_RE.findall(text.lower()))
            if len(words.intersection(keywords)) < rule["min_overlap"] * len(keywords):
                return text
        block = rule["block"]
        return text if block in text else text + block
    return text


_ANCHORED = frozenset(("replace", "remove", "line_remove", "line_insert"))


def _in_scope(rule, scope):
    return rule["scope"] is None or rule["scope"] == scope


def _apply_rules(entries, text, context, only=None, budget=None):
    """Apply compiled rules in order; ``only`` limits them to a set of rule ids. With a
    ``budget`` (seconds), returns None once the call has run past it."""
    scope = context.get("function_name")
    start = time.perf_counter() if budget is not None else 0.0
    for rule, regex in entries:
        anchor = rule.get("anchor")
        if anchor and anchor not in text and rule["kind"] in _ANCHORED:
            continue  # the literal every match holds is absent: the rule cannot change the text
        if only is not None and rule["id"] not in only:
            continue
        if not _in_scope(rule, scope):
            continue
        if budget is not None and _OVERRUNS.get(rule["id"], 0) >= FLAG_AFTER_OVERRUNS:
            continue
        text = _apply_one(rule, regex, text, context)
        if budget is not None and time.perf_counter() - start > budget:
            _STATS["budget_exceeded"] += 1
            _OVERRUNS[rule["id"]] = _OVERRUNS.get(rule["id"], 0) + 1
            return None
    return text


def output_budget(text):
    """Seconds one output call may take on ``text``."""
    return OUTPUT_BUDGET_S + OUTPUT_BUDGET_PER_KB_S * len(text) / 1024


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
    """Rewrite the model's output before the caller gets it (output rules, within the time budget)."""
    if not isinstance(model_output, str) or not _OUTPUT_ENTRIES:
        return model_output
    _STATS["calls"] += 1
    out = _apply_rules(
        _OUTPUT_ENTRIES, model_output, context if isinstance(context, dict) else {}, budget=output_budget(model_output)
    )
    return model_output if out is None else out


def apply_rules(text, context, rule_ids=None, target="output"):
    """Apply only the rules named in ``rule_ids`` (validation checks each rule's claim)."""
    entries = _OUTPUT_ENTRIES if target == "output" else _PROMPT_ENTRIES
    only = None if rule_ids is None else set(rule_ids)
    return _apply_rules(entries, text, context if isinstance(context, dict) else {}, only)


def hook_stats():
    """Calls, budget overruns, unsafe patterns skipped, and the rules flagged for overrunning."""
    flagged = sorted(rule_id for rule_id, count in _OVERRUNS.items() if count >= FLAG_AFTER_OVERRUNS)
    return {**_STATS, "overruns": dict(_OVERRUNS), "flagged_rules": flagged}
