"""Diff analysis, rule synthesis (generalisation, thresholds), conflicts, bad input."""

from __future__ import annotations

import random

import pytest

from scripted_backend import ScriptedBackend
from synth_data import FAMILIES, good_outputs, make_pairs
from synth_families import load_hook
from vt_middleware.errors import DataError
from vt_middleware.synthesize import (
    FeedbackDiffAnalyzer,
    RuleSetSynthesizer,
    resolve_conflicts,
)
from vt_middleware.synthesize.rules import eval_context
from vt_middleware.synthesize.slots import learn_input_slot
from vt_middleware.types import FeedbackPair, Rule


@pytest.fixture(scope="session")
def analyzer():
    return FeedbackDiffAnalyzer(embedding_model="minilm")


@pytest.fixture(scope="session")
def split(analyzer):
    data = make_pairs(140, seed=3)
    train = [p for p, _ in data[:70]]
    return analyzer.analyze_many(train), data[70:]


load = load_hook


def test_analyze_reports_distance_similarity_and_word_segments(analyzer):
    pair = FeedbackPair("q", "It costs USD 20 today.", "It costs $20 today.")
    diff = analyzer.analyze(pair)
    assert diff["edit_distance"] == 4  # "USD " -> "$"
    assert 0.5 < diff["similarity_score"] < 1.0
    ops = [(s["op"], s["bad"], s["fixed"]) for s in diff["segments"]]
    assert ("replace", "USD ", "$") in ops
    assert "".join(s["fixed"] for s in diff["segments"]) == pair.fixed_output
    assert "".join(s["bad"] for s in diff["segments"]) == pair.bad_output


def test_similarity_is_semantic_not_character_overlap(analyzer):
    same_meaning = analyzer.analyze(FeedbackPair("q", "The film was great.", "The movie was excellent."))
    anagram = analyzer.analyze(FeedbackPair("q", "dog bites man", "man bites dog extremely"))
    unrelated = analyzer.analyze(FeedbackPair("q", "The film was great.", "Tax forms are due in April."))
    assert same_meaning["similarity_score"] > unrelated["similarity_score"] + 0.3
    assert anagram["similarity_score"] < 1.0


def test_rules_fix_unseen_outputs_of_every_family(split):
    diffs, held_out = split
    rules = RuleSetSynthesizer().synthesize(diffs)
    hook = load(rules)
    fixed = {family: 0 for family in FAMILIES}
    for pair, family in held_out:
        out = hook["intercept_output"](
            pair.bad_output, eval_context({"context": pair.context, "input_prompt": pair.input_prompt})
        )
        fixed[family] += out == pair.fixed_output
    assert all(count >= 9 for count in fixed.values()), fixed
    kinds = {r.kind for r in rules}
    assert {"replace", "append", "normalize", "prompt"} <= kinds
    rating = next(r for r in rules if r.kind == "append" and "Rating" in r.description)
    slot = rating.action["parts"][1]
    assert slot[0] == "input_match" and "stars" in slot[1]  # the slot is read from the input


def test_rules_leave_good_outputs_alone(split):
    diffs, _ = split
    hook = load(RuleSetSynthesizer().synthesize(diffs))
    goods = good_outputs(200, seed=11)
    changed = sum(hook["intercept_output"](text, ctx) != text for text, ctx in goods)
    assert changed == 0


def test_each_rule_records_support_confidence_and_sources(split):
    diffs, _ = split
    rules = RuleSetSynthesizer(min_support=2).synthesize(diffs)
    ids = {d["pair_id"] for d in diffs}
    for rule in rules:
        assert rule.support >= 2 and rule.confidence >= 0.8
        assert len(rule.sources) == rule.support and set(rule.sources) <= ids


