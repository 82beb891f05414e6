"""The management API over HTTP (uvicorn on loopback, httpx) with the real LanceDB store."""

from __future__ import annotations

import json
import time

import httpx
import pytest

import vt_middleware as vt
from store_data import write_records
from vt_middleware.types import CallRecord, FeedbackPair

TOKEN = "test-token-123"
FUNCTION = "summarize"


def ApiServer(app):
    """The API on a free loopback port, served by uvicorn in a thread."""
    from vt_middleware.server.runner import ThreadedServer

    return ThreadedServer(app)


def seed_calls(n: int, function_name: str = FUNCTION, embed: bool = False):
    records = [
        CallRecord(
            function_name,
            {"messages": [{"role": "user", "content": f"review {i}"}]},
            f"Sure! Item {i} is fine.",
            kind="openai",
            model_requested="m",
        )
        for i in range(n)
    ]
    write_records(records, embed=embed)
    return records


@pytest.fixture
def api(vt_env):
    from vt_middleware.api.app import create_app

    with ApiServer(create_app(token=TOKEN)) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            yield client


def test_feedback_crud_linked_to_captured_calls(api):
    records = seed_calls(3)
    created = api.post("/feedback", json={"run_id": records[0].run_id, "fixed_output": "Item 0 is fine."})
    assert created.status_code == 201, created.text
    pair = created.json()
    assert pair["run_id"] == records[0].run_id and pair["bad_output"] == "Sure! Item 0 is fine."
    assert pair["input_prompt"] == "review 0" and pair["context"]["function_name"] == FUNCTION
    free = api.post(
        "/feedback",
        json={"input_prompt": "q", "bad_output": "b", "fixed_output": "f", "context": {"function_name": "other"}},
    ).json()
    listed = api.get("/feedback").json()
    assert listed["total"] == 2 and [p["pair_id"] for p in listed["items"]] == [pair["pair_id"], free["pair_id"]]
    assert api.get("/feedback", params={"function_name": "other"}).json()["total"] == 1
    assert api.get("/feedback", params={"run_id": records[0].run_id}).json()["items"][0]["pair_id"] == pair["pair_id"]
    assert api.get("/feedback", params={"limit": 1, "offset": 1}).json()["items"][0]["pair_id"] == free["pair_id"]
    updated = api.patch(f"/feedback/{pair['pair_id']}", json={"fixed_output": "Item 0 is fine!"})
    assert updated.status_code == 200 and updated.json()["fixed_output"] == "Item 0 is fine!"
    assert vt.get_store().get_feedback(pair["pair_id"]).fixed_output == "Item 0 is fine!"  # really stored
    assert len(vt.get_store().list_feedback()) == 2  # replaced, not duplicated
    call = api.get(f"/calls/{records[0].run_id}").json()
    assert (
        call["call"]["output"] == "Sure! Item 0 is fine." and call["feedback"][0]["fixed_output"] == "Item 0 is fine!"
    )
    assert api.delete(f"/feedback/{free['pair_id']}").status_code == 204
    assert api.get(f"/feedback/{free['pair_id']}").status_code == 404
    assert api.delete(f"/feedback/{free['pair_id']}").status_code == 404
    assert [p.pair_id for p in vt.get_store().list_feedback()] == [pair["pair_id"]]


def test_bad_input_is_refused_naming_the_field_and_loses_nothing(api):
    records = seed_calls(1)
    pair = api.post("/feedback", json={"run_id": records[0].run_id, "fixed_output": "fixed"}).json()
    cases = [
        (api.post("/feedback", json={"input_prompt": "q"}), 422, "fixed_output"),
        (api.post("/feedback", json={"fixed_output": "f", "bad_output": "b"}), 400, "input_prompt"),
        (api.post("/feedback", json={"fixed_output": "f", "run_id": "nope"}), 400, "run_id 'nope'"),
        (api.post("/feedback", json={"fixed_output": 3}), 422, "fixed_output"),
        (api.post("/feedback", json={"fixed_output": "f", "surprise": 1}), 422, "surprise"),
        (api.patch(f"/feedback/{pair['pair_id']}", json={}), 400, "nothing to update"),
        (api.patch(f"/feedback/{pair['pair_id']}", json={"bad_output": None}), 400, "bad_output cannot be null"),
        (api.patch(f"/feedback/{pair['pair_id']}", json={"run_id": "missing-call"}), 400, "run_id 'missing-call'"),
        (api.patch("/feedback/unknown-pair", json={"fixed_output": "x"}), 404, "unknown-pair"),
        (api.get("/calls", params={"limit": 0}), 422, "limit"),
        (api.get("/calls/not-a-call"), 404, "not-a-call"),
        (api.get("/runs/run-missing"), 404, "run-missing"),
        (api.get("/hooks/versions/v0042"), 404, "v0042"),
        (api.post("/hooks/rollback", json={"to": "v0042"}), 404, "v0042"),
        (api.post("/pipeline/run", json={"function_name": ""}), 422, "function_name"),
        (api.post("/pipeline/run", json={"function_name": "f", "backend": "gpu"}), 422, "backend"),
        (api.get("/cost/estimate"), 400, "run_id or token_count"),
        (api.get("/cost/estimate", params={"token_count": 10, "model": "no-such-model"}), 400, "no-such-model"),
        (api.get("/rules"), 400, "no hook version is active"),
    ]
    for response, status, needle in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert needle in response.json()["detail"], response.text
    assert [p.to_dict() for p in vt.get_store().list_feedback()] == [api.get(f"/feedback/{pair['pair_id']}").json()]


