"""MQTT in (connectors/mqtt.py) and out (twin/server/publish_mqtt.py) against Debian's mosquitto, started here."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from tests.mqtt_broker import Broker, needs_mosquitto, start_broker
from twin.connectors import sparkplug as sp
from twin.connectors.bindings import load_bindings
from twin.connectors.mqtt import MqttConnector
from twin.core.cache import RuntimeCache, quality_name
from twin.core.errors import BindingError

pytestmark = [needs_mosquitto, pytest.mark.timeout(60)]


def wait(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def client(broker: Broker, name: str, **options) -> paho.Client:
    """A connected paho client (the plant's side, or an independent subscriber)."""
    mqtt = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name)
    if "will" in options:
        mqtt.will_set(*options["will"])
    connected = threading.Event()
    mqtt.on_connect = lambda *args: connected.set()
    mqtt.connect("127.0.0.1", broker.port)
    mqtt.loop_start()
    assert connected.wait(5), f"{name} did not connect"
    return mqtt


class EdgeNode:
    """A Sparkplug B edge node with one device: births with aliases, data with seq numbers, a will (NDEATH)."""

    def __init__(self, broker: Broker, bd_seq: int = 7, group: str = "Plant", node: str = "Line1",
                 device: str = "Press"):
        self.group, self.node, self.device = group, node, device
        self.bd_seq, self.seq, self.rebirth_requests = bd_seq, 0, 0
        self.mqtt = client(broker, f"edge-{node}-{bd_seq}", will=(self.topic("NDEATH"), self.death(), 1))
        self.mqtt.on_message = self._command
        self.mqtt.subscribe(self.topic("NCMD"), 1)

    def death(self) -> bytes:
        payload = sp.Payload(timestamp=sp.now_ms())
        sp.add_metric(payload, sp.BD_SEQ_METRIC, sp.INT64, self.bd_seq)
        return payload.SerializeToString()

    def topic(self, message: str) -> str:
        device = f"/{self.device}" if message.startswith("D") else ""
        return f"{sp.NAMESPACE}/{self.group}/{message}/{self.node}{device}"

    def _command(self, client, userdata, message) -> None:
        payload = sp.Payload.FromString(message.payload)
        if any(m.name == sp.REBIRTH_METRIC and m.boolean_value for m in payload.metrics):
            self.rebirth_requests += 1

    def send(self, message: str, metrics: list[tuple], *, seq: int | None = None) -> None:
        payload = sp.Payload(timestamp=sp.now_ms(), seq=self.seq if seq is None else seq)
        self.seq = (payload.seq + 1) % 256
        for name, alias, kind, value, *quality in metrics:
            metric = sp.add_metric(payload, name, kind, value, alias=alias, timestamp=1_700_000_000_000)
            if quality:
                metric.properties.keys.append("Quality")
                metric.properties.values.add(type=sp.INT32, int_value=quality[0])
        self.mqtt.publish(self.topic(message), payload.SerializeToString(), qos=1).wait_for_publish(5)

    def births(self) -> None:
        self.seq = 0
        self.send("NBIRTH", [(sp.BD_SEQ_METRIC, None, sp.INT64, self.bd_seq), ("Speed", 1, sp.DOUBLE, 0.5)])
        self.send("DBIRTH", [("State", 2, sp.INT32, 1), ("Force", 3, sp.FLOAT, 12.5), ("Axes", 4, 31, [1.0, 2.0])])


def binding_file(tmp_path: Path, broker: Broker, extra: str = "") -> Path:
    path = tmp_path / "bindings.yaml"
    path.write_text(f"""brokers:
  uns:
    url: mqtt://127.0.0.1:{broker.port}
    keepalive_s: 2{extra}
bindings:
  - server: uns
    topic: plant/line1/conveyor
    value_path: data.speed_mm_s
    time_path: ts
    prim: /F/Conveyor
    attr: twin:speed
    scale: 0.001
  - server: uns
    topic: plant/line1/conveyor
    value_path: data.missing
    prim: /F/Conveyor
    attr: twin:missing
  - server: uns
    sparkplug: Plant/Line1
    metric: Speed
    prim: /F/Line
    attr: twin:speed
  - server: uns
    sparkplug: Plant/Line1/Press
    metric: State
    prim: /F/Press
    attr: twin:state
    kind: int
    enum: {{0: idle, 1: working, 2: down}}
  - server: uns
    sparkplug: Plant/Line1/Press
    metric: Force
    prim: /F/Press
    attr: twin:force
  - server: uns
    sparkplug: Plant/Line1/Press
    metric: Axes
    prim: /F/Press
    attr: twin:axes
    width: 2
""")
    return path


@pytest.fixture
def broker(tmp_path):
    broker = start_broker(tmp_path / "broker")
    yield broker
    broker.stop()


def start(connector: MqttConnector) -> None:
    for session in connector.sessions.values():
        session.start()


