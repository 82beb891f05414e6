"""Evaluation feedback written apart from the miner: support replies and review summaries.

This generator was written before the rule miner was designed and tuned, and is never used
to tune it. Phrasing varies per answer (several templates per sentence), every answer gets one
to four independent defects, and each defect is what a reviewer would plausibly correct:

  support replies
    greeting      "Dear customer," instead of "Hi <name>," (the name is in the ticket)
    order_ref     "order no. 48213" instead of "order #48213"
    amount        "USD 1234.5" instead of "$1,234.50"
    date          "2026-03-07" instead of "7 March 2026"
    signoff       the fix adds a blank line and "-- Acme Support" at the end
    apology       a stock "We apologise for any inconvenience." line is deleted
    bullets       "* " list items instead of "- "
    filler        "basically " slipped into sentences is deleted
    clock         "at 14:30" instead of "at 2:30 PM"
  review summaries
    verdict       missing last line "Verdict: N/5" (N from the review's stars)
    percent       "45 percent" instead of "45%"
    upsell        a trailing "Let me know if you need anything else!" line is deleted
    brand_case    the brand from the input in lower case instead of as written

``make_independent(n, seed)`` returns (pair, families) items; ``independent_goods(n, seed)`` the
already-good answers (outputs nobody corrected) of the same kind.
"""

from __future__ import annotations

import calendar
import random
from typing import Callable, Dict, List, Sequence, Tuple

from vt_middleware.types import FeedbackPair

