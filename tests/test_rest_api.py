"""The REST API's contract: OpenAPI, simulation control with roles, connector health, clear 4xx."""

import time

import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK
from twin.server.app import create_app
from twin.server.auth import Access, Principal
from twin.sim.runtime import Twin

VIEWER, OPERATOR = "viewer-token-0123456789", "operator-token-0123456789"


@pytest.fixture(scope="module")
def client(sample_layout):
    access = Access({VIEWER: Principal("val", "viewer"), OPERATOR: Principal("otto", "operator")},
                    loopback_only=False)
    health = {"plc": {"endpoint": "opc.tcp://127.0.0.1:4840", "connected": False, "last_error": "refused",
                      "n_bindings": 2, "n_errors": 1, "errors": ["binding 2: unknown node"], "updates": 0,
                      "connects": 0}}
    app = create_app(Twin(sample_layout), tick_hz=30, access=access, connector_health=lambda: health)
    with TestClient(app, base_url=LOOPBACK) as client:
        yield client


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json", headers=auth(VIEWER)).json()
    for path in ("/api/health", "/api/scene", "/api/prims/{path}", "/api/signals", "/api/connectors",
                 "/api/simulation", "/api/write", "/api/whatif", "/api/whatif/{job_id}"):
        assert path in spec["paths"], path
    assert "post" in spec["paths"]["/api/simulation"]


def test_simulation_control_needs_an_operator_and_pauses_the_step(client):
    assert client.post("/api/simulation", json={"running": False}).status_code == 401
    refused = client.post("/api/simulation", json={"running": False}, headers=auth(VIEWER))
    assert refused.status_code == 403 and "operator" in refused.json()["detail"]
    paused = client.post("/api/simulation", json={"running": False}, headers=auth(OPERATOR)).json()
    assert paused["running"] is False
    steps = client.get("/api/simulation", headers=auth(VIEWER)).json()["steps"]
    time.sleep(0.3)
    assert client.get("/api/simulation", headers=auth(VIEWER)).json()["steps"] == steps
    resumed = client.post("/api/simulation", json={"running": True, "tick_hz": 50}, headers=auth(OPERATOR)).json()
    assert resumed["running"] is True and resumed["tick_hz"] == 50
    time.sleep(0.3)
    assert client.get("/api/simulation", headers=auth(VIEWER)).json()["steps"] > steps
    bad = client.post("/api/simulation", json={"tick_hz": 1000}, headers=auth(OPERATOR))
    assert bad.status_code == 422 and "tick_hz" in bad.text


def test_connector_health_and_clear_4xx(client):
    connectors = client.get("/api/connectors", headers=auth(VIEWER)).json()
    assert connectors["plc"]["errors"] == ["binding 2: unknown node"]
    assert client.get("/api/health", headers=auth(VIEWER)).json()["connectors"]["plc"]["connected"] is False
    missing = client.get("/api/prims/Factory/Nope", headers=auth(VIEWER))
    assert missing.status_code == 404 and "/Factory/Nope" in missing.json()["detail"]
    assert client.get("/api/whatif/w0/playback?seconds=-1", headers=auth(VIEWER)).status_code == 422
    assert client.get("/api/signals", headers={"Authorization": "Bearer wrong"}).status_code == 401
