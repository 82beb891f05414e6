"""Fuzz the local server from its own OpenAPI schema (schemathesis, every operation) against
the tiny model backend: no request gets a 5xx. Examples are limited so the run stays short."""

from __future__ import annotations

import resource
import tempfile
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from vt_middleware.server.app import create_app  # noqa: E402
from vt_middleware.server.backends import LocalModelBackend  # noqa: E402
from vt_middleware.server.limits import ServerLimits  # noqa: E402
from vt_middleware.train.local_models import TINY_ID  # noqa: E402

APP = create_app(
    LocalModelBackend(default_model=TINY_ID),
    tempfile.mkdtemp(prefix="vt-server-fuzz-"),
    ServerLimits(max_body_bytes=256 * 1024, max_tokens=8, max_n=2, max_generation_s=2.0),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
STATUSES: Counter = Counter()
RSS_START_KB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error(case):
    response = case.call()
    STATUSES[response.status_code // 100 * 100] += 1
    case.validate_response(response, checks=[not_a_server_error])


def test_fuzz_summary():
    """Printed for the README: requests sent, 5xx seen, peak RSS growth of this process."""
    peak_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - RSS_START_KB) / 1024
    print(
        f"server fuzz: {sum(STATUSES.values())} requests, by class {dict(STATUSES)}, "
        f"peak RSS growth {peak_growth_mib:.0f} MiB"
    )
    assert STATUSES[500] == 0