def test_json_and_sparkplug_values_reach_the_cache(tmp_path, broker):
    cache = RuntimeCache()
    connector = MqttConnector(load_bindings(binding_file(tmp_path, broker)), cache)
    edge = EdgeNode(broker)
    start(connector)
    try:
        wait(lambda: edge.rebirth_requests >= 1, "the twin's rebirth request on connecting")
        edge.births()
        row = {key: cache.signal_row(*key) for key in [("/F/Conveyor", "twin:speed"), ("/F/Conveyor", "twin:missing"),
                                                      ("/F/Line", "twin:speed"), ("/F/Press", "twin:state"),
                                                      ("/F/Press", "twin:force"), ("/F/Press", "twin:axes")]}
        wait(lambda: cache.signal_value(row["/F/Press", "twin:force"]) == 12.5, "the DBIRTH's values")
        assert cache.signal_value(row["/F/Line", "twin:speed"]) == 0.5
        assert list(cache.signal_value(row["/F/Press", "twin:axes"])) == [1.0, 2.0]
        assert cache.source_time[row["/F/Press", "twin:force"]] == 1_700_000_000.0

        edge.send("DDATA", [(None, 2, sp.INT32, 2), (None, 3, sp.FLOAT, 14.0, sp.QUALITY_STALE)])  # aliases only
        wait(lambda: cache.signal_value(row["/F/Press", "twin:state"]) == 2.0, "DDATA by alias")
        assert cache.text[row["/F/Press", "twin:state"]] == "down"
        assert cache.signal_value(row["/F/Press", "twin:force"]) == 14.0
        assert quality_name(cache.status[row["/F/Press", "twin:force"]]) == "stale"  # its Quality property: 500
        assert quality_name(cache.status[row["/F/Press", "twin:state"]]) == "good"

        plant = client(broker, "plant")
        plant.publish("plant/line1/conveyor", json.dumps({"ts": "2024-01-02T03:04:05Z", "data": {"speed_mm_s": 250}}),
                      qos=1).wait_for_publish(5)
        speed = row["/F/Conveyor", "twin:speed"]
        wait(lambda: cache.signal_value(speed) == 0.25, "the JSON value")
        assert cache.source_time[speed] == 1704164645.0
        assert quality_name(cache.status[speed]) == "good"
        missing = row["/F/Conveyor", "twin:missing"]
        assert quality_name(cache.status[missing]) == "bad"
        assert any("bindings.yaml:13: binding plant/line1/conveyor" in e and "no 'missing'" in e
                   for e in connector.errors), connector.errors
        plant.disconnect()
        assert connector.health()["uns"]["connected"]
    finally:
        edge.mqtt.disconnect()
        edge.mqtt.loop_stop()
        for session in connector.sessions.values():
            session.stop()


def test_sequence_gap_asks_rebirth_and_deaths_and_broker_loss_mark_stale(tmp_path, broker):
    cache = RuntimeCache()
    connector = MqttConnector(load_bindings(binding_file(tmp_path, broker)), cache)
    edge = EdgeNode(broker)
    start(connector)
    try:
        wait(lambda: edge.rebirth_requests >= 1, "the rebirth request on connecting")
        asked = edge.rebirth_requests
        edge.births()
        state, line = cache.signal_row("/F/Press", "twin:state"), cache.signal_row("/F/Line", "twin:speed")
        wait(lambda: cache.signal_value(state) == 1.0, "the births")
        session = connector.sessions["uns"]
        session.nodes["Plant", "Line1"].rebirth_asked = 0.0  # the rate limit is not what is tested here
        edge.send("NDATA", [(None, 1, sp.DOUBLE, 0.7)], seq=edge.seq + 3)  # two messages lost
        wait(lambda: edge.rebirth_requests > asked, "a rebirth request after the sequence gap")
        assert session.sequence_gaps == 1
        edge.births()
        wait(lambda: session.nodes["Plant", "Line1"].born, "the new birth")

        edge.send("DDEATH", [])
        wait(lambda: quality_name(cache.status[state]) == "stale", "DDEATH marking the device's signals stale")
        assert quality_name(cache.status[line]) == "good"  # the node itself lives
        edge.send("DBIRTH", [("State", 2, sp.INT32, 0)])
        wait(lambda: quality_name(cache.status[state]) == "good", "the device reborn")

        edge.mqtt._sock.close()  # the edge node drops off the network: the broker sends its will, NDEATH
        wait(lambda: quality_name(cache.status[line]) == "stale", "NDEATH marking the node's signals stale",
             timeout=15)
        edge.mqtt.loop_stop()
        assert quality_name(cache.status[state]) == "stale"
        assert cache.signal_value(state) == 0.0  # the last usable value is kept

        old, edge = edge, EdgeNode(broker, bd_seq=8)
        edge.births()
        wait(lambda: quality_name(cache.status[line]) == "good", "the node reborn")
        edge.mqtt.publish(edge.topic("NDEATH"), old.death(), qos=1).wait_for_publish(5)  # a late will of bdSeq 7
        edge.send("NDATA", [(None, 1, sp.DOUBLE, 0.9)])
        wait(lambda: cache.signal_value(line) == 0.9, "data after the late will")
        assert quality_name(cache.status[line]) == "good"  # that will was not this session's death
        broker.stop()
        wait(lambda: quality_name(cache.status[line]) == "stale", "the broker's loss marking signals stale")
        assert not connector.health()["uns"]["connected"]
        broker.start()
        wait(lambda: connector.health()["uns"]["connects"] == 2, "the reconnection", timeout=20)
    finally:
        edge.mqtt.loop_stop()
        for session in connector.sessions.values():
            session.stop()


