"""Redaction of secrets and personal data before a record is written anywhere.

Applied (by the capture worker, see ``record.RawCall.build``) to inputs, outputs, params
and errors, so nothing unredacted reaches the journal or the store; only the in-memory
queue holds the caller's unredacted copies. Also applied to feedback, run records,
quarantined journal lines and error messages.

What is found: the token and key patterns of ``detect-secrets``' plugins (AWS, Slack,
GitHub, GitLab, Stripe, Twilio, SendGrid, npm, PyPI, Azure, Discord, Telegram, basic-auth
URLs, ...), our own for OpenAI/Anthropic keys, bearer tokens, JWTs anywhere, Google API and
OAuth keys, Hugging Face tokens, whole PEM private key blocks and ``key=value`` secrets; with
``redact_emails`` e-mail addresses; with ``redact_pii`` card numbers (Luhn-checked) and
phone numbers; and ``redact_patterns``. Most text has none of these: each of our rules runs
only where a string it needs occurs, detect-secrets' patterns one by one (one scan each), and a text
redacted recently is looked up, not scanned again (the cache, at most 4096 texts and 2 Mi
characters, holds what the capture queue already holds: the caller's text, in this process's memory).
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Dict, Iterable, List, Match, Optional, Pattern, Tuple, Union

from .config import VTConfig, get_config

REDACTED = "[REDACTED]"
REDACTED_EMAIL = "[EMAIL]"
REDACTED_CARD = "[CARD]"
REDACTED_PHONE = "[PHONE]"

Replacement = Union[str, Callable[[Match[str]], str]]

# (pattern, replacement); a replacement may keep group 1 (the key name) visible.
_SECRET_PATTERNS: List[Tuple[str, str]] = [
    # PEM private keys, whole: header, body and footer (or to the end of a truncated text)
    (
        r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END[A-Z0-9 ]{0,40} PRIVATE KEY"
        r"(?: BLOCK)?-----|\Z)",
        REDACTED,
    ),
    (r"\bsk-(?:proj-|ant-|live-|test-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}", REDACTED),  # OpenAI/Anthropic
    (r"\beyJ[A-Za-z0-9_\-]{5,}={0,2}\.[A-Za-z0-9_\-]{3,}={0,2}\.[A-Za-z0-9_\-+/]{3,}=*", REDACTED),  # JWT
    (r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*", r"\1" + REDACTED),
    (r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", REDACTED),  # AWS access key id
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}", REDACTED),  # GitHub tokens
    (r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", REDACTED),  # Slack tokens
    (r"\bAIza[0-9A-Za-z_\-]{35}\b|\bya29\.[0-9A-Za-z_\-]{20,}", REDACTED),  # Google API key / OAuth token
    (r"\bhf_[A-Za-z0-9]{30,}\b", REDACTED),  # Hugging Face token
    (r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}\b", REDACTED),  # Stripe
    # key=value / key: value / "key": "value" with a secret-looking key name
    (
        r"(?i)((?:api[_\-]?key|apikey|secret|token|password|passwd|pwd|access[_\-]?key|private[_\-]?key)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]{4,}",
        r"\1" + REDACTED,
    ),
]
# lower-case strings one of which text must contain for the rule of the same index to run
_TRIGGERS: List[Tuple[str, ...]] = [
    ("private key",),
    ("sk-",),
    ("eyj",),
    ("bearer",),
    ("a3t", "akia", "asia", "abia", "acca"),
    ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ("xox",),
    ("aiza", "ya29."),
    ("hf_",),
    ("k_live_", "k_test_"),
    ("key", "secret", "token", "passw", "pwd"),
]
_EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"
_CARD = r"(?<![\d.,])\d(?:[ \-]?\d){12,60}(?![\d])"  # a run; _card finds the card in it
_PHONE = (
    r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,4}\)?){2,5}(?!\w)"  # +CC ...
    r"|(?<![\w(])\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}(?!\w)"  # (555) 123-4567
    r"|(?<![\w.\-])\d{3}[.\-]\d{3}[.\-]\d{4}(?![\w.\-])"
)  # 555-123-4567
# detect-secrets plugins whose patterns we use. Left out: private key and JWT (ours redact
# the whole PEM block and any JWT), IPs (not secrets), artifactory (its patterns match the
# blanks around a token), and the keyword-context IBM/Cloudant/SoftLayer/Mailchimp patterns
# (tens of times slower than all the others together; our key=value rule covers the same text)
_DETECT_SECRETS_PLUGINS = (
    "aws",
    "azure_storage_key",
    "basic_auth",
    "discord",
    "github_token",
    "gitlab_token",
    "npm",
    "openai",
    "pypi_token",
    "sendgrid",
    "slack",
    "square_oauth",
    "stripe",
    "telegram_token",
    "twilio",
)
# dict keys whose whole value is a secret
_SECRET_KEY = re.compile(
    r"(?i)^(api[_\-]?key|apikey|authorization|password|passwd|secret|token|access[_\-]?token|"
    r"client[_\-]?secret|private[_\-]?key|x-api-key)$"
)

Rule = Tuple[Pattern[str], Replacement]
# How a rule is gated: lower-case strings one of which must occur, or a minimum digit count
Gate = Union[Tuple[str, ...], int, None]
_CARD_MIN_DIGITS = 13  # _card changes nothing in text with fewer digits
_PHONE_MIN_DIGITS = 8  # nor does _phone
_DIGIT = re.compile(r"\d")  # what the card and phone patterns count as a digit
_CACHE_ENTRIES = 4096  # distinct texts remembered (system prompts, chat history, tool schemas repeat)
_CACHE_MAX_CHARS = 4096  # longer texts are redacted every time
_CACHE_CHARS = 1 << 21  # characters held in all (2 MiB of ASCII text), so the cache stays small


class _Plan:
    """Compiled rules for one config: ours with their gates, detect-secrets', and the texts
    already redacted under them."""

    __slots__ = ("cache", "cached_chars", "config", "own", "plugins")

    def __init__(self, config: VTConfig, own: List[Tuple[Rule, Gate]], plugins: List[Rule]) -> None:
        self.config = config  # held, so no later config object can reuse its id
        self.own = own
        self.plugins = plugins
        self.cache: Dict[str, str] = {}
        self.cached_chars = 0  # approximate (updated without a lock)


_compiled: Optional[_Plan] = None
_plugin_patterns: Optional[List[Pattern[str]]] = None


def detect_secrets_patterns() -> List[Pattern[str]]:
    """The token/key patterns of ``detect-secrets``' plugins (empty if it is not installed)."""
    global _plugin_patterns
    if _plugin_patterns is None:
        patterns: List[Pattern[str]] = []
        try:
            from detect_secrets.plugins.base import RegexBasedDetector
        except ImportError:  # optional: our own patterns still apply
            _plugin_patterns = patterns
            return patterns
        for name in _DETECT_SECRETS_PLUGINS:
            try:
                module = importlib.import_module(f"detect_secrets.plugins.{name}")
            except ImportError:
                continue
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, RegexBasedDetector)
                    and value.__module__ == module.__name__
                ):
                    denylist: Iterable[object] = getattr(value, "denylist", ())  # a class attribute
                    patterns.extend(p for p in denylist if isinstance(p, re.Pattern))
        _plugin_patterns = patterns
    return _plugin_patterns


