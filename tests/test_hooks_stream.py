"""Generated hooks on streamed outputs, linear-time rule patterns and the per-call time budget."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth_families import load_hook
from vt_middleware.synthesize import FeedbackDiffAnalyzer, RuleSetSynthesizer
from vt_middleware.synthesize.codegen import check_rule
from vt_middleware.synthesize.hook_runtime import pattern_is_linear
from vt_middleware.synthesize.slots import NUMBER_PATTERN
from vt_middleware.synthesize.typed import value_regex
from vt_middleware.types import FeedbackPair, Rule

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rule(rule_id, kind, priority, **fields):
    condition = {k: fields.pop(k) for k in ("pattern", "anchor", "position", "anchor_line") if k in fields}
    return Rule(
        rule_id,
        rule_id,
        {"scope": None, **condition},
        fields,
        priority=priority,
        kind=kind,
        sources=["a", "b"],
        support=2,
    )


RULE_POOL = [
    _rule("r-opener", "remove", 90, pattern=r"As\ an\ AI,\ ", anchor="As an AI, ", parts=[]),
    _rule(
        "r-usd",
        "replace",
        80,
        pattern=r"USD\ (" + NUMBER_PATTERN + ")",
        anchor="USD ",
        parts=[["lit", "$", ""], ["group", "1", ""]],
    ),
    _rule(
        "r-date", "replace", 70, pattern=value_regex("date", "ymd"), anchor="", parts=[["date", "1|ymd|d_month_y", ""]]
    ),
    _rule("r-bullet", "replace", 60, pattern=r"(?m)^\*", anchor="*", parts=[["lit", "-", ""]]),
    _rule("r-line", "line_remove", 55, pattern=r"Note:\ internal\ (?>\d(?:[\d.,]{0,38}\d)?)", anchor="Note: internal "),
    _rule("r-sign", "append", 20, pattern=r"--\ Support", parts=[["lit", "-- Support", ""]], separator="\n\n"),
    _rule("r-quotes", "normalize", 85, normalizer="straight_quotes", param=None),
    _rule("r-spaces", "normalize", 84, normalizer="collapse_spaces", param=None),
    _rule("r-cap", "normalize", 40, normalizer="capitalize_first", param=None),
    _rule("r-strip", "normalize", 86, normalizer="strip", param=None),
    _rule("r-json", "normalize", 95, normalizer="json_repair", param=None),
    _rule("r-head", "prepend", 15, pattern=r"Summary:", parts=[["lit", "Summary:", ""]], separator="\n"),
]
PIECES = st.sampled_from(
    [
        "As an AI, ",
        "USD 12",
        "USD 1,234.5",
        "2026-03-07",
        "\n* item",
        "*",
        "\n",
        "  ",
        " ",
        "Note: internal 42",
        "\nNote: internal 7\n",
        "-- Support",
        "\u201cq\u201d",
        "the end.",
        "{'a': 1,}",
        "Summary:",
        "word",
        "12",
        "\t",
        "x",
    ]
)
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=14).map("".join)


load = load_hook


def chunked(text, cuts):
    points = sorted({c % (len(text) + 1) for c in cuts})
    edges = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


@pytest.fixture(scope="module")
def all_rules_hook():
    hook = load(RULE_POOL)
    hook["ALL_ENTRIES"] = list(hook["_OUTPUT_ENTRIES"])
    return hook


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.sampled_from(range(len(RULE_POOL))), min_size=0, max_size=6, unique=True),
    TEXT,
    st.lists(st.integers(0, 400), max_size=12),
)
def test_any_chunking_of_a_stream_gives_the_whole_text_result(all_rules_hook, chosen, text, cuts):
    hook = all_rules_hook
    ids = {RULE_POOL[i].rule_id for i in chosen}
    hook["_OUTPUT_ENTRIES"] = [entry for entry in hook["ALL_ENTRIES"] if entry[0]["id"] in ids]  # a rule subset
    stream = hook["intercept_output_stream"]({})
    pieces = chunked(text, cuts)
    streamed = "".join(stream.feed(piece) for piece in pieces) + stream.finish()
    assert streamed == hook["intercept_output"](text, {})


def test_rule_table_records_each_rules_stream_class():
    hook = load(RULE_POOL)
    classes = {row["id"]: row["stream"] for row in hook["RULES"]}
    assert classes["r-opener"].startswith("window:") and classes["r-usd"].startswith("window:")
    assert classes["r-sign"] == "tail" and classes["r-line"] == "line" and classes["r-quotes"] == "pass"
    assert classes["r-json"] == "full" and classes["r-head"] == "full"


def test_window_rules_hold_back_only_a_bounded_tail():
    hook = load([RULE_POOL[0], RULE_POOL[1], RULE_POOL[5]])
    stream = hook["intercept_output_stream"]({})
    text = "As an AI, the price is USD 12. " + "word " * 200
    out = [stream.feed(text)]
    assert out[0].startswith("the price is $12.") and len(text) - len(out[0]) < 100
    out.append(stream.finish())
    assert "".join(out).endswith("word\n\n-- Support")


def test_no_output_rules_pass_text_straight_through():
    hook = load([])
    stream = hook["intercept_output_stream"]({"function_name": "f"})
    assert [stream.feed(c) for c in ("a", "b c", "")] == ["a", "b c", ""] and stream.finish() == ""


# --- linear time ----------------------------------------------------------------------------
def test_backtracking_patterns_are_refused():
    quadratic = r"\d+(?:[.,]\d+)*\s+stars"
    assert not pattern_is_linear(quadratic) and not pattern_is_linear(r"(a+)+b") and not pattern_is_linear(r"(a|a)*")
    bad = _rule("r-bad", "replace", 50, pattern=quadratic, anchor="stars", parts=[["lit", "x", ""]])
    assert any("linear" in problem for problem in check_rule(bad))
    assert pattern_is_linear(r"(" + NUMBER_PATTERN + r")\s{1,8}+stars")


@pytest.fixture(scope="module")
def star_hook():
    """Five ordinary pairs whose fix appends "N stars": the learned rules must stay linear."""
    pairs = [
        FeedbackPair(
            f"Rate it ({n} stars please)", f"Good product {i}.", f"Good product {i}. {n} stars", pair_id=f"s{i}"
        )
        for i, n in enumerate([3, 4, 2, 5, 1])
    ]
    rules = RuleSetSynthesizer(prompt_rules=False).synthesize(FeedbackDiffAnalyzer().analyze_many(pairs))
    assert rules
    return load(rules)


ADVERSARIAL = st.sampled_from(["1", "1,", "1.", " ", "\t", "stars", "star", "a", "\n", "USD ", "9" * 7, ", "])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(ADVERSARIAL, min_size=1, max_size=4), st.integers(20, 100))
def test_hook_time_grows_linearly_on_adversarial_outputs(star_hook, unit, kib):
    text = ("".join(unit) * (kib * 1024 // max(1, len("".join(unit))) + 1))[: kib * 1024]
    context = {"user_input": "Rate it (3 stars please)"}
    start = time.perf_counter()
    star_hook["intercept_output"](text, context)
    elapsed = time.perf_counter() - start
    assert elapsed / kib < 0.02, f"{elapsed / kib * 1000:.1f} ms per KiB"  # a complexity bound, not a benchmark


def test_calls_past_the_time_budget_get_the_raw_output_and_flag_the_rule():
    hook = load([RULE_POOL[1]])
    hook["OUTPUT_BUDGET_S"], hook["OUTPUT_BUDGET_PER_KB_S"] = -1.0, 0.0
    assert hook["intercept_output"]("USD 5", {}) == "USD 5"  # bypassed, not half-applied
    for _ in range(3):
        hook["intercept_output"]("USD 5", {})
    stats = hook["hook_stats"]()
    assert stats["budget_exceeded"] == 3 and stats["flagged_rules"] == ["r-usd"]
    hook["OUTPUT_BUDGET_S"] = 10.0
    assert hook["intercept_output"]("USD 5", {}) == "USD 5"  # a flagged rule stays out


@pytest.fixture(scope="module")
def learned_hook():
    """Rules synthesised from shop answers with 1-4 defects (line, typed, slot and window rules)."""
    from synth_families import make_mixed

    data = make_mixed(120, seed=61)
    rules = RuleSetSynthesizer().synthesize(FeedbackDiffAnalyzer().analyze_many([p for p, _ in data]))
    return load(rules), make_mixed(40, seed=62)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.integers(0, 39), st.lists(st.integers(0, 600), max_size=16), st.booleans())
def test_learned_rules_stream_like_whole_outputs(learned_hook, index, cuts, fixed):
    hook, items = learned_hook
    pair = items[index][0]
    text = pair.fixed_output if fixed else pair.bad_output
    context = {"function_name": "shop_answer", "user_input": pair.input_prompt}
    stream = hook["intercept_output_stream"](context)
    streamed = "".join(stream.feed(piece) for piece in chunked(text, cuts)) + stream.finish()
    assert streamed == hook["intercept_output"](text, context)
