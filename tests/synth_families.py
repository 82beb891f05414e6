"""Shop answers with thirteen defect families that compose: one to four per output.

Each family turns the good answer into a bad one in a way a reviewer fixes by hand; the
families touch different parts of the answer, so any subset applies in any order:

  opener     "As an AI language model, the ..." (removed, first word re-capitalised)
  currency   "USD 1234.5" for "$1,234.50"                      (number notation + symbol)
  date       "03/07/2026" for "March 7, 2026"                  (date notation)
  clock      "2:30 PM" for "14:30"                             (time notation)
  weight     "5 kilograms" for "5 kg"                          (unit form, any number)
  order_id   "your order" for "order #<id>", id from the input (value copied from the input)
  rating     the last line "Rating: N/5" is missing, N from the input
  signoff    "Thanks,\\nThe Shop Team" after a blank line is missing (two lines, learned whole)
  vat_line   the line "(prices include VAT)" after "Details:" is missing
  internal   a line "Internal note: ref 4821" is left in          (line removed)
  numbering  "1) item" list markers for "- item"               (line prefix)
  spaces     doubled spaces                                    (format)
  quotes     curly quotes around the product name              (format)
"""

from __future__ import annotations

import calendar
import random
from typing import Callable, Dict, List, Tuple

from vt_middleware.synthesize import build_module
from vt_middleware.types import FeedbackPair, Rule

PRODUCTS = [
    "blender",
    "kettle",
    "desk lamp",
    "office chair",
    "toaster",
    "router",
    "backpack",
    "rain jacket",
    "monitor",
    "keyboard",
    "speaker",
    "camera",
    "heater",
    "mixer",
    "drill",
    "scanner",
    "tent",
    "mug",
]
FEATURES = [
    "two-year warranty",
    "free returns",
    "energy saving mode",
    "recycled packaging",
    "spare parts available",
    "quiet operation",
    "dishwasher safe parts",
    "USB-C charging",
]
MONTHS = list(calendar.month_name)[1:]  # English names: the C locale is never changed here
FAMILIES = (
    "opener",
    "currency",
    "date",
    "clock",
    "weight",
    "order_id",
    "rating",
    "signoff",
    "vat_line",
    "internal",
    "numbering",
    "spaces",
    "quotes",
)


def _numbered(text: str) -> str:
    lines, count = [], 0
    for line in text.split("\n"):
        if line.startswith("- "):
            count += 1
            line = f"{count}) {line[2:]}"
        lines.append(line)
    return "\n".join(lines)


def _answer(rng: random.Random) -> Tuple[str, str, Dict[str, Callable[[str], str]]]:
    """(prompt, good answer, defects) of one shop answer."""
    product = rng.choice(PRODUCTS)
    order = rng.randint(100000, 999999)
    stars = rng.randint(1, 5)
    price = rng.choice([rng.randint(1000, 9999) + rng.choice([0.5, 0.25, 0.0]), rng.randint(10, 999) + 0.5])
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    hour, minute = rng.randint(13, 20), rng.choice([0, 10, 30, 45])
    weight = rng.randint(2, 40)
    features = rng.sample(FEATURES, rng.randint(2, 3))
    prompt = (
        f"Customer asks about order {order}: when does the {product} ship and what does it cost? "
        f"They rated us {stars}/5 last time."
    )
    money = f"${price:,.2f}"
    lines = [
        f'The "{product}" costs {money} and ships on {MONTHS[month - 1]} {day}, 2026 at {hour}:{minute:02d}.',
        f"It weighs {weight} kg.",
        "Details:",
        "(prices include VAT)",
        *[f"- {feature}" for feature in features],
        rng.choice(
            [
                "Tracking for order #{0} follows by email.",
                "We will email you when order #{0} leaves the warehouse.",
                "Questions about order #{0}? Just reply to this message.",
            ]
        ).format(order),
        "",
        f"Rating: {stars}/5",
        "",
        "Thanks,",
        "The Shop Team",
    ]
    good = "\n".join(lines)
    raw_price = f"{price:.2f}".rstrip("0").rstrip(".")
    clock12 = f"{hour - 12}:{minute:02d} PM"
    defects = {
        "opener": lambda t: "As an AI language model, the" + t[len("The") :],
        "currency": lambda t: t.replace(money, f"USD {raw_price}", 1),
        "date": lambda t: t.replace(f"{MONTHS[month - 1]} {day}, 2026", f"{month:02d}/{day:02d}/2026", 1),
        "clock": lambda t: t.replace(f"at {hour}:{minute:02d}.", f"at {clock12}.", 1),
        "weight": lambda t: t.replace(f"{weight} kg.", f"{weight} kilograms.", 1),
        "order_id": lambda t: t.replace(f"order #{order}", "your order", 1),
        "rating": lambda t: t.replace(f"\n\nRating: {stars}/5", "", 1),
        "signoff": lambda t: t.replace("\n\nThanks,\nThe Shop Team", "", 1),
        "vat_line": lambda t: t.replace("Details:\n(prices include VAT)\n", "Details:\n", 1),
        "internal": lambda t: t.replace("\nDetails:", f"\nInternal note: ref {rng.randint(1000, 9999)}\nDetails:", 1),
        "numbering": _numbered,
        "spaces": lambda t: t.replace(" costs ", "  costs ", 1).replace(" weighs ", "   weighs ", 1),
        "quotes": lambda t: t.replace(f'"{product}"', f"\u201c{product}\u201d", 1),
    }
    return prompt, good, defects


def make_mixed(
    n: int, seed: int = 0, families: Tuple[str, ...] = FAMILIES, max_defects: int = 4
) -> List[Tuple[FeedbackPair, Tuple[str, ...]]]:
    """``n`` corrected answers, each with one to ``max_defects`` families drawn from ``families``."""
    rng = random.Random(seed)
    out: List[Tuple[FeedbackPair, Tuple[str, ...]]] = []
    while len(out) < n:
        prompt, good, defects = _answer(rng)
        chosen = tuple(sorted(rng.sample(families, rng.randint(1, min(max_defects, len(families))))))
        bad = good
        for family in chosen:
            bad = defects[family](bad)
        pair = FeedbackPair(
            prompt,
            bad,
            good,
            context={"function_name": "shop_answer"},
            pair_id=f"mix-{seed}-{len(out):05d}",
            created_at=f"2026-03-01T00:{len(out) // 60 % 60:02d}:{len(out) % 60:02d}+00:00",
        )
        out.append((pair, chosen))
    return out


def mixed_goods(n: int, seed: int = 1) -> List[Tuple[str, dict]]:
    """Answers that need no fix, with their hook contexts."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, good, _ = _answer(rng)
        out.append((good, {"function_name": "shop_answer", "user_input": prompt}))
    return out


def load_hook(rules: List[Rule], version: str = "v9999") -> dict:
    """The generated module for ``rules``, executed into a namespace (fails on a build error)."""
    result = build_module(rules, version=version)
    assert result.ok, result.errors
    namespace: dict = {}
    exec(compile(result.code, "<hook>", "exec"), namespace)
    return namespace