def test_weak_evidence_is_not_emitted(analyzer):
    one = [FeedbackPair("q", "It costs USD 20.", "It costs $20.", pair_id="a")]
    assert [
        r for r in RuleSetSynthesizer(min_support=2).synthesize(analyzer.analyze_many(one)) if r.kind == "replace"
    ] == []
    # the same edit twice, but two good outputs keep "USD ": low confidence -> dropped
    pairs = [
        *one,
        FeedbackPair("q", "Pay USD 5 now.", "Pay $5 now.", pair_id="b"),
        FeedbackPair("q", "Fee: USD 7.", "Fee: USD 7.", pair_id="c"),
        FeedbackPair("q", "Tax: USD 9.", "Tax: USD 9.", pair_id="d"),
    ]
    synth = RuleSetSynthesizer(min_support=2, min_confidence=0.8)
    assert [r for r in synth.synthesize(analyzer.analyze_many(pairs)) if r.kind == "replace"] == []
    assert any(s["support"] == 2 and s["harm"] == 2 for s in synth.last_scores.values())


def test_synthesis_is_deterministic(split):
    diffs, _ = split
    first = [r.to_dict() for r in RuleSetSynthesizer().synthesize(diffs)]
    second = [r.to_dict() for r in RuleSetSynthesizer().synthesize(list(diffs))]
    assert first == second


def _rule(rule_id, pattern, text, support, kind="replace"):
    parts = [["lit", text, ""]]
    return Rule(
        rule_id,
        f"{rule_id}",
        {"scope": None, "pattern": pattern, "anchor": ""},
        {"parts": parts},
        priority=50,
        sources=[f"p{i}-{rule_id}" for i in range(support)],
        kind=kind,
        support=support,
    )


def test_conflicts_same_trigger_resolved_by_support_then_recency():
    strong, weak = _rule("a", "USD ", "$", 5), _rule("b", "USD ", "US$", 2)
    kept, report = resolve_conflicts([weak, strong])
    assert [r.rule_id for r in kept] == ["a"]
    assert report.dropped[0]["rule_id"] == "b" and report.dropped[0]["winner"] == "a"
    older, newer = _rule("c", "x", "y", 3), _rule("d", "x", "z", 3)
    recency = {s: "2026-01-01" for s in older.sources} | {s: "2026-06-01" for s in newer.sources}
    kept, _ = resolve_conflicts([older, newer], recency)
    assert [r.rule_id for r in kept] == ["d"]
    kept2, _ = resolve_conflicts([newer, older], recency)
    assert [r.rule_id for r in kept2] == ["d"]  # order of input does not matter


def test_conflicts_merge_duplicates_and_drop_undoing_rules():
    a, b = _rule("a", "USD ", "$", 3), _rule("b", "USD ", "$", 2)
    kept, report = resolve_conflicts([a, b])
    assert len(kept) == 1 and kept[0].support == 5 and report.merged[0]["rule_id"] == "b"
    forward, backward = _rule("f", "colour", "color", 4), _rule("g", "color", "colour", 2)
    kept, report = resolve_conflicts([forward, backward])
    assert [r.rule_id for r in kept] == ["f"] and report.dropped[0]["rule_id"] == "g"
    add = Rule(
        "add",
        "add disclaimer",
        {"scope": None, "pattern": "Not advice"},
        {"parts": [["lit", "Not advice.", ""]], "separator": " "},
        priority=20,
        kind="append",
        sources=["x1", "x2", "x3"],
        support=3,
    )
    remove = _rule("rm", "Not advice\\.", "", 2, kind="remove")
    kept, report = resolve_conflicts([add, remove])
    assert [r.rule_id for r in kept] == ["add"] and report.dropped[0]["rule_id"] == "rm"


def test_bad_input_has_defined_results(analyzer):
    assert RuleSetSynthesizer().synthesize([]) == []
    assert analyzer.analyze_many([]) == []
    same = analyzer.analyze(FeedbackPair("q", "fine", "fine"))
    assert same["identical"] and same["edit_distance"] == 0 and same["similarity_score"] == 1.0
    assert all(s["op"] == "equal" for s in same["segments"])
    empty = analyzer.analyze(FeedbackPair("", "", ""))
    assert empty["edit_distance"] == 0 and empty["segments"] == []
    odd_context = FeedbackPair("q", "a  b", "a b", context=["not", "a", "dict"])  # type: ignore[arg-type]
    assert analyzer.analyze(odd_context)["context"] == {}
    with pytest.raises(DataError, match="bad_output"):
        analyzer.analyze(FeedbackPair("q", None, "x"))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="FeedbackPair"):
        analyzer.analyze({"bad_output": "x"})  # type: ignore[arg-type]
    with pytest.raises(DataError, match="analyze"):
        RuleSetSynthesizer().synthesize([{"bad_output": "x"}])