def _secret_span(match: Match[str]) -> str:
    """A detect-secrets match with the secret in a group (``aws ... "<40 chars>"``, a URL's
    password): only that group is replaced; otherwise the whole match."""
    groups = [i for i in range(1, (match.re.groups or 0) + 1) if match.group(i) and len(match.group(i)) >= 8]
    if not groups:
        return REDACTED
    index = max(groups, key=lambda i: len(match.group(i)))
    start, end = match.span(index)
    whole_start = match.start()
    text = match.group(0)
    return text[: start - whole_start] + REDACTED + text[end - whole_start :]


def luhn_ok(digits: str) -> bool:
    total, double = 0, False
    for char in reversed(digits):
        n = ord(char) - 48
        if double:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
        double = not double
    return total % 10 == 0


def _card(match: Match[str]) -> str:
    """The Luhn-valid 13-19 digit stretch of a digit run (a card followed by other numbers
    matches as one run), as ``[CARD]``; the run unchanged if there is none."""
    text = match.group(0)
    runs = [(m.start(), m.end()) for m in re.finditer(r"\d+", text)]
    for i in range(len(runs)):
        digits = ""
        for j in range(i, len(runs)):
            digits += text[runs[j][0] : runs[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_ok(digits):
                return text[: runs[i][0]] + REDACTED_CARD + text[runs[j][1] :]
    return text


def _phone(match: Match[str]) -> str:
    """The longest leading stretch of 8-15 digits (a phone followed by other numbers matches
    as one run), as ``[PHONE]``."""
    text = match.group(0)
    digits, end = 0, None
    for run in re.finditer(r"\d+", text):
        digits += len(run.group(0))
        if digits > 15:
            break
        if digits >= 8:
            end = run.end()
    return text if end is None else REDACTED_PHONE + text[end:]


def _compile(config: VTConfig) -> _Plan:
    """Compiled rules for ``config`` (recompiled only when the config object changes)."""
    global _compiled
    plan = _compiled
    if plan is not None and plan.config is config:
        return plan
    own: List[Tuple[Rule, Gate]] = []
    plugins: List[Rule] = []
    if config.redact_secrets:
        own += [((re.compile(p), r), t) for (p, r), t in zip(_SECRET_PATTERNS, _TRIGGERS)]
        plugins = [(p, _secret_span) for p in detect_secrets_patterns()]
    if config.redact_emails:
        own.append(((re.compile(_EMAIL), REDACTED_EMAIL), ("@",)))
    if config.redact_pii:
        own += [((re.compile(_CARD), _card), _CARD_MIN_DIGITS), ((re.compile(_PHONE), _phone), _PHONE_MIN_DIGITS)]
    own += [((re.compile(p), REDACTED), None) for p in config.redact_patterns]
    _compiled = plan = _Plan(config, own, plugins)
    return plan


def redact(text: str, config: Optional[VTConfig] = None) -> str:
    """``text`` with keys, tokens, private keys, ``key=value`` secrets, e-mails, card and
    phone numbers (as configured) and the configured extra patterns replaced by markers.
    Each of our rules runs only where its trigger string occurs (card and phone numbers only
    in text with enough digits), detect-secrets' patterns each in one scan. Texts seen recently
    (a system prompt, earlier turns of a chat) are not scanned again."""
    if not text:
        return text
    plan = _compile(config or get_config())
    cache = plan.cache
    done = cache.get(text)
    if done is not None:
        return done
    out = _redact(text, plan)
    if len(text) <= _CACHE_MAX_CHARS:
        size = len(text) + (len(out) if out is not text else 0)
        if len(cache) >= _CACHE_ENTRIES or plan.cached_chars + size > _CACHE_CHARS:
            cache.clear()  # cheaper than LRU order upkeep on every hit; refills from live traffic
            plan.cached_chars = 0
        cache[text] = out
        plan.cached_chars += size
    return out


def _redact(text: str, plan: _Plan) -> str:
    lowered = text.lower()
    digits = -1
    for (pattern, replacement), gate in plan.own:
        if type(gate) is int:
            if digits < 0:
                digits = len(_DIGIT.findall(text))
            if digits < gate:
                continue
        elif gate is not None and not any(t in lowered for t in gate):  # type: ignore[union-attr]
            continue
        text = pattern.sub(replacement, text)
    for pattern, replacement in plan.plugins:  # one by one: most have a literal prefix sre scans for
        text = pattern.sub(replacement, text)  # no match: one scan, the same text back
    return text


_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_]{40,}")


def redact_unparsed(text: str, config: Optional[VTConfig] = None) -> str:
    """:func:`redact` for text of unknown structure (a corrupt journal line): also every run
    of 40+ base64/hex characters, since a key split across lines has lost its markers."""
    return _LONG_TOKEN.sub(REDACTED, redact(text, config))


def redact_value(obj: Any, config: Optional[VTConfig] = None) -> Any:
    """Redact every string inside nested dicts/lists/tuples; values under secret-named
    keys (``api_key``, ``authorization``, ...) are replaced entirely."""
    config = config or get_config()
    if isinstance(obj, str):
        return redact(obj, config)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if isinstance(key, str) and value is not None and _SECRET_KEY.match(key) and config.redact_secrets:
                out[key] = REDACTED
            else:
                out[key] = redact_value(value, config)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact_value(v, config) for v in obj]
    return obj
