"""The historian over REST: a signal's past, the state at an instant, CSV; clear answers without one."""

import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK
from twin.history.store import Historian
from twin.server.app import create_app
from twin.sim.runtime import Twin

KEY = "/Factory/Line/Sink.twin:partsIn"


@pytest.fixture(scope="module")
def client(sample_layout, tmp_path_factory):
    twin = Twin(sample_layout)
    path = tmp_path_factory.mktemp("history") / "h.duckdb"
    historian = Historian(path, twin.cache)
    row = twin.cache.signal_row("/Factory/Line/Sink", "twin:partsIn")
    for second in range(30):
        twin.cache.write_signal(row, float(second // 3), source_time=5000.0 + second)
    historian.flush()
    with TestClient(create_app(twin, tick_hz=5, historian=historian), base_url=LOOPBACK) as client:
        yield client


def test_signal_state_and_csv(client):
    raw = client.get("/api/history/signal", params={"key": KEY, "start": 5000, "end": 5005}).json()
    assert raw["times"] == [5000.0 + s for s in range(6)] and raw["values"] == [0, 0, 0, 1, 1, 1]
    steps = client.get("/api/history/signal", params={"key": KEY, "start": 5000, "end": 5029, "step": 10,
                                                      "how": "mean"}).json()
    assert steps["values"] == pytest.approx([1.2, 4.5, 7.8])
    state = client.get("/api/history/state", params={"at": 5010.5}).json()
    assert state[KEY] == {"v": 3.0, "s": 0, "q": "good", "t": 5010.0}
    text = client.get("/api/history/export.csv", params={"keys": KEY, "start": 5000, "end": 5001}).text
    assert text.splitlines()[0] == "key,time,server_time,status,quality,value" and len(text.splitlines()) == 3


def test_bad_requests_are_named(client, sample_layout):
    missing = client.get("/api/history/signal", params={"key": "/Factory/Nope.twin:x", "start": 0, "end": 1})
    assert missing.status_code == 404 and "/Factory/Nope.twin:x" in missing.text
    assert client.get("/api/history/signal", params={"key": KEY, "start": 0, "end": 1, "how": "max",
                                                     "step": 1}).status_code == 422
    with TestClient(create_app(Twin(sample_layout), tick_hz=5), base_url=LOOPBACK) as plain:
        none = plain.get("/api/history/state", params={"at": 1})
        assert none.status_code == 404 and "--history" in none.text
