"""Evaluation gate: decisions both ways, held-out split, model side over HTTP, no self-capture."""
from __future__ import annotations

import pytest

import vt_middleware as vt
from synth_data import make_pairs
from vt_middleware.evolve.gate import (
    Contender, EvaluationGate, GateConfig, GateError, feedback_key, split_holdout,
)
from vt_middleware.runtime.hooks import LoadedHooks
from vt_middleware.synthesize.pipeline import synthesize_version
from vt_middleware.synthesize.versions import HookVersionStore

DAMAGING_HOOK = '''
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output.upper() + " !!!"
'''

PASS_THROUGH_HOOK = '''
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output
'''


def family_pairs(*families: str, n: int = 60):
    return [pair for pair, family in make_pairs(n, seed=3) if family in families]


def golden_rows(pairs):
    return [{"messages": [{"role": "user", "content": p.input_prompt},
                          {"role": "assistant", "content": p.fixed_output}]} for p in pairs]


def hooks_from_code(hooks_dir, code: str) -> LoadedHooks:
    store = HookVersionStore(hooks_dir)
    version = store.create_version(code, validation={"ok": True})["version"]
    return LoadedHooks.from_file(store.hook_path(version), version)


def test_split_holdout_is_deterministic_and_disjoint():
    pairs = family_pairs("preamble", "currency")
    train, held = split_holdout(pairs, 0.25, feedback_key)
    again_train, again_held = split_holdout(list(reversed(pairs)), 0.25, feedback_key)
    assert {p.pair_id for p in held} == {p.pair_id for p in again_held}
    assert not {p.pair_id for p in train} & {p.pair_id for p in held}
    assert len(train) + len(held) == len(pairs) and len(held) == round(len(pairs) * 0.25)
    assert split_holdout(pairs[:1], 0.25, feedback_key) == (pairs[:1], [])
    assert len(split_holdout(pairs[:2], 0.25, feedback_key)[1]) == 1


def test_gate_promotes_hooks_that_fix_held_out_defects(vt_env):
    pairs = family_pairs("preamble", "currency")
    train, held = split_holdout(pairs, 0.3, feedback_key)
    synthesis = synthesize_version(train, vt_env.hooks_dir)
    assert synthesis.rules, "synthesis should find the preamble/currency rules"
    hooks = LoadedHooks.from_file(synthesis.hook_path, synthesis.version)
    good = golden_rows(family_pairs("rating", "spaces")[:6])
    gate = EvaluationGate(function_name="review_summary")  # the rules' scope: good outputs really see them
    decision = gate.evaluate(Contender("candidate", None, hooks), Contender("incumbent", None, None),
                             golden_holdout=good, feedback_holdout=held)
    cand, inc = decision.metrics["candidate"], decision.metrics["incumbent"]
    assert decision.promote, decision.reason
    assert cand["exact_rate"] > inc["exact_rate"] == 0.0
    assert cand["fix_rate"] > 0.5 and cand["preserve_rate"] == 1.0
    assert decision.metrics["delta"] >= GateConfig().margin
    assert "beats" in decision.reason


def test_gate_rejects_hooks_that_damage_good_outputs(vt_env):
    held = family_pairs("preamble")[:4]
    damaging = hooks_from_code(vt_env.hooks_dir, DAMAGING_HOOK)
    decision = EvaluationGate().evaluate(Contender("candidate", None, damaging), Contender("incumbent", None, None),
                                         golden_holdout=golden_rows(held), feedback_holdout=held)
    assert not decision.promote
    assert "keeping the incumbent" in decision.reason
    assert decision.metrics["candidate"]["preserve_rate"] == 0.0


def test_gate_rejects_a_candidate_not_better_by_the_margin(vt_env):
    held = family_pairs("currency")[:4]
    same = hooks_from_code(vt_env.hooks_dir, PASS_THROUGH_HOOK)
    decision = EvaluationGate(config=GateConfig(margin=0.05)).evaluate(
        Contender("candidate", None, same), Contender("incumbent", None, None), feedback_holdout=held)
    assert not decision.promote
    assert "by the margin 0.05" in decision.reason and decision.metrics["delta"] == pytest.approx(0.0, abs=1e-6)


def test_gate_without_held_out_data_keeps_incumbent(vt_env):
    hooks = hooks_from_code(vt_env.hooks_dir, PASS_THROUGH_HOOK)
    decision = EvaluationGate().evaluate(Contender("candidate", None, hooks), Contender("incumbent", None, None))
    assert not decision.promote and "no held-out data" in decision.reason


def test_model_side_generates_over_http_without_capturing_its_calls(vt_env, local_server, openai_client):
    from vt_middleware.store.executions import get_store
    from vt_middleware.train.local_models import TINY_ID

    local_server.backend.alias("vt-gate-candidate", TINY_ID)
    wrapped = vt.wrap(openai_client, function_name="gate_probe")
    held = family_pairs("preamble")[:3]
    gate = EvaluationGate(client=wrapped, config=GateConfig(max_tokens=8))
    decision = gate.evaluate(Contender("candidate", "vt-gate-candidate", None), Contender("incumbent", TINY_ID, None),
                             golden_holdout=golden_rows(held), feedback_holdout=held)
    cand, inc = decision.metrics["candidate"], decision.metrics["incumbent"]
    assert decision.metrics["model_evaluated"] is True
    assert 0.0 < inc["similarity"] <= 1.0
    # same weights behind both ids, greedy decoding: identical answers, so no promotion
    assert cand["similarity"] == pytest.approx(inc["similarity"], abs=1e-6)
    assert not decision.promote
    vt.flush()
    assert get_store().count("gate_probe") == 0
    # control: the same wrapped client outside the gate is captured
    wrapped.chat.completions.create(model=TINY_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    vt.flush()
    assert get_store().count("gate_probe") == 1


def test_unreachable_model_server_is_a_clear_gate_error(vt_env):
    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-x", max_retries=0, timeout=2)
    held = family_pairs("preamble")[:2]
    with pytest.raises(GateError, match="unreachable"):
        EvaluationGate(client=client).evaluate(Contender("candidate", "m2", None), Contender("incumbent", "m1", None),
                                               feedback_holdout=held)
