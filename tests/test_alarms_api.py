"""Alarms through the server: pushed on the stream as they are raised, acknowledged and cleared; the
acknowledgement needs the operator role and is recorded; the historian keeps every transition."""

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from tests.helpers import serve_app
from twin.history.store import Historian
from twin.server.app import create_app
from twin.server.auth import Access, Principal
from twin.sim.runtime import Twin

SENSOR = "/Factory/Line/Machining/SpindleTemp"  # the sample layout authors twin:alarm:hot:high = 60 on it
OPERATOR, VIEWER = "op-token", "viewer-token"


@pytest.fixture(scope="module")
def served(sample_layout, tmp_path_factory):
    twin = Twin(sample_layout)
    row = twin.cache.add_signal(SENSOR, "twin:temperature", unit="degC")  # what its binding would register
    historian = Historian(tmp_path_factory.mktemp("alarms") / "h.duckdb", twin.cache)
    access = Access({OPERATOR: Principal("otto", "operator"), VIEWER: Principal("val", "viewer")})
    app = create_app(twin, tick_hz=20, access=access, historian=historian)
    with serve_app(app) as url:
        yield {"url": url, "twin": twin, "row": row, "historian": historian}
    historian.close()


def next_alarms(ws, predicate, timeout=5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = ws.recv(timeout=timeout)
        if isinstance(message, str):
            decoded = json.loads(message)
            if decoded["type"] == "alarms" and predicate(decoded):
                return decoded
    raise AssertionError("no alarms message as expected")


def test_alarm_lifecycle_over_the_stream_and_rest(served):
    twin, row, url = served["twin"], served["row"], served["url"]
    ws_url = url.replace("http", "ws") + "/ws"
    rules = httpx.get(f"{url}/api/alarms/rules").json()
    (hot,) = [rule for rule in rules if rule["key"] == f"{SENSOR}.twin:temperature"]
    assert hot["kind"] == "high" and hot["limit"] == 60.0 and hot["deadband"] == 3.0 and hot["resolved"]
    assert hot["where"].endswith(f"factory.usda: {SENSOR}")
    with connect(ws_url) as ws:
        assert next_alarms(ws, lambda m: True)["alarms"] == []  # the list, once the snapshot is sent
        twin.cache.write_signal(row, 64.5, source_time=time.time())
        raised = next_alarms(ws, lambda m: m["alarms"])
        (alarm,) = raised["alarms"]
        assert alarm["state"] == "active" and alarm["value"] == 64.5 and alarm["severity"] == "high"
        assert alarm["message"] == "Machining spindle above 60 degC"
        assert [e["event"] for e in raised["events"]] == ["raised"]
        ack = f"{url}/api/alarms/{alarm['id']}/acknowledge"
        assert httpx.post(ack).status_code == 403  # anonymous on loopback is a viewer
        refused = httpx.post(ack, headers={"Authorization": f"Bearer {VIEWER}"})
        assert refused.status_code == 403 and "operator" in refused.json()["detail"]
        done = httpx.post(ack, json={"comment": "coolant checked"}, headers={"Authorization": f"Bearer {OPERATOR}"})
        assert done.status_code == 200 and done.json()["acknowledged_by"] == "otto"
        again = httpx.post(ack, headers={"Authorization": f"Bearer {OPERATOR}"})
        assert again.status_code == 409 and "already acknowledged by otto" in again.json()["detail"]
        assert httpx.post(f"{url}/api/alarms/999/acknowledge",
                          headers={"Authorization": f"Bearer {OPERATOR}"}).status_code == 404
        acked = next_alarms(ws, lambda m: m["alarms"] and m["alarms"][0]["state"] == "acknowledged")
        assert acked["events"][-1]["user"] == "otto" and acked["events"][-1]["comment"] == "coolant checked"
        twin.cache.write_signal(row, 56.0, source_time=time.time())  # below 60 - 3: cleared, and closed
        cleared = next_alarms(ws, lambda m: not m["alarms"])
        assert cleared["events"][-1]["event"] == "cleared"
    assert httpx.get(f"{url}/api/alarms").json()["alarms"] == []
    events = httpx.get(f"{url}/api/alarms/events", params={"since": 0}).json()["events"]
    assert [e["event"] for e in events] == ["raised", "acknowledged", "cleared"]
    served["historian"].flush()
    stored = httpx.get(f"{url}/api/alarms/history", params={"key": f"{SENSOR}.twin:temperature"}).json()
    assert [(e["event"], e["user"]) for e in stored] == [("raised", None), ("acknowledged", "otto"),
                                                        ("cleared", None)]
    then = httpx.get(f"{url}/api/alarms/at", params={"t": stored[1]["time"]}).json()["alarms"]
    assert [(a["id"], a["state"], a["acknowledged_by"]) for a in then] == [(alarm["id"], "acknowledged", "otto")]
    assert httpx.get(f"{url}/api/alarms/at", params={"t": "nan"}).status_code == 422