NAMES = ["Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Liam", "Chen", "Olga", "Noah", "Priya", "Tomasz", "Zara"]
ITEMS = [
    "headphones",
    "coffee grinder",
    "standing desk",
    "e-reader",
    "air purifier",
    "yoga mat",
    "smart watch",
    "rice cooker",
    "phone case",
    "hiking boots",
    "webcam",
    "water bottle",
]
BRANDS = ["Zentro", "Kalvik", "Orbio", "Lumex", "Pravda", "Tessel", "Quorra", "Vantix"]
MONTHS = list(calendar.month_name)[1:]  # English names: the C locale is never changed here
SUPPORT_FAMILIES = ("greeting", "order_ref", "amount", "date", "signoff", "apology", "bullets", "filler", "clock")
REVIEW_FAMILIES = ("verdict", "percent", "upsell", "brand_case")
FAMILIES = SUPPORT_FAMILIES + REVIEW_FAMILIES


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _support(rng: random.Random) -> Tuple[str, Dict[str, str], Dict[str, Callable[[str], str]]]:
    """(ticket, good answer parts, defects) of one support reply."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    order = rng.randint(10000, 99999)
    amount = rng.choice([rng.randint(1000, 9999) + rng.choice([0, 0.5, 0.25, 0.99]), rng.randint(12, 999) + 0.5])
    year, month, day = 2026, rng.randint(1, 12), rng.randint(1, 28)
    hour, minute = rng.randint(13, 21), rng.choice([0, 15, 30, 45])
    ticket = (
        f"Ticket from {name} about order {order}: my {item} arrived damaged, "
        f"{rng.choice(['please help', 'what now?', 'I want a refund', 'can you replace it?'])}"
    )
    steps = rng.sample(
        [
            "Keep the original packaging.",
            "Print the prepaid label we emailed you.",
            "Drop the parcel at any post office.",
            "Reply with a photo of the damage.",
            "Wait for our confirmation email.",
        ],
        rng.randint(2, 3),
    )
    opener = rng.choice(
        [
            f"thanks for reaching out about order #{order}.",
            f"I am sorry to hear that your {item} from order #{order} arrived damaged.",
            f"we have looked into order #{order} right away.",
        ]
    )
    refund = rng.choice(
        [
            f"A refund of {_money(amount)} will be issued",
            f"We will credit {_money(amount)} to your card",
            f"You will receive {_money(amount)} back",
        ]
    )
    when = f"{day} {MONTHS[month - 1]} {year}"
    clock = f"{(hour - 12)}:{minute:02d} PM"
    good = {
        "greeting": f"Hi {name},",
        "body": f"{opener[0].upper()}{opener[1:]} {refund} by {when}.",
        "pickup": f"A courier can collect the parcel tomorrow at {clock}.",
        "steps": "Next steps:\n" + "\n".join(f"- {s}" for s in steps),
        "close": rng.choice(
            ["Thank you for your patience.", "We appreciate your understanding.", "Thanks for shopping with us."]
        ),
    }
    iso = f"{year}-{month:02d}-{day:02d}"
    raw = f"{amount:.2f}".rstrip("0").rstrip(".") if amount != int(amount) else str(int(amount))

    def filler(text: str) -> str:
        return text.replace(f"{refund} by", f"{refund} basically by", 1).replace(
            "can collect", "can basically collect", 1
        )

    defects = {
        "greeting": lambda t: t.replace(f"Hi {name},", "Dear customer,", 1),
        "order_ref": lambda t: t.replace(f"order #{order}", f"order no. {order}"),
        "amount": lambda t: t.replace(_money(amount), f"USD {raw}"),
        "date": lambda t: t.replace(when, iso),
        "signoff": lambda t: t.replace("\n\n-- Acme Support", "", 1),
        "apology": lambda t: t.replace("\nNext steps:", "\nWe apologise for any inconvenience.\nNext steps:", 1),
        "bullets": lambda t: t.replace("\n- ", "\n* "),
        "filler": filler,
        "clock": lambda t: t.replace(f"at {clock}", f"at {hour}:{minute:02d}"),
    }
    return ticket, good, defects


def _review(rng: random.Random) -> Tuple[str, str, Dict[str, Callable[[str], str]]]:
    brand, item = rng.choice(BRANDS), rng.choice(ITEMS)
    stars = rng.randint(1, 5)
    share = rng.randint(5, 95)
    mood = rng.choice(["loves", "is unhappy with", "has mixed feelings about", "recommends"])
    review = f"Review ({stars} of 5 stars) of the {brand} {item}: the reviewer {mood} it. {share}% would buy again."
    lines = [
        rng.choice(
            [
                f"The reviewer {mood} the {brand} {item}.",
                f"Overall the {brand} {item} gets a clear opinion: the reviewer {mood} it.",
            ]
        ),
        rng.choice(
            [f"About {share}% of buyers would buy it again.", f"{share}% of readers say they would repurchase."]
        ),
        f"Verdict: {stars}/5",
    ]
    good = "\n".join(lines)
    defects = {
        "verdict": lambda t: t.replace(f"\nVerdict: {stars}/5", "", 1),
        "percent": lambda t: t.replace(f"{share}%", f"{share} percent"),
        "upsell": lambda t: t + "\nLet me know if you need anything else!",
        "brand_case": lambda t: t.replace(brand, brand.lower()),
    }
    return review, good, defects


def _case(rng: random.Random, index: int, corrupt: bool) -> Tuple[FeedbackPair, Tuple[str, ...]]:
    if rng.random() < 0.6:
        ticket, parts, defects = _support(rng)
        good = "\n".join([parts["greeting"], parts["body"], parts["pickup"], parts["steps"], parts["close"]])
        good += "\n\n-- Acme Support"
        context = {"function_name": "support_reply"}
    else:
        ticket, good, defects = _review(rng)
        context = {"function_name": "review_summary"}
    chosen: Sequence[str] = ()
    bad = good
    if corrupt:
        chosen = tuple(sorted(rng.sample(sorted(defects), rng.randint(1, min(4, len(defects))))))
        for family in chosen:
            bad = defects[family](bad)
    pair = FeedbackPair(
        ticket,
        bad,
        good,
        context=context,
        pair_id=f"ind-{index:05d}",
        created_at=f"2026-02-01T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}+00:00",
    )
    return pair, tuple(chosen)


def make_independent(n: int, seed: int = 0) -> List[Tuple[FeedbackPair, Tuple[str, ...]]]:
    """``n`` corrected answers with their defect families (pairs whose defects cancel out are redrawn)."""
    rng = random.Random(seed)
    out: List[Tuple[FeedbackPair, Tuple[str, ...]]] = []
    while len(out) < n:
        pair, families = _case(rng, len(out), corrupt=True)
        if pair.bad_output != pair.fixed_output:
            out.append((pair, families))
    return out


def independent_goods(n: int, seed: int = 1) -> List[FeedbackPair]:
    """Answers nobody corrected (bad == fixed), as negatives for harm."""
    rng = random.Random(seed)
    return [_case(rng, 50_000 + i, corrupt=False)[0] for i in range(n)]