def test_tls_and_password(tmp_path, monkeypatch):
    broker = start_broker(tmp_path / "broker", tls=True, users={"twin": "s3cret"})
    try:
        (tmp_path / "ca.pem").write_bytes(broker.ca.read_bytes())
        path = tmp_path / "bindings.yaml"
        path.write_text(f"""brokers:
  uns:
    url: mqtts://127.0.0.1:{broker.port}
    tls: {{ca: ca.pem}}
    username: twin
    password_env: TWIN_TEST_MQTT_PASSWORD
bindings:
  - server: uns
    topic: plant/temperature
    prim: /F/Oven
    attr: twin:temperature
""")
        monkeypatch.setenv("TWIN_TEST_MQTT_PASSWORD", "s3cret")
        cache = RuntimeCache()
        connector = MqttConnector(load_bindings(path), cache)
        start(connector)
        wait(lambda: connector.health()["uns"]["connected"], "a TLS connection with the password")
        plant = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="plant")
        plant.tls_set(ca_certs=str(broker.ca))
        plant.username_pw_set("twin", "s3cret")
        plant.connect("127.0.0.1", broker.port)
        plant.loop_start()
        row = cache.signal_row("/F/Oven", "twin:temperature")
        wait(lambda: plant.publish("plant/temperature", b"181.5", qos=1) and cache.signal_value(row) == 181.5,
             "a value over TLS")
        plant.disconnect()
        plant.loop_stop()
        connector.sessions["uns"].stop()

        monkeypatch.setenv("TWIN_TEST_MQTT_PASSWORD", "wrong")
        refused = MqttConnector(load_bindings(path), RuntimeCache())
        start(refused)
        wait(lambda: "refused" in (refused.health()["uns"]["last_error"] or ""), "the refusal of a wrong password")
        assert "bindings.yaml:2: broker 'uns'" in refused.health()["uns"]["last_error"]
        refused.sessions["uns"].stop()
    finally:
        broker.stop()


@pytest.mark.parametrize(("entry", "message"), [
    ("    topic: a/b\n    node: ns=2;s=X\n", "give one of 'topic' and 'sparkplug'"),
    ("    sparkplug: G/E\n", "needs the metric's name"),
    ("    topic: a/#\n", "no wildcards"),
    ("    topic: a/b\n    deadband: {absolute: 1}\n", "deadband is an OPC-UA setting"),
    ("    topic: a/b\n    direction: both\n", "MQTT bindings read"),
    ("    node: ns=2;s=X\n", "'uns' is an MQTT broker"),
    ("    sparkplug: G/E\n    metric: m\n    value_path: x\n", "value_path and time_path are for JSON topics"),
])
def test_binding_file_errors_name_the_line(tmp_path, entry, message):
    path = tmp_path / "bindings.yaml"
    path.write_text("brokers:\n  uns:\n    url: mqtt://127.0.0.1:1883\nbindings:\n  - server: uns\n"
                    f"    prim: /F/X\n    attr: a\n{entry}")
    with pytest.raises(BindingError, match=message) as caught:
        load_bindings(path)
    assert "bindings.yaml:" in str(caught.value)


def test_broker_settings_are_checked(tmp_path):
    path = tmp_path / "bindings.yaml"
    path.write_text("brokers:\n  uns:\n    url: mqtt://h:1883\n    tls: {ca: ca.pem}\nbindings: []\n")
    with pytest.raises(BindingError, match=r"bindings.yaml:4: broker 'uns': tls settings need an mqtts:// url"):
        load_bindings(path)
    path.write_text("brokers:\n  uns:\n    url: http://h\nbindings: []\n")
    with pytest.raises(BindingError, match=r"bindings.yaml:3: broker 'uns': url must be an mqtt://"):
        load_bindings(path)
    path.write_text("brokers:\n  uns:\n    url: mqtts://h\n    password: x\nbindings: []\n")
    with pytest.raises(BindingError, match="passwords are never read from the binding file"):
        load_bindings(path)
    path.write_text("bindings: []\n")
    with pytest.raises(BindingError, match="missing section 'servers'"):
        load_bindings(path)
