"""Property-based test of the whole REST API, driven by the server's own OpenAPI schema (schemathesis).

A twin with a historian is served on loopback in a thread; every operation gets a bounded number of generated
requests, sent with an admin token so that operator routes are reached past their role check. Whatever a
client sends, the server answers without a 5xx and within a few seconds, and its memory stays bounded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies
from schemathesis import GenerationMode

from tests.helpers import serve_sample_with_history

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ADMIN = "fuzz-admin-token-0123456789"
ROBOT = "/Factory/Line/Robot1"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
SLOWEST_S = 5.0  # no single answer takes longer, whatever was asked
MAX_RSS_GROWTH = 200 * 2**20


def rss_bytes() -> int:
    """This process's resident memory (the server runs in one of its threads)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def served(sample_layout, tmp_path_factory):
    """(base URL, RSS once the server answered its first request)."""
    with serve_sample_with_history(sample_layout, tmp_path_factory.mktemp("history"), ADMIN) as url:
        yield url, rss_bytes()


def test_no_request_breaks_or_stalls_the_server(served):
    url, _ = served
    # Loaded here rather than through schemathesis' pytest fixture loader, which does not run under pytest 9.
    api = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=HEADERS)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:
        @given(case=strategies.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                                      operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_in_time(case) -> None:
            if isinstance(case.body, dict) and "robot" in case.body:
                case.body["robot"] = ROBOT  # past the 404 of an unknown robot, into the kinematics
            started = time.monotonic()
            response = case.call(headers=HEADERS, timeout=SLOWEST_S + 5)
            elapsed = time.monotonic() - started
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
            assert elapsed < SLOWEST_S, f"{case.method} {case.formatted_path} took {elapsed:.1f} s"

        answers_in_time()


def test_memory_stayed_bounded_across_the_run(served):
    _, before = served
    growth = rss_bytes() - before
    assert growth < MAX_RSS_GROWTH, f"the server grew by {growth / 2**20:.0f} MiB"
