"""Operators write to the plant through the REST API: roles, limits, the PLC's answer, the audit."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK, free_port
from twin.cli import wait_for_port
from twin.connectors.bindings import load_bindings
from twin.connectors.opcua import OpcUaConnector
from twin.sample_factory import plc as sample_plc
from twin.server.app import create_app
from twin.server.auth import Access, Principal
from twin.sim.runtime import Twin

OPERATOR, VIEWER = "op-" + "o" * 20, "view-" + "v" * 20
SETPOINT = ("/Factory/Line/Conveyor2", "twin:speedSetpoint")


@pytest.fixture(scope="module")
def plant(sample_layout):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "twin.sample_factory.plc", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30, process)
        yield f"opc.tcp://127.0.0.1:{port}/factory/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def make_client(sample_layout, endpoint, *, loopback_only=True):
    twin = Twin(sample_layout)
    bindings = load_bindings(Path(sample_plc.__file__).with_name("bindings.yaml"), {"plc": endpoint})
    connector = OpcUaConnector(bindings, twin.cache)
    access = Access({OPERATOR: Principal("olga", "operator"), VIEWER: Principal("victor", "viewer")},
                    loopback_only=loopback_only)
    app = create_app(twin, writer=connector, access=access, on_startup=[connector.start],
                     on_shutdown=[connector.stop])
    return TestClient(app, base_url=LOOPBACK)


def signal(client, key):
    return client.get("/api/signals").json()[key]


@pytest.mark.timeout(120)
def test_operator_writes_reach_the_plc_and_are_audited(sample_layout, plant):
    with make_client(sample_layout, plant) as client:
        deadline = time.monotonic() + 20
        while signal(client, "/Factory/Line/Conveyor2.twin:speedSetpoint")["q"] != "good":
            assert time.monotonic() < deadline, "the setpoint never arrived"
            time.sleep(0.1)
        body = {"prim": SETPOINT[0], "attr": SETPOINT[1], "value": 0.5}
        assert client.post("/api/write", json=body).status_code == 403  # anonymous is a viewer
        assert client.post("/api/write", json=body, headers={"Authorization": f"Bearer {VIEWER}"}).status_code == 403
        assert client.post("/api/write", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        operator = {"Authorization": f"Bearer {OPERATOR}"}
        answer = client.post("/api/write", json=body, headers=operator)
        assert answer.status_code == 200 and answer.json()["status"] == "Good"
        deadline = time.monotonic() + 10  # the PLC takes the setpoint over and the belt follows it
        while abs(signal(client, "/Factory/Line/Conveyor2.twin:speed")["v"] - 0.5) > 0.02:
            assert time.monotonic() < deadline, "the belt speed did not follow the new setpoint"
            time.sleep(0.1)

        too_fast = client.post("/api/write", json={**body, "value": 0.9}, headers=operator)
        assert too_fast.status_code == 422 and too_fast.json()["status"] == "BadOutOfRange"
        unknown = client.post("/api/write", json={**body, "attr": "twin:speed"}, headers=operator)
        assert unknown.status_code == 404 and "no writable binding" in unknown.json()["detail"]

        assert client.get("/api/audit", headers={"Authorization": f"Bearer {VIEWER}"}).status_code == 403
        records = client.get("/api/audit", headers=operator).json()
        assert [(r["user"], r["new_value"], r["status"]) for r in records] == [
            ("olga", 0.5, "Good"), ("olga", 0.9, "BadOutOfRange")]
        assert records[0]["old_value"] == pytest.approx(0.35) and records[0]["node"].endswith("Conveyor2.SpeedSetpoint")


def test_off_loopback_every_request_needs_a_token(sample_layout, plant):
    with make_client(sample_layout, plant, loopback_only=False) as client:
        assert client.get("/api/audit").status_code == 401
        assert client.get("/api/scene").status_code == 401
        assert client.get("/api/scene", headers={"Authorization": f"Bearer {VIEWER}"}).status_code == 200
        body = {"prim": SETPOINT[0], "attr": SETPOINT[1], "value": 0.3}
        assert client.post("/api/write", json=body).status_code == 401


def test_scaled_and_64_bit_integer_writes_are_exact():
    from asyncua import ua

    from twin.connectors.bindings import Binding
    from twin.connectors.opcua import OutOfRange, from_twin

    millimetres = Binding("plc", "ns=2;s=X", "/P", "twin:speed", scale=0.001, direction="both")
    assert [from_twin(millimetres, v / 1000, ua.VariantType.Int32) for v in range(1, 1000)] == list(range(1, 1000))
    counts = Binding("plc", "ns=2;s=Y", "/P", "twin:count", kind="int", direction="both")
    assert from_twin(counts, 2**53 + 1, ua.VariantType.Int64) == 2**53 + 1
    assert from_twin(counts, 2**64 - 1, ua.VariantType.UInt64) == 2**64 - 1
    with pytest.raises(OutOfRange):
        from_twin(counts, 2**64, ua.VariantType.UInt64)
    with pytest.raises(ValueError, match="text to a Double node"):
        from_twin(Binding("plc", "ns=2;s=Z", "/P", "twin:name", kind="text", direction="both"), "x",
                  ua.VariantType.Double)


@pytest.mark.parametrize(("entry", "message"), [
    ("alice-operator-0123456789abcdef", "expected user:role:token"),
    ("alice::0123456789abcdef", "must all be non-empty"),
    ("0123456789abcdef:alice:operator", "the role must be one of"),  # misordered: the token in the user field
    ("alice:0123456789abcdef:short", "the role must be one of"),
])
def test_a_malformed_twin_tokens_entry_is_named_without_echoing_it(monkeypatch, entry, message):
    from twin.core.errors import TwinError
    from twin.server.auth import Access

    monkeypatch.setenv("TWIN_TOKENS", f"bob:viewer:fedcba9876543210fedcba,{entry}")
    with pytest.raises(TwinError, match=rf"TWIN_TOKENS entry 2: .*{message}") as caught:
        Access.load()
    assert "0123456789abcdef" not in str(caught.value)


def test_a_tokens_file_entry_with_a_bad_role_is_named_by_position(tmp_path):
    from twin.core.errors import TwinError
    from twin.server.auth import Access

    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"user": "ann", "role": "operator", "token": "a" * 20},
                                           {"user": "b" * 20, "role": "root", "token": "secret-token-123456"}]}))
    with pytest.raises(TwinError, match=r"tokens.json: token entry 2: the role must be one of") as caught:
        Access.load(path)
    assert "secret-token" not in str(caught.value) and "b" * 20 not in str(caught.value)