def test_calls_are_paged_newest_first_and_filtered_by_function(api):
    records = seed_calls(7)
    seed_calls(2, function_name="other")
    page = api.get("/calls", params={"function_name": FUNCTION, "limit": 3}).json()
    assert page["total"] == 7 and [c["run_id"] for c in page["items"]] == [r.run_id for r in records[::-1][:3]]
    last = api.get("/calls", params={"function_name": FUNCTION, "limit": 3, "offset": 6}).json()
    assert [c["run_id"] for c in last["items"]] == [records[0].run_id]
    oldest = api.get("/calls", params={"order": "oldest", "limit": 2}).json()
    assert oldest["total"] == 9 and [c["run_id"] for c in oldest["items"]] == [r.run_id for r in records[:2]]
    assert api.get("/calls", params={"offset": 100}).json()["items"] == []
    stats = api.get("/stats").json()
    assert stats["calls"] == 9 and stats["calls_by_function"] == {FUNCTION: 7, "other": 2}


def _feedback_for_rules():
    pairs = [
        FeedbackPair(
            f"review {i}", f"Sure! Item {i} is fine.", f"Item {i} is fine.", context={"function_name": FUNCTION}
        )
        for i in range(6)
    ]
    for pair in pairs:
        vt.get_store().add_feedback(pair)
    return pairs


