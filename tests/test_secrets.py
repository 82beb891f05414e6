"""Secrets never stored: API keys (sk-..., sk-proj-...), bearer tokens, JWTs anywhere, PEM
private key blocks, card and phone numbers, AWS/Slack/GitHub/GCP keys, e-mails and a
configured custom pattern are planted in prompts, outputs (via a hook), function
arguments, error messages, feedback and evolution inputs; afterwards the raw bytes of
every artefact (LanceDB files, journal and its quarantine, golden/train JSONL, run records,
evolver status, generated hooks and manifests) and everything the dashboards' data layer returns are searched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List

import httpx
import openai
import pytest

import vt_middleware as vt
from vt_middleware.call_context import last_run_id
from vt_middleware.dashboards import data as dashboard_data
from vt_middleware.evolve.run_records import list_runs
from vt_middleware.pipeline import TrainingPipeline
from vt_middleware.runtime.hooks import LoadedHooks
from vt_middleware.store.lance import FixedLanceStore
from vt_middleware.train.local_models import TINY_ID
from vt_middleware.types import CallRecord, FeedbackPair

SECRETS: Dict[str, str] = {
    "openai key": "sk-A1b2C3d4E5f6G7h8I9j0K1l2M3n4",
    "project key": "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1",
    "bearer token": "eyJhbGciOiJIUzI1NiJ9.cGF5bG9hZA.c2lnbmF0dXJl",
    "email": "alice.liddell@wonderland.example",
    "custom pattern": "CUST-482913",
    "jwt anywhere": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.Tm90QVJlYWxTaWduYXR1cmU",
    "pem body": "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0",
    "card": "4111 1111 1111 1111",
    "card dashed": "5555-5555-5555-4444",
    "phone": "+1 415-555-0132",
    "aws key": "AKIAIOSFODNN7EXAMPLE",
    "slack token": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "github token": "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
    "gcp key": "AIzaSyD-1234567890abcdefghijklmnopqrstu",
}
SK, PROJ, TOKEN, EMAIL, CUSTOM, JWT, PEM_BODY, CARD, CARD2, PHONE, AWS, SLACK, GITHUB, GCP = SECRETS.values()
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\nq83vEi1LzY2Tvd0Xs8Q3PKj\n-----END RSA PRIVATE KEY-----"
SECRET_TEXT = (
    f"key {SK}, Authorization: Bearer {TOKEN}, mail {EMAIL}, customer {CUSTOM}, session {JWT}, "
    f"card {CARD} or {CARD2}, call {PHONE}, aws {AWS}, slack {SLACK}, gh {GITHUB}, gcp {GCP}\n{PEM}"
)

HOOK = f"""
def intercept_prompt(user_input, context):
    return user_input + " also {PROJ}"


def intercept_output(model_output, context):
    return model_output + " reach me at {EMAIL} with {SK} or {JWT}, card {CARD}"
"""


def leaks(paths: Iterable[Path]) -> List[str]:
    """``"<secret name> in <file>"`` for every planted secret found in any file's bytes."""
    found = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            blob = path.read_bytes()
            found += [f"{name} in {path}" for name, secret in SECRETS.items() if secret.encode() in blob]
    return found


def leaks_in(obj: object, where: str) -> List[str]:
    text = json.dumps(obj, default=lambda o: getattr(o, "__dict__", str(o)), ensure_ascii=False)
    return [f"{name} in {where}" for name, secret in SECRETS.items() if secret in text]


def _extractor():
    from vt_middleware.extractor import DensityBasedExtractor

    return DensityBasedExtractor(vt.get_store(), epsilon=0.3, top_k=50)


@pytest.fixture
def secret_env(vt_env, tmp_path):
    return vt.reset(**{**vt_env.model_dump(), "redact_patterns": [r"CUST-\d{6}"]})


