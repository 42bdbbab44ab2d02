"""A hostile client gets a quick 4xx, never a stalled server: sizes are counted before work starts, bodies are
capped, non-finite numbers are refused, errors quote little of the input, the API description needs a token off
loopback, and /api/health keeps answering while a hostile request is handled."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK, serve_sample_with_history
from twin.server import auth
from twin.server.app import create_app
from twin.server.auth import Access, Principal
from twin.sim.runtime import Twin

ADMIN = "admin-token-0123456789"
MACHINING = "/Factory/Line/Machining"
ROBOT = "/Factory/Line/Robot1"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def url(sample_layout, tmp_path_factory):
    with serve_sample_with_history(sample_layout, tmp_path_factory.mktemp("history"), ADMIN) as base:
        yield base


def health_during(url: str, hostile) -> tuple[httpx.Response | Exception, list[float]]:
    """Run `hostile(client)` in a thread and time /api/health answers while it runs; (its answer, the times)."""
    answer: list[httpx.Response | Exception] = []

    def run() -> None:
        try:
            with httpx.Client(base_url=url, headers=HEADERS, timeout=20) as client:
                answer.append(hostile(client))
        except Exception as error:  # a timeout is an answer too
            answer.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    times = []
    with httpx.Client(base_url=url, timeout=5) as client:
        while thread.is_alive() and len(times) < 20:
            started = time.monotonic()
            assert client.get("/api/health").status_code == 200
            times.append(time.monotonic() - started)
            time.sleep(0.05)
    thread.join(30)
    return answer[0], times


def test_a_huge_sweep_is_refused_before_any_combination_is_built(url):
    sweep = [{"prim": MACHINING, "attr": "twin:cycleTime", "values": [5.0 + i / 100 for i in range(150)]}] * 3

    def hostile(client: httpx.Client) -> httpx.Response:
        started = time.monotonic()
        response = client.post("/api/whatif", json={"sweep": sweep, "replications": 30})
        response.elapsed_s = time.monotonic() - started  # type: ignore[attr-defined]
        return response

    response, times = health_during(url, hostile)
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 422 and "101,250,000 variants" in response.json()["detail"]
    assert response.elapsed_s < 1.0  # type: ignore[attr-defined]
    assert max(times) < 1.0


def test_ik_targets_times_seeds_are_capped_and_health_answers(url):
    pose = httpx.get(f"{url}/api/robots").json()[0]["base"]
    body = {"robot": ROBOT, "targets": [pose] * 1000, "seeds": 64}
    response, times = health_during(url, lambda client: client.post("/api/robots/ik", json=body, timeout=3))
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 422 and "targets x seeds" in response.json()["detail"]
    assert max(times) < 1.0


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/whatif", '{"hours": NaN}'),
    ("POST", "/api/whatif", '{"sweep": [{"prim": "/Factory/Line/Machining", "attr": "twin:cycleTime", '
                            '"values": [Infinity]}]}'),
    ("POST", "/api/simulation", '{"tick_hz": NaN}'),
    ("POST", "/api/robots/fk", '{"robot": "/Factory/Line/Robot1", "q": [NaN, 0, 0, 0, 0, 0]}'),
    ("GET", "/api/history/state?at=nan", None),
    ("GET", "/api/history/signal?key=x&start=-inf&end=1", None),
    ("GET", "/api/history/export.csv?end=inf", None),
    ("GET", "/api/alarms/history?start=nan", None),
    ("GET", "/api/alarms/at?t=inf", None),
    ("GET", "/api/replay/frame?at=nan", None),
])
def test_non_finite_numbers_are_422(url, method, path, body):
    response = httpx.request(method, url + path, content=body, headers={**HEADERS, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text


def test_bodies_over_the_limit_are_413_before_they_are_read(url):
    big = json.dumps({"prim": "/Factory/Line/Conveyor2", "attr": "twin:speedSetpoint", "value": "x" * 2**21})
    declared = httpx.post(f"{url}/api/write", content=big, headers={**HEADERS, "Content-Type": "application/json"})
    assert declared.status_code == 413 and len(declared.content) < 300

    def chunks():  # no Content-Length: the server counts what arrives
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536].encode()

    streamed = httpx.post(f"{url}/api/write", content=chunks(), headers={**HEADERS, "Content-Type": "application/json"})
    assert streamed.status_code == 413 and len(streamed.content) < 300


def test_errors_quote_a_short_prefix_of_the_input(url):
    long_text = "y" * 200_000
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        wrong_type = client.post("/api/simulation", json={"tick_hz": long_text})
        assert wrong_type.status_code == 422 and len(wrong_type.content) < 1000
        unknown = client.get("/api/signals", params={"keys": long_text[:6000]})
        assert unknown.status_code == 404 and len(unknown.content) < 1000
        value = client.post("/api/write", json={"prim": MACHINING, "attr": "twin:cycleTime", "value": long_text})
        assert value.status_code == 422 and len(value.content) < 1000  # refused before it reaches the audit


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_off_loopback_the_api_description_needs_a_token(sample_layout, path):
    twin = Twin(sample_layout)
    access = Access({ADMIN: Principal("ada", "viewer")}, loopback_only=False)
    with TestClient(create_app(twin, access=access), base_url=LOOPBACK) as client:
        assert client.get(path).status_code == 401
        assert client.get(path, headers=HEADERS).status_code == 200
    with TestClient(create_app(twin, access=access, open_docs=True), base_url=LOOPBACK) as client:
        assert client.get(path).status_code == 200


def test_tokens_are_compared_in_constant_time_with_every_entry(monkeypatch):
    compared: list[bytes] = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    tokens = {f"token-{i}-0123456789abcdef": Principal(f"user{i}", "viewer") for i in range(5)}
    access = Access(tokens, loopback_only=False)
    assert access.principal("Bearer token-0-0123456789abcdef").user == "user0"
    assert len(compared) == 5
    with pytest.raises(auth.AuthError):
        access.principal("Bearer not-a-token-0123456789")
    assert len(compared) == 10


def test_chunked_kinematics_answer_as_one_batch(url, sample_layout):
    """FK and IK batches run in chunks (so that a client that left stops them); the answer is still one batch."""
    robots = Twin(sample_layout).robots
    q = np.random.default_rng(3).uniform(-1, 1, (1200, 6))
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
        forward = client.post("/api/robots/fk", json={"robot": ROBOT, "q": q.tolist()})
        assert forward.status_code == 200, forward.text[:300]
        poses = np.array(forward.json()["poses"])
        np.testing.assert_allclose(poses, robots.forward_world(ROBOT, q), atol=1e-5)
        flange = forward.json()["links"].index(client.get("/api/robots").json()[0]["flange"])
        targets = poses[:100, flange]
        inverse = client.post("/api/robots/ik", json={"robot": ROBOT, "targets": targets.tolist(), "seeds": 8})
        assert inverse.status_code == 200, inverse.text[:300]
        answer = inverse.json()
        assert len(answer["q"]) == len(answer["success"]) == len(answer["position_error"]) == 100
        assert np.mean(answer["success"]) > 0.9
