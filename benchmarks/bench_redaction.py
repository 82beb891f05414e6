"""Redaction cost on the capture worker: microseconds per KB of text for clean prose, prose
with a secret every KB, and JSON-ish tool output, with the full rule set (detect-secrets'
plugin patterns, PII, PEM, JWT) against a same-run baseline of our own key patterns only
(no detect-secrets, no PII) and against detect-secrets' own line scanner.

    python benchmarks/bench_redaction.py [--kb 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

from vt_middleware import redaction  # noqa: E402
from vt_middleware.config import VTConfig  # noqa: E402

WORDS = (
    "the food was great and the service friendly we waited twenty minutes for a table "
    "order 12345 arrived on 2024-05-01 at 10:30 rating 4 out of 5 stars would come again"
).split()
SECRETS = [
    "sk-A1b2C3d4E5f6G7h8I9j0K1l2M3n4",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz",
    "4111 1111 1111 1111",
    "+1 415-555-0132",
    "AKIAIOSFODNN7EXAMPLE",
    "alice@example.com",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
]


def prose(kb: int, secret_every: int, rng: random.Random) -> str:
    parts, size, next_secret = [], 0, secret_every
    while size < kb * 1024:
        word = rng.choice(WORDS)
        if secret_every and size >= next_secret:
            word, next_secret = rng.choice(SECRETS), next_secret + secret_every
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)


def tool_json(kb: int, rng: random.Random) -> str:
    rows, size = [], 0
    while size < kb * 1024:
        row = f'{{"id": {rng.randrange(10**6)}, "name": "{rng.choice(WORDS)}", "price": {rng.random():.2f}}}'
        rows.append(row)
        size += len(row) + 2
    return "[" + ", ".join(rows) + "]"


def per_kb(func: Callable[[str], object], text: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()  # CPU time: the machine is shared, wall time is mostly waiting
        func(text)
        times.append(time.process_time() - start)
    return statistics.median(times) / (len(text) / 1024) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(0)
    texts: Dict[str, str] = {
        "clean prose": prose(args.kb, 0, rng),
        "prose, a secret per KB": prose(args.kb, 1024, rng),
        "tool JSON": tool_json(args.kb, rng),
    }
    full = VTConfig(redact_patterns=[r"CUST-\d{6}"])
    own_only = VTConfig(redact_pii=False, redact_patterns=[r"CUST-\d{6}"])

    def ours_only(text: str) -> str:
        saved, redaction._plugin_patterns = redaction._plugin_patterns, []
        redaction._compiled = None
        try:
            return redaction.redact(text, own_only)
        finally:
            redaction._plugin_patterns, redaction._compiled = saved, None

    redaction.redact("warm up", full)
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings

        def detect_secrets_scan(text: str) -> None:
            with default_settings():
                for line in text.splitlines() or [text]:
                    list(scan_line(line))
    except ImportError:  # pragma: no cover
        detect_secrets_scan = None  # type: ignore[assignment]

    print(f"redaction, {args.kb} KB texts, median of {args.repeat} (CPU µs per KB)")
    print(f"{'text':<26}{'full rules':>12}{'own keys only':>15}{'detect-secrets scan':>21}")
    for name, text in texts.items():
        full_us = per_kb(lambda t: redaction.redact(t, full), text, args.repeat)
        redaction._compiled = None
        own_us = per_kb(ours_only, text, args.repeat)
        redaction._compiled = None
        scan_us = per_kb(detect_secrets_scan, text, 1) if detect_secrets_scan else float("nan")
        print(f"{name:<26}{full_us:>12.1f}{own_us:>15.1f}{scan_us:>21.1f}")
    leftover = [s for s in SECRETS if s in redaction.redact(texts["prose, a secret per KB"], full)]
    print(f"planted secrets left after full redaction: {len(leftover)} {leftover}")


if __name__ == "__main__":
    main()
