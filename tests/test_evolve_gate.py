"""Evaluation gate: decisions both ways, held-out split, model side over HTTP, no self-capture."""

from __future__ import annotations

import pytest

import vt_middleware as vt
from synth_data import make_pairs
from vt_middleware.evolve.gate import (
    Contender,
    EvaluationGate,
    GateConfig,
    GateError,
    feedback_key,
    split_holdout,
)
from vt_middleware.runtime.hooks import LoadedHooks
from vt_middleware.synthesize.pipeline import synthesize_version
from vt_middleware.synthesize.versions import HookVersionStore
from vt_middleware.types import FeedbackPair

DAMAGING_HOOK = """
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output.upper() + " !!!"
"""

PASS_THROUGH_HOOK = """
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output
"""


def family_pairs(*families: str, n: int = 60):
    return [pair for pair, family in make_pairs(n, seed=3) if family in families]


def golden_rows(pairs):
    return [
        {"messages": [{"role": "user", "content": p.input_prompt}, {"role": "assistant", "content": p.fixed_output}]}
        for p in pairs
    ]


def hooks_from_code(hooks_dir, code: str) -> LoadedHooks:
    store = HookVersionStore(hooks_dir)
    version = store.create_version(code, validation={"ok": True})["version"]
    return LoadedHooks.from_file(store.hook_path(version), version)


def test_split_holdout_is_deterministic_and_disjoint():
    pairs = family_pairs("preamble", "currency")
    train, held = split_holdout(pairs, 0.25, feedback_key)
    _again_train, again_held = split_holdout(list(reversed(pairs)), 0.25, feedback_key)
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
    decision = EvaluationGate().evaluate(
        Contender("candidate", None, hooks),
        Contender("incumbent", None, None),
        golden_holdout=good,
        feedback_holdout=held,
        function_name="review_summary",
    )  # the rules' scope: good outputs see them
    cand, inc = decision.metrics["candidate"], decision.metrics["incumbent"]
    assert decision.promote, decision.reason
    assert cand["exact_rate"] > inc["exact_rate"] == 0.0
    assert cand["fix_rate"] > 0.5 and cand["preserve_rate"] == 1.0
    assert decision.metrics["delta"] >= GateConfig().margin
    assert "beats" in decision.reason and decision.parts == ["hooks"]
    assert set(decision.metrics["rows"]) == {"incumbent", "hooks"}  # no new model: no model rows


def test_gate_rejects_hooks_that_damage_good_outputs(vt_env):
    held = family_pairs("preamble")[:4]
    damaging = hooks_from_code(vt_env.hooks_dir, DAMAGING_HOOK)
    decision = EvaluationGate().evaluate(
        Contender("candidate", None, damaging),
        Contender("incumbent", None, None),
        golden_holdout=golden_rows(held),
        feedback_holdout=held,
    )
    assert not decision.promote
    assert "keeping the incumbent" in decision.reason
    assert decision.metrics["candidate"]["preserve_rate"] == 0.0


def test_gate_rejects_a_candidate_not_better_by_the_margin(vt_env):
    held = family_pairs("currency")[:4]
    same = hooks_from_code(vt_env.hooks_dir, PASS_THROUGH_HOOK)
    decision = EvaluationGate(config=GateConfig(margin=0.05)).evaluate(
        Contender("candidate", None, same), Contender("incumbent", None, None), feedback_holdout=held
    )
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
    decision = gate.evaluate(
        Contender("candidate", "vt-gate-candidate", None),
        Contender("incumbent", TINY_ID, None),
        golden_holdout=golden_rows(held),
        feedback_holdout=held,
    )
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
        EvaluationGate(client=client).evaluate(
            Contender("candidate", "m2", None), Contender("incumbent", "m1", None), feedback_holdout=held
        )


# --- the four-row ablation: which parts of a candidate are promoted --------------------------
STRIP_FILLER_HOOK = """
def intercept_prompt(user_input, context):
    return user_input


def intercept_output(model_output, context):
    return model_output[len("Sure! "):] if model_output.startswith("Sure! ") else model_output
"""
ISSUES = {
    "blender": "loud motor",
    "kettle": "short cable",
    "lamp": "weak light",
    "chair": "wobbly legs",
    "toaster": "uneven toasting",
    "desk": "sharp corners",
}


def _review(messages) -> tuple:
    text = messages[-1]["content"]  # "Review of the <product> (<n> stars): it is <quality>."
    product = text.split("the ", 1)[1].split(" (", 1)[0]
    return product, text.split("it is ", 1)[1].rstrip("."), "(5 stars)" in text


def base_model(messages) -> str:
    """Opens with filler on critical reviews and never names the complaint."""
    product, quality, happy = _review(messages)
    return f"The {product} is {quality}." if happy else f"Sure! The {product} is {quality}."


def tuned_model(messages) -> str:
    """Learned to name the complaint (no text rule can: it is not in the request); keeps the filler."""
    product, quality, happy = _review(messages)
    return base_model(messages) if happy else f"Sure! The {product} is {quality}. Main issue: {ISSUES[product]}."


def tuned_but_broken(messages) -> str:
    return "I am sorry, I cannot summarise reviews."


def request(product: str, stars: int) -> list:
    return [
        {"role": "system", "content": "Summarise reviews."},
        {"role": "user", "content": f"Review of the {product} ({stars} stars): it is sturdy."},
    ]


def corrections():
    """Held-out corrections of critical reviews: no filler, and the complaint named."""
    pairs = []
    for product, issue in ISSUES.items():
        messages = request(product, 2)
        pairs.append(
            FeedbackPair(
                messages[-1]["content"],
                base_model(messages),
                f"The {product} is sturdy. Main issue: {issue}.",
                context={"function_name": "review_summary", "messages": messages},
            )
        )
    return pairs