def test_huge_texts_are_analysed_and_synthesised(analyzer):
    body = " ".join(f"word{i}" for i in range(120_000))
    pairs = [FeedbackPair("q", body + f" USD {i}.", body + f" ${i}.", pair_id=f"h{i}") for i in range(2)]
    diffs = analyzer.analyze_many(pairs)
    assert diffs[0]["edit_distance"] == 4
    rules = RuleSetSynthesizer(prompt_rules=False).synthesize(diffs)
    assert any(r.kind == "replace" and r.support == 2 for r in rules)


# --- values copied from the call's input become slots ------------------------------------
def _rating_pairs(stars_values, seed=5):
    """Fixes append "Rating: N/5" with N from the prompt; other numbers (order ids, years)
    sit before N at varying positions, so neither "the first number" nor a constant works."""
    rng = random.Random(seed)
    pairs = []
    for i, stars in enumerate(stars_values):
        lead = " ".join(f"{rng.randint(2, 99)} times" for _ in range(rng.randint(0, 2)))
        prompt = f"Order {rng.randint(100, 999)}, used {lead} Summarise this review ({stars} stars): it is fine."
        body = f"It is fine, said after {rng.randint(2, 9)} weeks."
        pairs.append(
            FeedbackPair(prompt, body, f"{body}\n\nRating: {stars}/5", context={"function_name": "rv"}, pair_id=f"r{i}")
        )
    return pairs


def test_inserted_value_from_the_input_is_a_slot_not_a_constant(analyzer):
    rules = RuleSetSynthesizer().synthesize(analyzer.analyze_many(_rating_pairs([1, 2, 4, 2, 1, 4])))
    rating = next(r for r in rules if r.kind == "append")
    assert rating.support == 6 and rating.confidence == 1.0
    hook = load(rules)
    for pair in _rating_pairs([3, 5, 3], seed=9):  # star values never seen in training
        out = hook["intercept_output"](pair.bad_output, {"function_name": "rv", "user_input": pair.input_prompt})
        assert out == pair.fixed_output
    # the hook reads the value from a chat call's last user message as well
    messages = [{"role": "user", "content": "Summarise this review (5 stars): ok"}]
    assert hook["intercept_output"]("Ok.", {"function_name": "rv", "messages": messages}) == "Ok.\n\nRating: 5/5"
    # no value in the input: the rule leaves the output alone rather than guess one
    assert hook["intercept_output"]("Ok.", {"function_name": "rv", "user_input": "no rating here"}) == "Ok."


def test_present_line_with_a_wrong_value_is_corrected_and_a_right_one_kept(analyzer):
    hook = load(RuleSetSynthesizer().synthesize(analyzer.analyze_many(_rating_pairs([1, 2, 4, 2]))))
    context = {"function_name": "rv", "user_input": "Summarise this review (3 stars): fine"}
    assert hook["intercept_output"]("Fine.\n\nRating: 5/5", context) == "Fine.\n\nRating: 3/5"
    assert hook["intercept_output"]("Fine.\n\nRating: 3/5", context) == "Fine.\n\nRating: 3/5"


