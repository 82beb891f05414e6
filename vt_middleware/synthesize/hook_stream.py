"""Streaming half of the hook runtime: the same output rules over text arriving in chunks.

The code generator appends this module (without its import from ``hook_runtime``) to the
runtime it copies into every generated hook, so streamed and whole outputs run the same rules.
"""

import time

from .hook_runtime import (
    _NORMALIZERS,
    _OUTPUT_ENTRIES,
    _OVERRUNS,
    _STATS,
    FLAG_AFTER_OVERRUNS,
    OUTPUT_BUDGET_PER_KB_S,
    OUTPUT_BUDGET_S,
    _apply_one,
    _collapse_line,
    _in_scope,
    _render,
    _sre_parse,
    _substitute,
)

# --- streaming: the same rules over an output that arrives in chunks -------------------
_MAX_WINDOW = 4_096
_CONTEXT_CHARS = 16  # already-passed text kept for look-behind and \b at a window's start


_WIDTHS = {}
_CLASSES = {}


def _max_width(pattern):
    """(longest match, look-ahead margin) of ``pattern``; None when either is unbounded."""
    if pattern not in _WIDTHS:
        _WIDTHS[pattern] = _width(pattern)
    return _WIDTHS[pattern]


def _width(pattern):
    try:
        parsed = _sre_parse.parse(pattern)
        low, high = parsed.getwidth()
    except Exception:  # noqa: BLE001
        return None
    if low < 1 or high >= _MAX_WINDOW:
        return None
    margin = 0
    stack = list(parsed)
    while stack:
        op, arg = stack.pop()
        if str(op) in ("ASSERT", "ASSERT_NOT"):
            width = arg[1].getwidth()[1]
            if width >= _MAX_WINDOW:
                return None
            margin += width
        elif isinstance(arg, (list, tuple)):
            for item in arg:
                if isinstance(item, _sre_parse.SubPattern):
                    stack.extend(item)
                elif isinstance(item, (list, tuple)):
                    stack.extend(x for sub in item if isinstance(sub, _sre_parse.SubPattern) for x in sub)
    return high, margin


def _reads_output(rule):
    return any(part[0] in ("output_match", "output_number") for part in rule.get("parts") or ())


def stream_class(rule):
    """How a rule runs on a stream: ``pass`` (per character), ``window:N`` (holds back the last
    N characters), ``tail`` (an ending added by finish()), ``line`` (per line), ``head`` /
    ``edge`` (the first or last characters), or ``full`` (needs the whole text)."""
    kind = rule["kind"]
    if kind == "normalize":
        return {"straight_quotes": "pass", "collapse_spaces": "line", "capitalize_first": "head", "strip": "edge"}.get(
            rule["normalizer"], "full"
        )
    pattern = rule.get("pattern")
    width = _max_width(pattern) if pattern else None
    if kind in ("replace", "remove") and width is not None and not _reads_output(rule):
        return "window:" + str(width[0] + width[1] + 1)
    if kind == "append" and not rule.get("correct") and not _reads_output(rule) and width is not None:
        return "tail"
    if kind == "line_remove":
        return "line"
    return "full"


def _trailing_space(text):
    return len(text) - len(text.rstrip())


class _Window:
    """A substitution whose matches span at most ``hold`` characters (with look-ahead)."""

    def __init__(self, rule, regex, context, hold):
        self.rule, self.regex, self.context, self.hold = rule, regex, context, hold
        self.before, self.buf = "", ""

    def held(self):
        return self.buf

    def _run(self, final):
        text = self.before + self.buf
        pos = len(self.before)
        limit = len(text) if final else len(text) - self.hold
        out = []
        while True:
            match = self.regex.search(text, pos)
            if match is None or (match.start() >= limit and not final):
                break
            out.append(text[pos : match.start()])
            out.append(_substitute(self.rule, match, None, self.context))
            pos = match.end()
        cut = len(text) if final else max(pos, limit)
        out.append(text[pos:cut])
        self.before = text[max(0, cut - _CONTEXT_CHARS) : cut]
        self.buf = text[cut:]
        return "".join(out)

    def feed(self, chunk):
        self.buf += chunk
        return self._run(False) if len(self.buf) > self.hold else ""

    def finish(self):
        return self._run(True)


class _Tail:
    """An ending added when its presence pattern never matched: everything but the trailing
    whitespace passes at once; finish() adds the ending."""

    def __init__(self, rule, regex, context, hold):
        self.rule, self.regex, self.context, self.hold = rule, regex, context, hold
        self.scan, self.before, self.spaces, self.found = "", "", "", False

    def held(self):
        return self.spaces

    def _search(self, final):
        if self.found:
            return
        text = self.before + self.scan
        match = self.regex.search(text, len(self.before))
        if match is not None and (final or match.start() < len(text) - self.hold):
            self.found = True
            return
        cut = max(len(self.before), len(text) - self.hold)
        self.before, self.scan = text[max(0, cut - _CONTEXT_CHARS) : cut], text[cut:]

    def feed(self, chunk):
        if not self.found:
            self.scan += chunk
            self._search(False)
        text = self.spaces + chunk
        keep = _trailing_space(text)
        self.spaces = text[len(text) - keep :]
        return text[: len(text) - keep]

    def finish(self):
        self._search(True)
        if self.found:
            return self.spaces
        addition = _render(self.rule["parts"], None, "", self.context)
        if addition is None:
            return self.spaces
        return self.rule["separator"] + addition