def test_pipeline_run_in_background_one_at_a_time_then_runs_rules_hooks_golden(api):
    seed_calls(12, embed=True)
    _feedback_for_rules()
    started = api.post("/pipeline/run", json={"function_name": FUNCTION, "min_group_size": 1})
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] in ("starting", "running") and job["busy"]
    busy = api.post("/pipeline/run", json={"function_name": FUNCTION})
    assert busy.status_code == 409 and job["job_id"] in busy.json()["detail"]
    deadline = time.monotonic() + 120
    while (status := api.get("/pipeline/status").json())["busy"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "succeeded", status
    run_id = status["run_id"]
    assert status["monitor"]["stage_results"]["synthesize"]["status"] == "succeeded"
    record = api.get(f"/runs/{run_id}").json()
    assert record["trigger"] == "api" and record["status"] == "succeeded"
    assert [r["run_id"] for r in api.get("/runs").json()] == [run_id]
    version = record["result"]["hook_version"]
    rules = api.get("/rules", params={"version": version}).json()
    assert rules["version"] == version and rules["rules"]
    evidence = [e for r in rules["rules"] for e in r["evidence"]]
    assert evidence and all(e["diff_summary"] and "diff_segments" in e for e in evidence)
    assert any(s["type"] == "removed" and "Sure!" in s["bad"] for e in evidence for s in e["diff_segments"])
    versions = api.get("/hooks/versions").json()
    assert [v["version"] for v in versions] == [version]
    detail = api.get(f"/hooks/versions/{version}").json()
    assert "def intercept_output" in detail["source"]
    golden = api.get("/golden").json()
    assert golden and golden[0]["run_id"] == run_id and golden[0]["examples"] > 0
    rows = api.get(f"/golden/{run_id}", params={"limit": 2}).json()
    assert rows["total"] == golden[0]["examples"] and len(rows["items"]) <= 2
    download = api.get(f"/golden/{run_id}/download")
    assert download.status_code == 200
    lines = [json.loads(line) for line in download.text.splitlines() if line.strip()]
    assert len(lines) == golden[0]["examples"] and all("messages" in line for line in lines)
    cost = api.get("/cost/estimate", params={"run_id": run_id, "max_budget_usd": 0.0}).json()
    assert cost["token_count"] > 0 and cost["within_budget"] is (cost["usd"] <= 0.0)
    assert api.get("/cost/estimate", params={"token_count": 1_000_000, "n_epochs": 1}).json()["usd"] == 3.0


def test_hook_versions_rollback_and_active_hook_over_http(api, vt_env):
    from vt_middleware.synthesizer import HookScriptGenerator, HookVersionManager
    from vt_middleware.types import Rule

    HookScriptGenerator().generate([Rule("r1", "", "", 'Replace "a" with "b"')], vt_env.hooks_dir)
    HookScriptGenerator().generate([Rule("r2", "", "", 'Replace "c" with "d"')], vt_env.hooks_dir)
    assert api.get("/hooks/active").json()["version"] == "v0002"
    back = api.post("/hooks/rollback", json={}).json()
    assert back == {"rolled_back": True, "previous": "v0002", "active": "v0001"}
    assert HookVersionManager().get_active_version()["version_id"] == "v0001"  # the store the watcher follows
    assert api.post("/hooks/rollback", json={"to": "v0002"}).json()["active"] == "v0002"
    assert [v["active"] for v in api.get("/hooks/versions").json()] == [False, True]


def test_model_promotion_and_rollback_over_http(api, vt_env):
    from vt_middleware.evolve.swap import get_promoter
    from vt_middleware.runtime.active import get_runtime

    get_promoter().promote("base-model", "ft:base-model:one", None, reason="test")
    promotions = api.get("/promotions").json()
    assert [p["action"] for p in promotions] == ["promote"] and promotions[0]["fine_tuned_model"] == "ft:base-model:one"
    assert get_runtime().current().route("base-model") == "ft:base-model:one"
    outcome = api.post("/promotions/rollback", json={"reason": "bad model"}).json()
    assert outcome["rolled_back"] is True and get_runtime().current().route("base-model") == "base-model"
    assert [p["action"] for p in api.get("/promotions").json()] == ["promote", "rollback"]


def test_every_state_changing_route_refuses_without_the_token(vt_env):
    from vt_middleware.api.app import create_app

    writes = [
        ("post", "/feedback", {"fixed_output": "f", "input_prompt": "q", "bad_output": "b"}),
        ("patch", "/feedback/p1", {"fixed_output": "x"}),
        ("delete", "/feedback/p1", None),
        ("post", "/pipeline/run", {"function_name": FUNCTION}),
        ("post", "/hooks/rollback", {}),
        ("post", "/promotions/rollback", {}),
    ]
    with ApiServer(create_app(token=TOKEN)) as server, httpx.Client(base_url=server.url) as client:
        schema = client.get("/openapi.json").json()
        mutating = {
            (m, p) for p, ops in schema["paths"].items() for m in ops if m in ("post", "patch", "delete", "put")
        }
        assert mutating == {(m, p.replace("p1", "{pair_id}")) for m, p, _ in writes}  # none forgotten
        for method, path, body in writes:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                response = client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["field"] == "authorization"
        assert client.get("/feedback").status_code == 200  # reads are open on loopback
    assert vt.get_store().list_feedback() == [] and not vt.get_store().promotions()
    with ApiServer(create_app(token="")) as server, httpx.Client(base_url=server.url) as client:
        refused = client.post("/hooks/rollback", json={}, headers={"Authorization": "Bearer anything"})
        assert refused.status_code == 403 and "VT_API_TOKEN" in refused.json()["detail"]


def test_non_loopback_needs_a_token_for_everything(vt_env, monkeypatch):
    from typer.testing import CliRunner

    from vt_middleware.api.app import create_app, is_loopback
    from vt_middleware.cli import app as cli
    from vt_middleware.errors import ConfigError

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    monkeypatch.delenv("VT_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="VT_API_TOKEN must be set"):
        create_app(protect_reads=True)
    refused = CliRunner().invoke(cli, ["api", "--host", "0.0.0.0", "--port", "1"])
    assert refused.exit_code != 0 and "VT_API_TOKEN must be set" in refused.output
    with ApiServer(create_app(token=TOKEN, protect_reads=True)) as server, httpx.Client(base_url=server.url) as client:
        for path in ("/feedback", "/calls", "/stats", "/openapi.json", "/health"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
