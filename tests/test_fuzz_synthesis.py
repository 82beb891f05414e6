"""Property-based tests over feedback pairs, rule synthesis and generated hooks (bounded, < 60 s)."""

from __future__ import annotations

import io
import json
import sys
import tokenize

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vt_middleware.runtime.hooks import import_hook_file
from vt_middleware.store.embedding import get_embedder
from vt_middleware.synthesize import FeedbackDiffAnalyzer, RuleSetSynthesizer, build_module
from vt_middleware.synthesize.llm import parse_proposals
from vt_middleware.types import FeedbackPair

# Text with code-like and quoting characters mixed into arbitrary unicode.
PIECES = st.sampled_from(
    [
        '"',
        "'",
        '"""',
        "'''",
        "\\",
        "\n",
        "#",
        "__import__('os')",
        "USD 5",
        "As an AI,",
        "{'a': 1,}",
        "\u201c",
        " ",
        "  ",
        "é",
        "🚀",
        ")",
        "(",
        "\x00",
        "\r",
    ]
)
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=8).map("".join)
PAIR = st.tuples(TEXT, TEXT, TEXT, st.sampled_from([None, "f", "g\n'x'", 7]))
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def analyzer():
    # The hashing embedder keeps 25 examples fast; the diff and mining code paths are the same.
    return FeedbackDiffAnalyzer(embedder=get_embedder("hash"))


def to_pairs(raw):
    pairs = []
    for i, (prompt, bad, fixed, name) in enumerate(raw):
        context = {"function_name": name} if name is not None else {}
        # repeat each pair's edit once so that rules reach min_support
        pairs.append(FeedbackPair(prompt, bad, fixed, context=context, pair_id=f"p{i}a"))
        pairs.append(FeedbackPair(prompt, bad + " x", fixed + " x", context=context, pair_id=f"p{i}b"))
    return pairs


def allowed_names():
    names = set()
    for tok in tokenize.generate_tokens(io.StringIO(build_module([]).code).readline):
        if tok.type == tokenize.NAME:
            names.add(tok.string)
    return names | {"True", "False", "None"}


ALLOWED = allowed_names()


@SETTINGS
@given(st.lists(PAIR, min_size=1, max_size=4))
def test_generated_hook_is_always_safe_and_loadable(analyzer, tmp_path_factory, raw):
    pairs = to_pairs(raw)
    rules = RuleSetSynthesizer(min_support=2, min_confidence=0.5).synthesize(analyzer.analyze_many(pairs))
    result = build_module(rules, version="v0001")
    assert result.ok, result.errors
    compile(result.code, "<hook>", "exec")
    feedback = {t for p in pairs for t in (p.input_prompt, p.bad_output, p.fixed_output) if len(t.strip()) >= 3}
    for tok in tokenize.generate_tokens(io.StringIO(result.code).readline):
        if tok.type == tokenize.NAME:
            assert tok.string in ALLOWED, tok.string  # no feedback word became code
        elif tok.type == tokenize.COMMENT:
            assert not any(text in tok.string for text in feedback)
    path = tmp_path_factory.mktemp("hook") / "hook.py"
    path.write_text(result.code, encoding="utf-8")
    module = import_hook_file(path, "fuzz")
    sys.modules.pop(module.__name__, None)
    for pair in pairs:
        assert isinstance(module.intercept_output(pair.bad_output, pair.context), str)
        assert isinstance(module.intercept_prompt(pair.input_prompt, pair.context), str)


@SETTINGS
@given(
    st.lists(PAIR, min_size=1, max_size=3),
    st.lists(TEXT, min_size=1, max_size=5),
    st.one_of(
        st.none(), st.integers(), st.lists(st.integers()), st.dictionaries(st.text(max_size=5), st.text(max_size=5))
    ),
)
def test_applying_hooks_never_raises_on_arbitrary_text(analyzer, raw, texts, context):
    pairs = to_pairs(raw)
    rules = RuleSetSynthesizer(min_support=2, min_confidence=0.5).synthesize(analyzer.analyze_many(pairs))
    namespace: dict = {}
    exec(compile(build_module(rules).code, "<hook>", "exec"), namespace)
    for text in texts:
        assert isinstance(namespace["intercept_output"](text, context), str)
        assert isinstance(namespace["intercept_prompt"](text, context), str)


@SETTINGS
@given(st.lists(PAIR, min_size=1, max_size=4))
def test_synthesis_is_deterministic(analyzer, raw):
    pairs = to_pairs(raw)
    first = [r.to_dict() for r in RuleSetSynthesizer().synthesize(analyzer.analyze_many(pairs))]
    second = [r.to_dict() for r in RuleSetSynthesizer().synthesize(analyzer.analyze_many(list(pairs)))]
    assert first == second
    assert (
        build_module([], version="v1", generated_at="t").code == build_module([], version="v1", generated_at="t").code
    )


@SETTINGS
@given(st.lists(st.tuples(TEXT, TEXT, st.integers(0, 99)), min_size=2, max_size=4), st.lists(TEXT, max_size=4))
def test_input_slots_from_arbitrary_prompts_are_safe(analyzer, raw, texts):
    # the fix appends a number that sits in the prompt next to arbitrary text: input slots are mined
    pairs = [
        FeedbackPair(f"{noise} ({n} stars) {noise}", bad, f"{bad} Rating: {n}/5", pair_id=f"s{i}")
        for i, (noise, bad, n) in enumerate(raw)
    ]
    rules = RuleSetSynthesizer(min_support=2, min_confidence=0.5).synthesize(analyzer.analyze_many(pairs))
    namespace: dict = {}
    exec(compile(build_module(rules).code, "<hook>", "exec"), namespace)
    for text in texts + [p.bad_output for p in pairs]:
        for context in ({"user_input": text}, {"messages": [{"role": "user", "content": text}]}, {"user_input": 5}):
            assert isinstance(namespace["intercept_output"](text, context), str)


RULE_ITEM = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["replace", "remove", "append", "prepend", "exec", 3]),
        "find": st.one_of(TEXT, st.integers()),
        "replace": TEXT,
        "text": TEXT,
        "separator": st.sampled_from(["\n\n", " ", "x", None]),
    }
)
LLM_ANSWER = st.one_of(TEXT, st.lists(RULE_ITEM, max_size=4).map(lambda rules: json.dumps({"rules": rules})))


class AnswerProposer:
    """Stands in for the model: turns a fixed answer text into proposals like LLMRuleProposer."""

    def __init__(self, answer):
        self.answer = answer

    def propose(self, diffs):
        return parse_proposals(self.answer, [d["pair_id"] for d in diffs])


@SETTINGS
@given(st.lists(PAIR, min_size=1, max_size=3), LLM_ANSWER)
def test_llm_answers_never_become_code(analyzer, raw, answer):
    pairs = to_pairs(raw)
    synth = RuleSetSynthesizer(min_support=2, min_confidence=0.5, llm=AnswerProposer(answer))
    rules = synth.synthesize(analyzer.analyze_many(pairs))
    result = build_module(rules, version="v0001")
    assert result.ok, result.errors
    for tok in tokenize.generate_tokens(io.StringIO(result.code).readline):
        if tok.type == tokenize.NAME:
            assert tok.string in ALLOWED, tok.string
    namespace: dict = {}
    exec(compile(result.code, "<hook>", "exec"), namespace)
    for pair in pairs:
        assert isinstance(namespace["intercept_output"](pair.bad_output, pair.context), str)