def test_input_slot_needs_pairs_that_agree(analyzer):
    # the appended number is unrelated to the input: no input slot is learned
    rng = random.Random(2)
    pairs = [
        FeedbackPair(f"Review ({rng.randint(1, 5)} stars): ok", "Ok.", f"Ok.\n\nScore: {n}/9", pair_id=f"u{i}")
        for i, n in enumerate([7, 3, 8, 1, 6, 2])
    ]
    rules = RuleSetSynthesizer().synthesize(analyzer.analyze_many(pairs))
    assert not any(p[0] == "input_match" for r in rules for p in r.action.get("parts", []))
    assert learn_input_slot(["3", "3"], ["a (3 stars)", "b (3 stars)"]) is None  # constant, not a slot
    assert learn_input_slot(["3", "4"], ["(3 stars)", "rated 4 of five"]) is None  # no shared context
    slot = learn_input_slot(["3", "4", "2"], ["x (3 stars)", "yy (4 stars) and 9 stars?", "(2 stars)"])
    assert slot is not None and slot.part[0] == "input_match" and slot.agreement == 1.0


def test_words_from_the_input_become_slots_in_additions_and_replacements(analyzer):
    names = ["blender", "kettle", "lamp", "chair", "toaster"]
    pairs = []
    for i, name in enumerate(names):
        prompt = f"Write a blurb. Product name: {name}. Tone: calm."
        pairs.append(
            FeedbackPair(
                prompt,
                "The product is calm and useful.",
                f"The {name} is calm and useful.\n\nSKU: {name}",
                context={"function_name": "blurb"},
                pair_id=f"w{i}",
            )
        )
    rules = RuleSetSynthesizer(prompt_rules=False).synthesize(analyzer.analyze_many(pairs))
    hook = load(rules)
    context = {"function_name": "blurb", "user_input": "Write a blurb. Product name: heater. Tone: calm."}
    out = hook["intercept_output"]("The product is calm and useful.", context)
    assert out == "The heater is calm and useful.\n\nSKU: heater"
    assert {"replace", "append"} <= {r.kind for r in rules}


# --- optional LLM-assisted synthesis (OpenAI SDK over HTTP against the local server) ------
UTILIZE = [
    ("Please utilize the form.", "Please use the form."),
    ("She utilizes two tools.", "She uses two tools."),
    ("We utilized it daily.", "We used it daily."),
]


def _llm_synthesize(analyzer, tmp_path, backend=None, model="scripted", base_url=None):
    from openai import OpenAI

    from vt_middleware.server.runner import LocalServer
    from vt_middleware.synthesize import LLMRuleProposer

    pairs = [FeedbackPair(f"Rewrite: {bad}", bad, fixed, pair_id=f"z{i}") for i, (bad, fixed) in enumerate(UTILIZE)]
    diffs = analyzer.analyze_many(pairs)
    server = (
        LocalServer(backend=backend, data_dir=tmp_path / "server", model=model).start() if base_url is None else None
    )
    try:
        client = OpenAI(base_url=base_url or server.base_url, api_key="local", max_retries=0, timeout=60)
        synth = RuleSetSynthesizer(prompt_rules=False, llm=LLMRuleProposer(client, model))
        return synth, synth.synthesize(diffs), diffs
    finally:
        if server is not None:
            server.stop()


def test_llm_proposals_are_accepted_only_when_the_pairs_back_them(analyzer, tmp_path):
    answer = (
        'Here you go:\n```json\n{"rules": ['
        '{"kind": "replace", "find": "utiliz", "replace": "us"},'
        '{"kind": "remove", "find": "the "},'
        '{"kind": "replace", "find": "\\"\\"\\"); __import__(\'os\').system(\'x\') #", "replace": "y"},'
        '{"kind": "exec", "find": "a"}]}\n```'
    )
    backend = ScriptedBackend(lambda messages: answer)
    synth, rules, diffs = _llm_synthesize(analyzer, tmp_path, backend)
    assert RuleSetSynthesizer(prompt_rules=False).synthesize(diffs) == []  # heuristics alone: one edit each
    assert len(backend.requests) == 1 and "utilizes" in backend.requests[0][-1]["content"]
    assert [(r.kind, r.support, r.confidence) for r in rules] == [("replace", 3, 1.0)]
    assert "proposed by an LLM" in rules[0].description
    hook = load(rules)
    assert hook["intercept_output"]("They utilize maps.", {}) == "They use maps."
    # the harmful and the code-like proposals were scored and dropped, never emitted
    llm_scores = [s for rule_id, s in synth.last_scores.items() if rule_id.startswith("llm-")]
    assert len(llm_scores) == 3 and sum(s["support"] < 2 for s in llm_scores) == 2


