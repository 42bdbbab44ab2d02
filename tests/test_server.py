"""REST API and websocket stream of a twin of the sample factory (no PLC: the test writes signals)."""

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK
from twin.server.app import create_app
from twin.sim.runtime import Twin

ROBOT = "/Factory/Line/Robot1"


@pytest.fixture(scope="module")
def twin(sample_layout):
    return Twin(sample_layout)


@pytest.fixture
def client(twin, sample_layout):
    app = create_app(twin, glb_path=sample_layout.with_suffix(".glb"), tick_hz=50)
    with TestClient(app, base_url=LOOPBACK) as client:
        yield client


def test_health_scene_and_prims(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["signals"] > 0 and health["transforms"] > 0
    tree = client.get("/api/scene").json()
    assert tree["path"] == "/Factory"
    line = next(child for child in tree["children"] if child["name"] == "Line")
    kinds = {child["kind"] for child in line["children"]}
    assert {"robot", "conveyor", "station", "source", "sink"} <= kinds
    robot = client.get(f"/api/prims{ROBOT}").json()
    assert robot["kind"] == "robot" and robot["attributes"]["twin:kind"] == "robot"
    assert any(s["attr"] == "twin:jointPositions" for s in robot["signals"])
    assert client.get("/scene.glb").content[:4] == b"glTF"


def test_unknown_prim_is_a_clear_404(client):
    response = client.get("/api/prims/Factory/Nope")
    assert response.status_code == 404 and "/Factory/Nope" in response.json()["detail"]


def test_stream_sends_snapshot_then_deltas_of_moving_links(client, twin):
    row = twin.cache.signal_row(ROBOT, "twin:jointPositions")
    # binary frames: tests/test_stream_protocol.py
    with client.websocket_connect("ws://127.0.0.1/ws?format=json") as ws:
        assert ws.receive_json()["type"] == "hello"
        snapshot = ws.receive_json()
        assert snapshot["type"] == "snapshot"
        link_paths = [path for path in snapshot["transforms"] if path.startswith(ROBOT + "/")]
        assert len(link_paths) >= 7
        twin.cache.write_signal(row, np.array([0.5, -1.0, 1.0, 0.0, 1.0, 0.0]))
        # the write lands between two ticks: the joints may go out one delta before the links they move
        signals, moved = {}, False
        for _ in range(20):
            delta = ws.receive_json()
            if delta["type"] == "delta":
                signals.update(delta["signals"])
                moved = moved or any(p.startswith(ROBOT + "/") for p in delta["transforms"])
            if moved and f"{ROBOT}.twin:jointPositions" in signals:
                break
        else:
            pytest.fail(f"no delta carried the moved robot's links (moved: {moved}) and its joints")
        assert signals[f"{ROBOT}.twin:jointPositions"]["v"] == [0.5, -1.0, 1.0, 0.0, 1.0, 0.0]
        assert signals[f"{ROBOT}.twin:jointPositions"]["q"] == "good"


def test_bad_messages_get_an_error_and_the_stream_goes_on(client):
    with client.websocket_connect("ws://127.0.0.1/ws?format=json") as ws:
        assert ws.receive_json()["type"] == "hello"
        assert ws.receive_json()["type"] == "snapshot"
        ws.send_text("{not json")
        for _ in range(50):
            message = ws.receive_json()
            if message["type"] == "error":
                assert "not JSON" in message["error"]
                break
        ws.send_json({"type": "resync"})
        for _ in range(50):
            if ws.receive_json()["type"] == "snapshot":
                break
        else:
            pytest.fail("resync did not bring a new snapshot")
    assert client.get("/api/health").json()["status"] == "ok"


def test_snapshot_endpoint_returns_a_usd_layer_over_the_layout(client, sample_layout):
    text = client.get("/api/snapshot.usda").text
    assert text.startswith("#usda 1.0") and sample_layout.name in text


def test_websocket_needs_a_token_off_loopback_and_refuses_other_sites(twin):
    from starlette.websockets import WebSocketDisconnect

    from twin.server.auth import Access, Principal

    token = "viewer-token-" + "x" * 10
    app = create_app(twin, tick_hz=50, access=Access({token: Principal("v", "viewer")}, loopback_only=False))
    with TestClient(app, base_url=LOOPBACK) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("ws://127.0.0.1/ws") as ws:
            ws.receive_json()
        assert refused.value.code == 1008
        with client.websocket_connect(f"ws://127.0.0.1/ws?token={token}") as ws:
            assert ws.receive_json()["type"] == "hello"
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(
                f"/ws?token={token}", headers={"origin": "https://elsewhere.example"}) as ws:
            ws.receive_json()


def test_infinity_binary_frames_and_the_client_count(client, twin):
    row = twin.cache.add_signal("/Factory/Line/Conveyor1", "twin:overflow")
    twin.cache.write_signal(row, float("inf"))
    with client.websocket_connect("ws://127.0.0.1/ws?format=json") as ws:
        assert ws.receive_json()["type"] == "hello"
        snapshot = ws.receive_json()  # strict JSON: infinity arrives as null
        assert snapshot["signals"]["/Factory/Line/Conveyor1.twin:overflow"]["v"] is None
        ws.send_bytes(b"\x00\x01")
        for _ in range(50):
            if ws.receive_json()["type"] == "error":
                break
        else:
            pytest.fail("a binary frame got no error reply")
    for _ in range(50):
        if client.get("/api/health").json()["clients"] == 0:
            break
        time.sleep(0.05)
    assert client.get("/api/health").json()["clients"] == 0


def test_a_loopback_twin_refuses_other_host_names(twin):
    """DNS rebinding: a page at attacker.example resolving to 127.0.0.1 must not read the plant."""
    from starlette.websockets import WebSocketDisconnect

    with TestClient(create_app(twin, tick_hz=5), base_url="http://attacker.example:8000") as client:
        refused = client.get("/api/signals")
        assert refused.status_code == 421 and "only on loopback" in refused.json()["detail"]
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(
                "ws://attacker.example:8000/ws") as ws:
            ws.receive_text()
        assert closed.value.code == 1008 and "only on loopback" in closed.value.reason
    with TestClient(create_app(twin, tick_hz=5), base_url="http://localhost:8000") as client:
        assert client.get("/api/health").status_code == 200