def accepted():
    """Held-out answers to happy reviews nobody corrected (the hooks and a new model must keep them)."""
    return [{"messages": [*request(p, 5), {"role": "assistant", "content": base_model(request(p, 5))}]} for p in ISSUES]


@pytest.fixture
def scripted_server(tmp_path):
    from openai import OpenAI

    from scripted_backend import ScriptedBackend
    from vt_middleware.server.runner import LocalServer

    backend = ScriptedBackend(
        base_model, model="base", others={"ft:tuned": tuned_model, "ft:same": base_model, "ft:broken": tuned_but_broken}
    )
    server = LocalServer(backend, data_dir=tmp_path / "server").start()
    client = OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0)
    yield client, backend
    client.close()
    server.stop()


def _ablate(client, hooks, model: str, **config):
    gate = EvaluationGate(client=client, config=GateConfig(**config))
    return gate.evaluate(
        Contender("candidate", model, hooks),
        Contender("incumbent", "base", None),
        golden_holdout=accepted(),
        feedback_holdout=corrections(),
        function_name="review_summary",
    )


def test_ablation_promotes_a_model_that_adds_to_the_new_hooks(vt_env, scripted_server):
    client, backend = scripted_server
    hooks = hooks_from_code(vt_env.hooks_dir, STRIP_FILLER_HOOK)
    decision = _ablate(client, hooks, "ft:tuned")
    rows = decision.metrics["rows"]
    assert list(rows) == ["incumbent", "hooks", "model", "both"]
    assert [rows[n]["model"] for n in rows] == ["base", "base", "ft:tuned", "ft:tuned"]
    assert [rows[n]["hook_version"] for n in rows] == [None, hooks.version, None, hooks.version]
    # each part helps on the corrections; together they reproduce them
    inc, hook_row, model_row, both = (rows[n]["similarity_corrected"] for n in rows)
    assert inc < hook_row < both and inc < model_row < both and both == pytest.approx(1.0, abs=1e-5)
    assert all(rows[n]["similarity_accepted"] == pytest.approx(1.0, abs=1e-5) for n in rows)
    assert decision.promote and decision.parts == ["model", "hooks"] and decision.metrics["chosen"] == "both"
    assert decision.promote_model and decision.promote_hooks
    assert decision.to_dict()["parts"] == ["model", "hooks"]
    # answers were generated once per (model, request): rows sharing a model reuse them
    assert len(backend.params) == 2 * (len(ISSUES) + len(ISSUES))


def test_ablation_keeps_the_base_model_when_the_new_one_adds_nothing(vt_env, scripted_server):
    client, _ = scripted_server
    hooks = hooks_from_code(vt_env.hooks_dir, STRIP_FILLER_HOOK)
    decision = _ablate(client, hooks, "ft:same")
    rows = decision.metrics["rows"]
    assert rows["model"]["score"] == pytest.approx(rows["incumbent"]["score"], abs=1e-6)
    assert rows["both"]["score"] == pytest.approx(rows["hooks"]["score"], abs=1e-6)
    assert decision.parts == ["hooks"] and not decision.promote_model
    assert "new model only: score" in decision.reason and "not better than the incumbent" in decision.reason
    assert "adds +0.0000 to the new hooks" in decision.reason


def test_ablation_promotes_only_the_hooks_when_the_new_model_is_worse(vt_env, scripted_server):
    client, _ = scripted_server
    hooks = hooks_from_code(vt_env.hooks_dir, STRIP_FILLER_HOOK)
    decision = _ablate(client, hooks, "ft:broken")
    rows = decision.metrics["rows"]
    assert rows["model"]["score"] < rows["incumbent"]["score"] and rows["both"]["score"] < rows["hooks"]["score"]
    assert decision.parts == ["hooks"]


def test_ablation_of_a_new_model_alone(vt_env, scripted_server):
    client, _ = scripted_server
    decision = _ablate(client, None, "ft:tuned")
    assert list(decision.metrics["rows"]) == ["incumbent", "model"]
    assert decision.parts == ["model"]
    worse = _ablate(client, None, "ft:broken")
    assert not worse.promote and worse.parts == [] and "keeping the incumbent" in worse.reason


def _row(score: float, preserve: float = 1.0) -> dict:
    return {"score": score, "preserve_rate": preserve}


@pytest.mark.parametrize(
    "rows, chosen, words",
    [
        # the model does not beat the incumbent alone but adds the margin to the hooks: both
        ({"hooks": _row(0.80), "model": _row(0.705), "both": _row(0.85)}, "both", "new model only: score 0.7050"),
        # the model beats the incumbent alone, yet together they are no better than the hooks: hooks (best row)
        ({"hooks": _row(0.80), "model": _row(0.75), "both": _row(0.80)}, "hooks", "new model only: score 0.7500 beats"),
        # the model adds less than the margin to the hooks and is no better alone: hooks
        ({"hooks": _row(0.80), "model": _row(0.70), "both": _row(0.805)}, "hooks", "adds +0.0050 to the new hooks"),
        # hooks that damage good answers are never promoted, not even with a model that helps
        ({"hooks": _row(0.90, 0.5), "model": _row(0.78), "both": _row(0.95, 0.5)}, "model", "change 50% of held-out"),
        ({"hooks": _row(0.70), "model": _row(0.705)}, None, "keeping the incumbent"),
    ],
)
def test_decision_rules(rows, chosen, words):
    from vt_middleware.evolve.gate import decide

    picked, reason = decide({"incumbent": _row(0.70), **rows}, GateConfig(margin=0.01))
    assert picked == chosen, reason
    assert words in reason
