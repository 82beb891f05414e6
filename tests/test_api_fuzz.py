"""Fuzzing the management API from its own OpenAPI schema (schemathesis): no input makes it
answer 5xx, whether the request is valid or not, read or write (authenticated)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from vt_middleware.api.app import create_app

TOKEN = "fuzz-token"
app = create_app(token=TOKEN)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def seeded(vt_env):
    """A store with a captured call and a feedback pair, so ids can be hit as well as missed."""
    import vt_middleware as vt
    from vt_middleware.types import CallRecord, FeedbackPair

    record = CallRecord("fuzzed", {"messages": [{"role": "user", "content": "q"}]}, "a")
    vt.get_store().write_calls([{"uuid": record.run_id, "properties": record.to_properties(), "vector": None}])
    vt.get_store().add_feedback(FeedbackPair("q", "a", "b", run_id=record.run_id))
    yield vt_env
    app.state.runs.wait(timeout=60)  # a fuzzed /pipeline/run finishes inside this test's config


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail_with_5xx(case, seeded):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"}, checks=[schemathesis.checks.not_a_server_error]
    )