class _Lines:
    """A rule that maps (or drops, with None) each line on its own."""

    def __init__(self, function):
        self.function, self.partial, self.started = function, "", False

    def held(self):
        return self.partial

    def _emit(self, line):
        mapped = self.function(line)
        if mapped is None:
            return ""
        out = ("\n" if self.started else "") + mapped
        self.started = True
        return out

    def feed(self, chunk):
        self.partial += chunk
        if "\n" not in chunk:
            return ""
        *lines, self.partial = self.partial.split("\n")
        return "".join(self._emit(line) for line in lines)

    def finish(self):
        return self._emit(self.partial)


class _Head:
    """A rule that only looks at the text up to its first non-space character."""

    def __init__(self, function, context):
        self.function, self.context, self.buf, self.done = function, context, "", False

    def held(self):
        return self.buf

    def feed(self, chunk):
        if self.done:
            return chunk
        self.buf += chunk
        if not self.buf.strip():
            return ""
        self.done, out, self.buf = True, self.function(self.buf, None, self.context), ""
        return out

    def finish(self):
        out, self.buf = self.function(self.buf, None, self.context) if self.buf else "", ""
        return out


class _Edge:
    """``strip``: leading whitespace dropped as it comes, trailing whitespace held back."""

    def __init__(self):
        self.started, self.spaces = False, ""

    def held(self):
        return self.spaces

    def feed(self, chunk):
        if not self.started:
            chunk = chunk.lstrip()
            self.started = bool(chunk)
        text = self.spaces + chunk
        keep = _trailing_space(text)
        self.spaces = text[len(text) - keep :]
        return text[: len(text) - keep]

    def finish(self):
        return ""


class _Full:
    """A rule that needs the whole text: buffers everything until finish()."""

    def __init__(self, rule, regex, context):
        self.rule, self.regex, self.context, self.buf = rule, regex, context, ""

    def held(self):
        return self.buf

    def feed(self, chunk):
        self.buf += chunk
        return ""

    def finish(self):
        out, self.buf = _apply_one(self.rule, self.regex, self.buf, self.context), ""
        return out


class _Pass:
    def __init__(self, function, context):
        self.function, self.context = function, context

    def held(self):
        return ""

    def feed(self, chunk):
        return self.function(chunk, None, self.context)

    def finish(self):
        return ""


def _stage(rule, regex, context):
    cls = _CLASSES.get(rule["id"])
    if cls is None:
        cls = _CLASSES[rule["id"]] = rule.get("stream") or stream_class(rule)
    if cls.startswith("window:"):
        return _Window(rule, regex, context, int(cls.split(":")[1]))
    if cls == "tail":
        width = _max_width(rule["pattern"])
        return _Tail(rule, regex, context, width[0] + width[1] + 1)
    if cls == "line":
        if rule["kind"] == "line_remove":
            return _Lines(lambda line: None if regex.fullmatch(line) else line)
        return _Lines(_collapse_line)
    if cls == "head":
        return _Head(_NORMALIZERS[rule["normalizer"]], context)
    if cls == "edge":
        return _Edge()
    if cls == "pass":
        return _Pass(_NORMALIZERS[rule["normalizer"]], context)
    return _Full(rule, regex, context)


class OutputStream:
    """Output rules over chunks: ``"".join(feed(c) for c in chunks) + finish()`` equals
    ``intercept_output("".join(chunks), context)``. Past the time budget the rest passes
    through as it came (what each rule still held is released unchanged)."""

    def __init__(self, entries, context):
        scope = context.get("function_name")
        self.stages = [
            _stage(rule, regex, context)
            for rule, regex in entries
            if _in_scope(rule, scope) and _OVERRUNS.get(rule["id"], 0) < FLAG_AFTER_OVERRUNS
        ]
        self.ids = [rule["id"] for rule, _ in entries if _in_scope(rule, scope)]
        self.seen, self.spent, self.bypass = 0, 0.0, False

    def _over(self, started):
        self.spent += time.perf_counter() - started
        if self.spent <= OUTPUT_BUDGET_S + OUTPUT_BUDGET_PER_KB_S * self.seen / 1024:
            return ""
        self.bypass = True
        _STATS["budget_exceeded"] += 1
        held = "".join(stage.held() for stage in reversed(self.stages))
        self.stages = []
        return held

    def feed(self, text):
        if not isinstance(text, str) or not text:
            return text if isinstance(text, str) else ""
        if not self.stages:
            return text
        started = time.perf_counter()
        self.seen += len(text)
        for stage in self.stages:
            text = stage.feed(text)
        return text + self._over(started)

    def finish(self):
        started = time.perf_counter()
        out = ""
        for stage in self.stages:
            out = stage.feed(out) + stage.finish()
        self.stages = []
        return out + ("" if self.bypass else self._over(started))


def intercept_output_stream(context):
    """A stream processor for one streamed output (see :class:`OutputStream`); with no output
    rules in scope it passes text straight through."""
    return OutputStream(_OUTPUT_ENTRIES, context if isinstance(context, dict) else {})
