"""Redaction of secrets and e-mail addresses before a record is written anywhere.

Applied (by the capture worker, see ``record.RawCall.build``) to inputs, outputs, params
and errors, so nothing unredacted reaches the journal or the store; only the in-memory
queue holds the caller's unredacted copies.
"""
from __future__ import annotations

import re
from typing import Any, List, Optional, Pattern, Tuple

from .config import VTConfig, get_config

REDACTED = "[REDACTED]"
REDACTED_EMAIL = "[EMAIL]"

# (pattern, replacement); a replacement may keep group 1 (the key name) visible.
_SECRET_PATTERNS: List[Tuple[str, str]] = [
    (r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{16,}", REDACTED),  # OpenAI/Anthropic/Stripe
    (r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*", r"\1" + REDACTED),
    (r"\bAKIA[0-9A-Z]{16}\b", REDACTED),  # AWS access key id
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", REDACTED),  # GitHub tokens
    (r"\bxox[abprs]-[A-Za-z0-9\-]{10,}\b", REDACTED),  # Slack tokens
    (r"\bAIza[0-9A-Za-z_\-]{35}\b", REDACTED),  # Google API keys
    # key=value / key: value / "key": "value" with a secret-looking key name
    (
        r"(?i)((?:api[_\-]?key|apikey|secret|token|password|passwd|pwd|access[_\-]?key|private[_\-]?key)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]{4,}",
        r"\1" + REDACTED,
    ),
]
_EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"
# dict keys whose whole value is a secret
_SECRET_KEY = re.compile(
    r"(?i)^(api[_\-]?key|apikey|authorization|password|passwd|secret|token|access[_\-]?token|"
    r"client[_\-]?secret|private[_\-]?key|x-api-key)$"
)

_compiled: Optional[Tuple[int, List[Tuple[Pattern[str], str]], Optional[Pattern[str]]]] = None


def _scoped(pattern: str) -> str:
    """``(?i)x`` -> ``(?i:x)`` so patterns can be joined into one alternation."""
    return f"(?i:{pattern[4:]})" if pattern.startswith("(?i)") else f"(?:{pattern})"


def _any_rule(rules: List[Tuple[Pattern[str], str]]) -> Optional[Pattern[str]]:
    """One pattern matching where any rule matches: most text has no secret, and one
    search is much cheaper than every substitution."""
    if not rules:
        return None
    try:
        return re.compile("|".join(_scoped(p.pattern) for p, _ in rules))
    except re.error:
        return None


def _rules(config: VTConfig) -> List[Tuple[Pattern[str], str]]:
    """Compiled rules for ``config`` (recompiled only when the config object changes)."""
    return _compile(config)[1]


def _compile(config: VTConfig) -> Tuple[int, List[Tuple[Pattern[str], str]], Optional[Pattern[str]]]:
    global _compiled
    if _compiled is not None and _compiled[0] == id(config):
        return _compiled
    rules: List[Tuple[Pattern[str], str]] = []
    if config.redact_secrets:
        rules += [(re.compile(p), r) for p, r in _SECRET_PATTERNS]
    if config.redact_emails:
        rules.append((re.compile(_EMAIL), REDACTED_EMAIL))
    rules += [(re.compile(p), REDACTED) for p in config.redact_patterns]
    _compiled = (id(config), rules, _any_rule(rules))
    return _compiled


def redact(text: str, config: Optional[VTConfig] = None) -> str:
    """``text`` with API keys, bearer tokens, ``key=value`` secrets, e-mails (if configured)
    and the configured extra patterns replaced by markers."""
    if not text:
        return text
    _, rules, any_rule = _compile(config or get_config())
    if any_rule is not None and any_rule.search(text) is None:
        return text
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


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
