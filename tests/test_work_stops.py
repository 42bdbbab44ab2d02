"""Work stops when its client leaves: a client that sends a heavy request and goes away must not keep the
server busy. Measured on the server's side (the kinematics chunks it computed, the studies it queued), not by
how long the client waited."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import serve_app
from twin.server.app import create_app
from twin.server.routes.robots import IK_CHUNK, MAX_REST_IK
from twin.sim.runtime import Twin

ROBOT = "/Factory/Line/Robot1"
MACHINING = "/Factory/Line/Machining"


@pytest.fixture(scope="module")
def served(sample_layout):
    twin = Twin(sample_layout)
    app = create_app(twin, tick_hz=10)
    with serve_app(app) as base:
        yield twin, app, base


def count_calls(owner, name: str) -> list[int]:
    """Wrap `owner.name` on this instance so its calls are counted (the real work still runs): [started, ended]."""
    calls, lock, call = [0, 0], threading.Lock(), getattr(owner, name)

    def counted(*args, **kwargs):
        with lock:
            calls[0] += 1
        try:
            return call(*args, **kwargs)
        finally:
            with lock:
                calls[1] += 1

    setattr(owner, name, counted)
    return calls


def send_and_leave(url: str, path: str, body: dict, left_when: Callable[[], bool], timeout: float = 60.0) -> None:
    """POST `body` on a raw connection, and close it without reading the answer once `left_when()` holds."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        deadline = time.monotonic() + timeout
        while not left_when():
            assert time.monotonic() < deadline, "the server never started the work"
            time.sleep(0.005)


def settled(calls: list[int], quiet_s: float = 1.5, timeout: float = 60.0) -> int:
    """The count once it has not moved for `quiet_s`."""
    deadline = time.monotonic() + timeout
    last, since = calls[0], time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.05)
        if calls[0] != last:
            last, since = calls[0], time.monotonic()
    return last


@pytest.mark.slow
def test_an_ik_batch_stops_when_its_client_leaves(served):
    twin, _, url = served
    pose = httpx.get(f"{url}/api/robots").json()[0]["base"]
    seeds = 8
    body = {"robot": ROBOT, "targets": [pose] * (MAX_REST_IK // seeds), "seeds": seeds}
    chunks_in_full = MAX_REST_IK // IK_CHUNK
    calls = count_calls(twin.robots, "inverse_world")
    try:
        send_and_leave(url, "/api/robots/ik", body, left_when=lambda: calls[0] >= 1)
        computed = settled(calls)
        # the chunk under way when the client left, and at most one started before its leaving was seen
        assert computed <= 2 < chunks_in_full, f"{computed} of {chunks_in_full} chunks computed for a client gone"
        calls[:] = [0, 0]
        answer = httpx.post(f"{url}/api/robots/ik", json=body, timeout=60)  # a client that stays gets it all
        assert answer.status_code == 200 and len(answer.json()["success"]) == MAX_REST_IK // seeds
        assert calls[0] == chunks_in_full
    finally:
        del twin.robots.inverse_world


def test_a_sweep_whose_client_left_during_its_check_is_not_queued(served):
    twin, app, url = served
    studies = app.state.whatif
    jobs = studies.jobs()
    # 20,000 points: the largest sweep allowed, whose check (every point's parameters) takes a while
    sweep = [{"prim": MACHINING, "attr": "twin:cycleTime", "values": [5.0 + i / 1000 for i in range(200)]},
             {"prim": MACHINING, "attr": "twin:mtbf", "values": [3600.0 + i for i in range(100)]}]
    checks = count_calls(jobs, "check")
    try:
        send_and_leave(url, "/api/whatif", {"sweep": sweep, "replications": 1, "hours": 0.1},
                       left_when=lambda: checks[0] >= 1)
        deadline = time.monotonic() + 30
        while checks[1] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # the check has ended: a study would be queued by now
        assert checks == [1, 1]
        assert not jobs.jobs, f"a study was queued for a client that left: {list(jobs.jobs)}"
    finally:
        del jobs.check