def _capture_everything(client: openai.OpenAI, hook_path: Path) -> List[str]:
    """Plant the secrets in every kind of captured field; return the run ids."""
    vt.get_runtime().activate(hooks=LoadedHooks.from_file(hook_path, "secret-hooks"))
    wrapped = vt.wrap(client, function_name="chat_secrets")
    ids = []
    response = wrapped.chat.completions.create(
        model=TINY_ID,
        messages=[{"role": "system", "content": f"internal {PROJ}"}, {"role": "user", "content": SECRET_TEXT}],
        max_tokens=4,
    )
    assert SK in response.choices[0].message.content  # the user's answer is untouched
    ids.append(last_run_id())
    for i in range(11):  # a dense group, so the density-based golden export selects them
        wrapped.chat.completions.create(
            model=TINY_ID, messages=[{"role": "user", "content": SECRET_TEXT}], max_tokens=4
        )
        ids.append(last_run_id())
    chunks = wrapped.chat.completions.create(
        model=TINY_ID, messages=[{"role": "user", "content": SECRET_TEXT}], max_tokens=4, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    ids.append(last_run_id())
    with pytest.raises(openai.NotFoundError) as missing:  # the provider's error names the secret
        wrapped.chat.completions.create(model=f"model-{SK}", messages=[{"role": "user", "content": "x"}])
    assert SK in str(missing.value)
    ids.append(last_run_id())

    @vt.track(function_name="tracked_secrets")
    def lookup(customer: str, api_key: str, options: dict) -> dict:
        return {"customer": customer, "echo": f"token={TOKEN}", "owner": EMAIL}

    @vt.track(function_name="tracked_secrets")
    def charge(amount: int) -> None:
        raise PermissionError(f"card declined for {EMAIL} using {SK} (Bearer {TOKEN}) {CUSTOM}")

    lookup(CUSTOM, SK, {"authorization": f"Bearer {TOKEN}", "note": SECRET_TEXT, "password": "hunter2hunter2"})
    ids.append(last_run_id())
    with pytest.raises(PermissionError):
        charge(5)
    ids.append(last_run_id())  # a raising @vt.track call sets it too
    return ids


def test_planted_secrets_reach_no_artefact(secret_env, openai_client, tmp_path, monkeypatch):
    hook_path = tmp_path / "secret_hook.py"
    hook_path.write_text(HOOK)
    # store down while capturing: every record goes through the journal first
    real_upsert = FixedLanceStore.upsert_many
    down = {"on": True}

    def upsert(self, collection, items, fresh=False):
        if down["on"] and collection == "VectorWaveExecutions":
            raise OSError("store down")
        return real_upsert(self, collection, items, fresh=fresh)

    monkeypatch.setattr(FixedLanceStore, "upsert_many", upsert)
    ids = _capture_everything(openai_client, hook_path)
    assert not vt.flush(30)  # all journaled, none in the store yet
    assert vt.capture_stats()["journal_pending"] == len(ids)
    assert leaks([secret_env.journal_path]) == []
    # a corrupt segment someone else left, quoting secrets: its lines are quarantined, redacted
    (secret_env.journal_path / "seg-1-999999-0.jsonl").write_text(
        json.dumps({"uuid": "corrupt", "properties": SECRET_TEXT}) + "\n" + SECRET_TEXT + "\n", encoding="utf-8"
    )
    down["on"] = False
    vt.get_runtime().reset()
    from vt_middleware.capture import worker

    worker.get_worker().delivery.reset_backoff()
    assert vt.flush(30) and vt.capture_stats()["journal_pending"] == 0
    quarantine = Path(vt.capture_stats()["quarantine_path"])
    assert vt.capture_stats()["quarantined"] == 1 + SECRET_TEXT.count("\n") + 1
    assert "[REDACTED]" in quarantine.read_text(encoding="utf-8") and leaks([quarantine]) == []
    stored = {
        c.uuid: CallRecord.from_properties(c.properties)
        for name in ("chat_secrets", "tracked_secrets")
        for page in vt.get_store().iter_calls(name)
        for c in page
    }
    errors = [i for i, r in stored.items() if r.function_name == "tracked_secrets" and r.status == "ERROR"]
    assert errors == [ids[-1]] and sorted(stored) == sorted(ids)
    assert "[REDACTED]" in stored[ids[0]].inputs["messages"][1]["content"]  # redacted, not dropped
    assert stored[errors[0]].error_type == "PermissionError" and "[EMAIL]" in stored[errors[0]].error_message

    # feedback: through vt.feedback, the dashboard's correction form, and a raw pair
    vt.feedback(ids[0], f"Fixed. Write to {EMAIL} or use {SK}", comment=f"for {CUSTOM}, Bearer {TOKEN}")
    dashboard_data.submit_correction(ids[1], f"Sorry. Contact {EMAIL} ({PROJ})")
    vt.get_store().add_feedback(
        FeedbackPair(
            input_prompt=SECRET_TEXT,
            bad_output=f"x {SK}",
            fixed_output=f"y {EMAIL}",
            context={"function_name": "chat_secrets", "note": SECRET_TEXT},
        )
    )
    for pair in vt.get_store().list_feedback():
        assert leaks_in(pair.to_dict(), "feedback row") == []

    # evolution: golden export, synthesis from pairs that carry secrets, a stage error naming a key
    pairs = [
        FeedbackPair(
            input_prompt=f"review {i} by {EMAIL}",
            bad_output=f"Good food {i}.",
            fixed_output=f"Good food {i}. Contact: {EMAIL} {CUSTOM} {PHONE} card {CARD} {JWT}",
            context={"function_name": "chat_secrets"},
        )
        for i in range(8)
    ]
    out = tmp_path / "evolve_out"
    pipeline = TrainingPipeline(_extractor(), gate=None)
    pipeline.gate.client = None
    result = pipeline.run("chat_secrets", feedback_pairs=pairs, output_dir=str(out))
    assert result["status"] == "succeeded" and result["golden_examples"] >= 1, result["skipped"]

    class LeakyTrainer:  # a provider error that quotes the key (as OpenAI's 401 does)
        client = None

        def prepare_data(self, path: str) -> str:
            raise RuntimeError(f"Incorrect API key provided: {SK}. Bearer {TOKEN} rejected for {EMAIL}")

    failing = TrainingPipeline(_extractor(), trainer=LeakyTrainer())
    failing.gate.client = None
    evolver = vt.Evolver(failing, "chat_secrets", every="1h", min_new_calls=None)
    assert evolver.run_once() is None
    assert leaks_in(evolver.status(), "evolver status") == []

    artefacts = [secret_env.store_path, secret_env.journal_path, secret_env.hooks_dir, secret_env.state_dir, out]
    assert leaks(artefacts) == []
    assert any(secret_env.hooks_dir.rglob("*.py")) and list_runs(secret_env.state_dir)

    # the dashboards' data access layer
    views = {
        "recent_calls": dashboard_data.recent_calls(limit=100),
        "feedback_pairs": [p.to_dict() for p in dashboard_data.feedback_pairs()],
        "runs": dashboard_data.runs(),
        "evolver_status": dashboard_data.evolver_status(),
        "hook_sources": [dashboard_data.hook_source(v["version"]) for v in dashboard_data.hook_versions()],
        "golden": [dashboard_data.read_jsonl(p) for p in out.glob("*.jsonl")],
    }
    found = [leak for name, view in views.items() for leak in leaks_in(view, f"dashboards.{name}")]
    assert found == []

    # the management API's read routes
    from vt_middleware.api.app import create_app
    from vt_middleware.server.runner import ThreadedServer

    answered = {}
    with ThreadedServer(create_app(token="t0ken")) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        client.headers["Authorization"] = "Bearer t0ken"
        for path in (
            "/calls?limit=100",
            "/feedback",
            "/runs",
            "/stats",
            "/golden",
            "/rules",
            "/hooks/versions",
            "/promotions",
            "/pipeline/status",
        ):
            response = client.get(path)
            if response.status_code == 200:
                answered[path] = response.json()
    assert {"/calls?limit=100", "/feedback", "/runs"} <= set(answered)
    assert "[REDACTED]" in json.dumps(answered["/calls?limit=100"])  # the calls are there, redacted
    assert [leak for path, body in answered.items() for leak in leaks_in(body, f"api {path}")] == []
