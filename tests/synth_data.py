"""Feedback pairs with several defect families, shared by the synthesis tests and benchmark."""

from __future__ import annotations

import random
from typing import List, Tuple

from vt_middleware.types import FeedbackPair

PRODUCTS = [
    "blender",
    "kettle",
    "lamp",
    "chair",
    "toaster",
    "desk",
    "router",
    "backpack",
    "jacket",
    "monitor",
    "keyboard",
    "speaker",
    "camera",
    "heater",
    "mixer",
    "pillow",
    "drill",
    "scanner",
    "tent",
    "mug",
]
QUALITIES = ["sturdy", "quiet", "bright", "heavy", "compact", "cheap-looking", "elegant", "reliable", "noisy", "fast"]
FAMILIES = ("preamble", "currency", "rating", "spaces", "quotes", "json", "disclaimer")


def make_case(rng: random.Random, index: int) -> Tuple[FeedbackPair, str]:
    """One (pair, family) where the pair's bad output has that family's defect."""
    family = FAMILIES[index % len(FAMILIES)]
    product = rng.choice(PRODUCTS)
    quality = rng.choice(QUALITIES)
    price = rng.randint(5, 900)
    stars = rng.randint(1, 5)
    prompt = f"Summarise this review ({stars} stars): the {product} is {quality}."
    rating = f"\n\nRating: {stars}/5"
    good = f"The {product} is {quality} and costs ${price}.{rating}"
    context = {"function_name": "review_summary"}
    if family == "preamble":
        bad, fixed = f"As an AI language model, the {product} is {quality} and costs ${price}.{rating}", good
    elif family == "currency":
        bad, fixed = f"The {product} is {quality} and costs USD {price}.{rating}", good
    elif family == "rating":
        bad, fixed = f"The {product} is {quality} and costs ${price}.", good
    elif family == "spaces":
        bad, fixed = f"The {product}  is {quality}   and costs ${price}.{rating}", good
    elif family == "quotes":
        bad, fixed = (
            f"The \u201c{product}\u201d is {quality} and costs ${price}.{rating}",
            f'The "{product}" is {quality} and costs ${price}.{rating}',
        )
    elif family == "json":
        context = {"function_name": "extract_product"}
        prompt = f"Extract product data from: {product}, ${price}"
        bad = f"{{'name': '{product}', 'price': {price},}}"
        fixed = f'{{"name": "{product}", "price": {price}}}'
    else:
        context = {"function_name": "stock_summary"}
        prompt = f"Summarise stock {product.upper()} today"
        bad = f"{product.upper()} rose {price / 100:.2f}% today."
        fixed = bad + " This is not financial advice."
    return FeedbackPair(
        prompt,
        bad,
        fixed,
        context=context,
        pair_id=f"pair-{index:05d}",
        created_at=f"2026-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}+00:00",
    ), family


def make_pairs(n: int, seed: int = 0) -> List[Tuple[FeedbackPair, str]]:
    rng = random.Random(seed)
    return [make_case(rng, i) for i in range(n)]


def good_outputs(n: int, seed: int = 1) -> List[Tuple[str, dict]]:
    """Already-good outputs (what a fixed output looks like) with their contexts."""
    out = []
    for pair, _family in make_pairs(n, seed):
        out.append((pair.fixed_output, {**pair.context, "user_input": pair.input_prompt}))
    return out