def test_llm_answers_that_are_not_rules_leave_the_heuristics_alone(analyzer, tmp_path):
    from vt_middleware.train.local_models import TINY_ID

    _, rules, diffs = _llm_synthesize(analyzer, tmp_path, model=TINY_ID)  # a tiny random model: gibberish
    assert rules == RuleSetSynthesizer(prompt_rules=False).synthesize(diffs) == []
    _, rules, _ = _llm_synthesize(analyzer, tmp_path, base_url="http://127.0.0.1:9/v1")  # unreachable
    assert rules == []


# --- verified induction: mixtures, composition, self-estimate, negatives, bad input --------
def _fixed_share(rules, items):
    hook = load(rules)
    fixed = [
        hook["intercept_output"](p.bad_output, eval_context({"context": p.context, "input_prompt": p.input_prompt}))
        == p.fixed_output
        for p, _ in items
    ]
    return sum(fixed) / len(fixed), hook


def test_mixtures_of_defects_are_fixed_exactly_on_held_out_answers():
    from synth_families import make_mixed, mixed_goods

    data = make_mixed(200, seed=31)
    synth = RuleSetSynthesizer(prompt_rules=False)
    rules = synth.synthesize(
        FeedbackDiffAnalyzer().analyze_many([p for p, _ in data[:120]]), negatives=mixed_goods(40, seed=32)
    )
    share, hook = _fixed_share(rules, data[120:])
    assert share >= 0.9, share
    assert all(hook["intercept_output"](text, context) == text for text, context in mixed_goods(80, seed=33))
    estimate = synth.last_estimate
    assert estimate["folds"] == 5 and abs(estimate["fix_rate"] - share) <= 0.1 and estimate["harm_rate"] == 0.0
    assert estimate["training"]["exact_fixed"] == 120 and estimate["training"]["negative_harm_rate"] == 0.0
    kinds = {r.kind for r in rules}
    assert {"line_insert", "line_remove", "append", "replace", "normalize"} <= kinds
    typed = {p[0] for r in rules for p in r.action.get("parts", [])}
    assert {"num", "date", "time", "input_match"} <= typed  # notations and values from the input


def test_rules_learned_from_single_defects_compose_on_answers_with_several():
    from synth_families import make_mixed

    single = make_mixed(160, seed=21, max_defects=1)
    rules = RuleSetSynthesizer(prompt_rules=False, folds=0).synthesize(
        FeedbackDiffAnalyzer().analyze_many([p for p, _ in single])
    )
    several = [(p, f) for p, f in make_mixed(200, seed=22) if len(f) >= 3]
    share, _ = _fixed_share(rules, several)
    assert share >= 0.85, share


def test_manifest_records_the_self_estimate_and_vt_hooks_show_prints_it(vt_env, tmp_path):
    from typer.testing import CliRunner

    from synth_families import make_mixed, mixed_goods
    from vt_middleware.cli import app
    from vt_middleware.synthesize import HookVersionStore, synthesize_version

    data = make_mixed(60, seed=41)
    result = synthesize_version([p for p, _ in data], vt_env.hooks_dir, negatives=mixed_goods(20, seed=42))
    manifest = HookVersionStore(vt_env.hooks_dir).manifest(result.version)
    estimate = manifest["estimate"]
    assert estimate["folds"] == 5 and 0.0 <= estimate["fix_rate"] <= 1.0 and estimate["negative_harm_rate"] == 0.0
    assert set(estimate["per_rule"]) & {r.rule_id for r in result.rules}
    out = CliRunner().invoke(
        app,
        [
            "--store-path",
            str(vt_env.store_path),
            "--hooks-dir",
            str(vt_env.hooks_dir),
            "--state-dir",
            str(vt_env.state_dir),
            "hooks",
            "show",
            result.version,
            "--no-code",
        ],
    )
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "self-estimate (5-fold cross-validation on" in text and "held-out exact-fix rate" in text


