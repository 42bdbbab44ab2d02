"""What-if studies through the REST API: start, progress, KPIs, playback, bad requests."""

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK, serve_app
from twin.server.app import create_app
from twin.server.auth import Access
from twin.sim.runtime import Twin

MACHINING = "/Factory/Line/Machining"


@pytest.fixture(scope="module")
def client(sample_layout):
    twin = Twin(sample_layout)
    with TestClient(create_app(twin, tick_hz=20), base_url=LOOPBACK) as client:
        yield client


def wait_done(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/api/whatif/{job_id}").json()
        seen.append(job["progress"])
        if job["status"] in ("done", "failed"):
            job["seen_progress"] = seen
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def test_line_model_is_served(client):
    line = client.get("/api/line").json()
    names = [element["name"] for element in line["elements"]]
    assert names[0] == "Source" and names[-1] == "Sink" and "Robot1" in names
    robot = next(e for e in line["elements"] if e["name"] == "Robot1")
    assert robot["parameters"]["twin:pickTime"] > 0


def test_sweep_job_runs_and_reports_confidence_intervals(client):
    body = {"sweep": [{"prim": MACHINING, "attr": "twin:cycleTime", "values": [7.5, 20.0]}],
            "replications": 6, "hours": 2.0}
    response = client.post("/api/whatif", json=body)
    assert response.status_code == 202, response.text
    job = wait_done(client, response.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["progress"] == 1.0 and len(set(job["seen_progress"])) >= 1
    points = job["result"]["points"]
    assert [p["values"][f"{MACHINING}.twin:cycleTime"] for p in points] == [7.5, 20.0]
    fast, slow = (p["kpis"]["throughput_per_hour"] for p in points)
    assert fast["low"] < fast["mean"] < fast["high"]
    assert slow["high"] < fast["low"]  # a 20 s machining cycle caps the line at 180 parts/h
    assert slow["mean"] == pytest.approx(3600 / 20 * 0.98, rel=0.05)
    assert points[1]["kpis"]["bottleneck"]["prim"] == MACHINING
    listed = client.get("/api/whatif").json()
    assert any(j["id"] == job["id"] and "result" not in j for j in listed)

    playback = client.get(f"/api/whatif/{job['id']}/playback", params={"point": 1, "seconds": 120, "step": 1.0})
    assert playback.status_code == 200, playback.text
    frames = playback.json()["frames"]
    assert len(frames) == 121 and frames[0]["t"] == 0.0
    last = frames[-1]
    assert len(last["ids"]) > 0 and len(last["positions"]) == 3 * len(last["ids"])
    positions = np.array(last["positions"]).reshape(-1, 3)
    assert np.all(positions[:, 0] > -1.0) and np.all(positions[:, 0] < 21.0)  # on the line, along +X
    assert np.all(positions[:, 2] > 0.7)  # on belts and tables, not on the floor
    moved = [i for i in set(frames[60]["ids"]) & set(frames[61]["ids"])
             if frames[60]["positions"][3 * frames[60]["ids"].index(i)]
             != frames[61]["positions"][3 * frames[61]["ids"].index(i)]]
    assert moved  # parts move from frame to frame
    states = {entry["prim"]: entry["changes"] for entry in playback.json()["states"]}
    assert states[MACHINING] and states[MACHINING][0][1] in ("starved", "idle", "working")


def test_live_start_and_bad_requests(client):
    response = client.post("/api/whatif", json={"replications": 3, "hours": 0.5, "start": "live"})
    job = wait_done(client, response.json()["id"])
    assert job["status"] == "done" and job["result"]["start"] == "live"
    # No PLC feeds this twin: every live signal is still waiting for its first value, and says so.
    assert any("is bad" in note for note in job["result"]["live"]["assumptions"])
    bad = [
        ({"sweep": [{"prim": "/Factory/Nope", "attr": "twin:cycleTime", "values": [1]}]}, 422, "/Factory/Nope"),
        ({"sweep": [{"prim": MACHINING, "attr": "twin:color", "values": [1]}]}, 422, "twin:color"),
        ({"sweep": [{"prim": MACHINING, "attr": "twin:cycleTime", "values": [5, -1]}]}, 422,
         "/Factory/Line/Machining: twin:cycleTime = -1 must be > 0"),
        ({"replications": 0}, 422, "replications"),
        ({"hours": -1}, 422, "hours"),
        ({"start": "yesterday"}, 422, "start"),
    ]
    for body, status, needle in bad:
        response = client.post("/api/whatif", json=body)
        assert response.status_code == status, (body, response.text)
        assert needle in response.text
    assert client.get("/api/whatif/w999").status_code == 404
    assert client.get("/api/health").json()["status"] == "ok"  # the server is unharmed


def test_whatif_needs_a_token_off_loopback(sample_layout):
    access = Access(loopback_only=False)
    token = access.issue("alice", "viewer")
    app = create_app(Twin(sample_layout), tick_hz=5, access=access)
    with TestClient(app, base_url=LOOPBACK) as client:
        assert client.post("/api/whatif", json={"hours": 0.1, "replications": 1}).status_code == 401
        response = client.post("/api/whatif", json={"hours": 0.1, "replications": 1},
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202 and response.json()["user"] == "alice"


def test_python_client_against_a_running_server(sample_layout):
    """The SDK call over real HTTP: uvicorn on loopback, a sweep, its result, a refused request."""
    from twin import SweepParameter, WhatIfClient, WhatIfError

    with serve_app(create_app(Twin(sample_layout), tick_hz=5)) as url:
        client = WhatIfClient(url)
        job = client.start(sweep=[SweepParameter("/Factory/Line/Source", "twin:interarrival", [10.0, 30.0])],
                           replications=4, hours=1.0)
        done = client.wait(job["id"], timeout=120)
        busy, idle = (p["kpis"]["throughput_per_hour"]["mean"] for p in done["result"]["points"])
        assert busy > idle and idle == pytest.approx(120.0, rel=0.25)  # one part every 30 s on average
        with pytest.raises(WhatIfError, match="422.*/Factory/Nope"):
            client.start(sweep=[SweepParameter("/Factory/Nope", "twin:cycleTime", [1.0])])
        frames = client.playback(job["id"], seconds=30, step=1.0)["frames"]
        assert len(frames) == 31


def test_stopping_the_server_stops_a_running_study(sample_layout):
    """A long study must not keep a stopping server (Ctrl-C on the demo) waiting for it."""
    client = TestClient(create_app(Twin(sample_layout), tick_hz=5), base_url=LOOPBACK)
    with client:
        job = client.post("/api/whatif", json={"replications": 2000, "hours": 300}).json()
        deadline = time.monotonic() + 30
        while client.get(f"/api/whatif/{job['id']}").json()["progress"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until it is really running
        running = client.get(f"/api/whatif/{job['id']}").json()
        assert running["status"] == "running" and 0 < running["progress"] < 0.5
        too_big = client.post("/api/whatif", json={"replications": 10_000, "sweep": [
            {"prim": MACHINING, "attr": "twin:cycleTime", "values": [5, 6, 7]}]})
        assert too_big.status_code == 422 and "20,000 variants" in too_big.text
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 15


def test_bad_horizons_are_refused_before_running(client):
    for body, needle in (({"hours": 10_000}, "hours"), ({"hours": 1, "warmup_hours": 2}, "warmup_hours"),
                         ({"hours": 1, "warmup_hours": 0.5, "start": "live"}, "no warm-up")):
        response = client.post("/api/whatif", json=body)
        assert response.status_code == 422 and needle in response.text, (body, response.text)
