"""Redaction of record-sized texts: repeated texts, digit-gated rules, config changes."""

from __future__ import annotations

import numpy as np
import pytest

import vt_middleware as vt
from vt_middleware.config import VTConfig
from vt_middleware.redaction import REDACTED_CARD, REDACTED_EMAIL, REDACTED_PHONE, redact

TEXTS = [
    "You summarise reviews.",
    "call me on 555-123-4567 or mail ann@example.org",
    "card 4111 1111 1111 1111 expires soon",
    "order 12345 shipped in 3 boxes",  # digits, but too few for a card or a phone
    "token=abcd1234efgh and Authorization: Bearer abc.def-ghi12345",
    "key sk-proj-abcdefghijklmnop1234 in a long message " + "padding " * 40,
]


def test_repeated_texts_are_redacted_the_same_as_new_ones():
    pii = VTConfig(redact_pii=True)
    first = [redact(t, pii) for t in TEXTS]
    again = [redact(t, pii) for t in TEXTS]  # looked up now
    fresh = [redact(t, VTConfig(redact_pii=True)) for t in TEXTS]  # a new config: scanned again
    assert first == again == fresh
    assert REDACTED_PHONE in first[1] and REDACTED_EMAIL in first[1] and "555-123" not in first[1]
    assert REDACTED_CARD in first[2] and "4111" not in first[2]
    assert first[3] == TEXTS[3]
    assert "abcd1234efgh" not in first[4] and "ghi12345" not in first[4]
    assert "sk-proj" not in first[5]


def test_a_config_change_is_not_served_from_texts_redacted_before():
    text = "mail ann@example.org about CUST-42"
    assert redact(text, VTConfig()) == f"mail {REDACTED_EMAIL} about CUST-42"
    assert redact(text, VTConfig(redact_emails=False)) == text
    assert redact(text, VTConfig(redact_patterns=[r"CUST-\d+"])) == f"mail {REDACTED_EMAIL} about [REDACTED]"


def test_digit_gates_follow_the_card_and_phone_rules():
    pii = VTConfig(redact_pii=True)
    assert redact("ring +44 20 7946 0958 now", pii) == f"ring {REDACTED_PHONE} now"
    assert redact("ring 555-1234 now", pii) == "ring 555-1234 now"  # 7 digits: not a phone
    assert redact("ref 4111 1111 1111 1112", pii) == "ref 4111 1111 1111 1112"  # fails Luhn


@pytest.mark.parametrize("warm_first", [False, True])
def test_static_embedder_vectors_do_not_depend_on_its_word_cache(warm_first):
    from vt_middleware.store.static_embedder import StaticEmbedder

    embedder = StaticEmbedder(dim=vt.get_config().embedding_dim)
    texts = ["the soup was cold", "cold soup, kind staff", "the soup was cold the soup was cold", ""]
    if warm_first:
        embedder.embed(list(reversed(texts)))
    vectors = embedder.embed(texts)
    again = embedder.embed(texts[::-1])[::-1]
    assert np.array_equal(vectors, again)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5) and not vectors[3].any()
    # a text and itself twice have the same mean; an unrelated text is further away
    assert np.allclose(vectors[0], vectors[2], atol=1e-6)
    unrelated = embedder.embed(["quarterly revenue forecast spreadsheet"])[0]
    assert vectors[0] @ vectors[1] > vectors[0] @ unrelated