def test_rules_changing_uncorrected_outputs_are_dropped():
    pairs = [
        FeedbackPair("q", f"The colour is {c}.", f"The color is {c}.", pair_id=f"c{i}")
        for i, c in enumerate(["red", "blue", "green"])
    ]
    diffs = FeedbackDiffAnalyzer().analyze_many(pairs)
    negatives = ["The colour is a choice.", "The colour is off.", "Fine as is.", ("No change here.", {})]
    strict = RuleSetSynthesizer(prompt_rules=False, max_negative_share=0.25)
    assert not [r for r in strict.synthesize(diffs, negatives=negatives) if "colour" in r.description]
    dropped = [s for s in strict.last_scores.values() if s.get("dropped") == "changes too many uncorrected outputs"]
    assert dropped and all(s["harm_negative"] == 2 for s in dropped)
    lenient = RuleSetSynthesizer(prompt_rules=False, max_negative_share=1.0)
    assert [r for r in lenient.synthesize(diffs, negatives=negatives) if "colour" in r.description]
    assert lenient.last_estimate["training"]["negative_harm_rate"] == 0.5
    with pytest.raises(DataError, match="negatives"):
        strict.synthesize(diffs, negatives=[3])


def test_identical_contradictory_and_single_pairs_have_defined_results():
    analyzer = FeedbackDiffAnalyzer()
    synth = RuleSetSynthesizer(prompt_rules=False)
    same = [FeedbackPair("q", f"Fine {i}.", f"Fine {i}.", pair_id=f"s{i}") for i in range(4)]
    assert synth.synthesize(analyzer.analyze_many(same)) == []
    assert synth.last_estimate["training"]["pairs"] == 0
    contradictory = [FeedbackPair("q", f"It is grey {i}.", f"It is gray {i}.", pair_id=f"a{i}") for i in range(3)]
    contradictory += [FeedbackPair("q", f"It is gray {i}.", f"It is grey {i}.", pair_id=f"b{i}") for i in range(3)]
    assert synth.synthesize(analyzer.analyze_many(contradictory)) == []  # each rule would undo the other's fixes
    one = [FeedbackPair("q", "It costs USD 20.", "It costs $20.", pair_id="one")]
    assert synth.synthesize(analyzer.analyze_many(one)) == []
    assert synth.last_estimate["training"] == {
        "pairs": 1,
        "exact_fixed": 0,
        "rules": 0,
        "negatives": 0,
        "negative_harm_rate": None,
    }


@pytest.mark.slow
def test_ten_thousand_pairs_are_synthesised_with_a_bounded_self_estimate():
    from synth_families import make_mixed

    data = make_mixed(10_000, seed=51, families=("currency", "weight", "rating", "internal"), max_defects=2)
    synth = RuleSetSynthesizer(prompt_rules=False)
    rules = synth.synthesize(FeedbackDiffAnalyzer().analyze_many([p for p, _ in data]))
    training = synth.last_estimate["training"]
    assert training["pairs"] == 10_000 and training["exact_fixed"] >= 9_900 and len(rules) <= 10
    assert synth.last_estimate["sampled_pairs"] == 400  # the k-fold estimate runs on a fixed sample


def test_uncorrected_captured_calls_are_the_negatives(vt_env):
    import vt_middleware as vt
    from vt_middleware.synthesize.negatives import uncorrected_outputs

    @vt.track(function_name="shop")
    def answer(question: str) -> str:
        return f"The colour of {question} is red."

    run_ids = []
    for item in ("mug", "lamp", "tent"):
        answer(item)
        run_ids.append(vt.last_run_id())
    vt.flush(10)
    pair = vt.feedback(run_ids[0], fixed_output="The color of mug is red.")
    negatives = uncorrected_outputs("shop", [pair])
    assert sorted(text for text, _ in negatives) == ["The colour of lamp is red.", "The colour of tent is red."]
    assert all(context["function_name"] == "shop" and "question" in context["user_input"] for _, context in negatives)
