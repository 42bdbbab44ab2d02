"""MQTT in (connectors/mqtt.py) and out (twin/server/publish_mqtt.py) against Debian's mosquitto, started here."""

from __future__ import annotations

import json
import struct
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


# ---------------------------------------------------------------------------------------------- MQTT out
def wire(data: bytes) -> list[tuple[int, object]]:
    """Protobuf's wire format read by hand, (field number, value) pairs: an independent check of the field
    numbers the Sparkplug B spec gives (Payload: 1 timestamp, 2 metrics, 3 seq; Metric: 1 name, 2 alias,
    3 timestamp, 4 datatype, 9 properties, 10 int, 11 long, 13 double, 15 string)."""
    fields, at = [], 0

    def varint() -> int:
        nonlocal at
        value = shift = 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while at < len(data):
        key = varint()
        number, kind = key >> 3, key & 7
        if kind == 0:
            fields.append((number, varint()))
        elif kind == 1:
            fields.append((number, struct.unpack_from("<d", data, at)[0]))
            at += 8
        elif kind == 2:
            size = varint()
            fields.append((number, data[at:at + size]))
            at += size
        elif kind == 5:
            fields.append((number, struct.unpack_from("<f", data, at)[0]))
            at += 4
        else:
            raise AssertionError(f"unexpected wire type {kind}")
    return fields


def decoded(data: bytes) -> dict:
    """A Sparkplug payload as {seq, metrics: [{name, alias, datatype, value}]}, by the wire reader."""
    top = wire(data)
    metrics = []
    for number, raw in top:
        if number == 2:
            fields = dict(wire(raw))
            value = next((v for n, v in wire(raw) if n in (10, 11, 12, 13, 14, 15, 16)), None)
            metrics.append({"name": fields.get(1, b"").decode(), "alias": fields.get(2), "datatype": fields.get(4),
                            "value": value.decode() if isinstance(value, bytes) and fields.get(4) == 12 else value})
    return {"seq": dict(top).get(3, 0), "metrics": metrics}


def publisher_setup(tmp_path: Path, broker: Broker, publish: str, bd_seq_path: Path | None = None):
    from twin.core.alarms import AlarmEngine, parse_rule
    from twin.server.publish_mqtt import MqttPublisher

    path = tmp_path / "bindings.yaml"
    path.write_text(f"brokers:\n  uns:\n    url: mqtt://127.0.0.1:{broker.port}\npublish:\n{publish}bindings: []\n")
    config = load_bindings(path).publish
    cache = RuntimeCache()
    oee = cache.add_signal("/F/Line", "twin:kpi:oee")
    state = cache.add_signal("/F/Press", "twin:state", kind="int", labels={0: "idle", 1: "working"})
    cache.write_signal(oee, 0.5)
    cache.write_signal(state, 1.0, label="working")
    cache.add_signal("/F/Line", "twin:kpi:wip")  # no value yet: published as null, bad
    alarms = AlarmEngine(cache, [parse_rule({"high": 0.9, "name": "oee_high"}, "/F/Line.twin:kpi:oee")])
    studies = [{"id": "job-1", "status": "done", "finished": 1.0, "result": {"throughput": 12}}]
    rows = [oee, state, cache.signal_row("/F/Line", "twin:kpi:wip")]
    publisher = MqttPublisher(config, path, cache, rows, alarms, whatif=lambda: studies, bd_seq_path=bd_seq_path)
    return publisher, cache, alarms, oee


def test_sparkplug_publisher_births_data_and_death(tmp_path, broker):
    import asyncio

    received: list[tuple[str, bytes]] = []
    reader = client(broker, "scada")
    reader.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    reader.subscribe("spBv1.0/Twin/#", 1)
    settings = "  broker: uns\n  group: Twin\n  edge_node: Line1\n  period_s: 0.1\n"
    kept = tmp_path / "bdseq"
    publisher, cache, alarms, oee = publisher_setup(tmp_path, broker, settings, kept)

    def messages(kind: str) -> list[dict]:
        return [decoded(payload) for topic, payload in list(received) if topic.split("/")[2] == kind]

    async def scenario() -> None:
        await publisher.start()
        await asyncio.to_thread(wait, lambda: len(messages("DBIRTH")) == 2, "the births")
        nbirth = messages("NBIRTH")[0]
        names = {m["name"]: m for m in nbirth["metrics"]}
        assert names["bdSeq"]["value"] == 0 and nbirth["seq"] == 0
        assert json.loads(names["WhatIf/Last"]["value"])["result"] == {"throughput": 12}
        signals = next(m for t, m in [(t, decoded(p)) for t, p in received] if t.endswith("DBIRTH/Line1/Signals"))
        assert [(m["name"], m["alias"], m["datatype"]) for m in signals["metrics"]] == [
            ("F/Line.twin:kpi:oee", 1, sp.DOUBLE), ("F/Press.twin:state", 2, sp.INT64),
            ("F/Line.twin:kpi:wip", 3, sp.DOUBLE)]
        assert signals["metrics"][0]["value"] == 0.5 and signals["metrics"][1]["value"] == 1
        assert signals["metrics"][2]["value"] is None  # null: no value field, is_null set

        cache.write_signal(oee, 0.95)
        alarms.evaluate()
        await asyncio.to_thread(wait, lambda: len(messages("DDATA")) == 2, "the KPI's and the alarm's data")
        data = messages("DDATA")
        assert data[0]["metrics"] == [{"name": "", "alias": 1, "datatype": sp.DOUBLE, "value": 0.95}]
        assert {m["value"] for m in data[1]["metrics"]} >= {"raised", "active"}
        assert [m["seq"] for m in messages("NBIRTH") + messages("DBIRTH") + data] == [0, 1, 2, 3, 4]

        publisher.client._sock.close()  # the twin drops off the network: the broker sends its will...
        await asyncio.to_thread(wait, lambda: messages("NDEATH"), "the will")
        assert decoded_death(messages("NDEATH")[0]) == 0  # the same bdSeq as the birth
        await asyncio.to_thread(wait, lambda: len(messages("NBIRTH")) == 2, "the births after reconnecting")
        assert decoded_death(messages("NBIRTH")[1]) == 1  # ...and the next session counts on

        reader.publish("spBv1.0/Twin/NCMD/Line1", sp.rebirth_request())
        await asyncio.to_thread(wait, lambda: len(messages("NBIRTH")) == 3, "a rebirth on request")
        assert [m["seq"] for m in messages("NBIRTH")] == [0, 0, 0]
        await publisher.stop()
        await asyncio.to_thread(wait, lambda: len(messages("NDEATH")) == 2, "the death certificate on stopping")
        assert decoded_death(messages("NDEATH")[1]) == 1

        # a restarted twin counts on from the last session's bdSeq: a late will of that session is not its own
        restarted = publisher_setup(tmp_path, broker, settings, kept)[0]
        await restarted.start()
        await asyncio.to_thread(wait, lambda: len(messages("NBIRTH")) == 4, "the births after a restart")
        assert decoded_death(messages("NBIRTH")[3]) == 2
        await restarted.stop()
        kept.write_text("not a number\n")  # what cannot be read starts over at 0, with a warning
        assert publisher_setup(tmp_path, broker, settings, kept)[0].bd_seq == 0

    def decoded_death(death: dict) -> int:
        return next(m["value"] for m in death["metrics"] if m["name"] == "bdSeq")

    try:
        asyncio.run(scenario())
    finally:
        reader.disconnect()
        reader.loop_stop()


def test_json_publisher_and_its_will(tmp_path, broker):
    import asyncio

    received: dict[str, list] = {}
    reader = client(broker, "dashboard")
    reader.on_message = lambda c, u, m: received.setdefault(m.topic, []).append(json.loads(m.payload))
    reader.subscribe("twin/line1/#", 1)
    publisher, cache, alarms, oee = publisher_setup(
        tmp_path, broker, "  broker: uns\n  format: json\n  topic_root: twin/line1\n  period_s: 0.1\n")

    async def scenario() -> None:
        await publisher.start()
        await asyncio.to_thread(wait, lambda: "twin/line1/whatif/job-1" in received, "the retained state")
        assert received["twin/line1/status"][-1]["online"] is True
        assert received["twin/line1/signals/F/Press/twin:state"][-1] | {"time": 0} == {
            "value": 1, "quality": "good", "time": 0, "unit": "", "state": "working"}
        assert received["twin/line1/alarms/F/Line.twin:kpi:oee:oee_high"][-1]["state"] == "normal"
        assert received["twin/line1/signals/F/Line/twin:kpi:wip"][-1] == {"value": None, "quality": "bad", "time": None,
                                                                          "unit": ""}
        cache.write_signal(oee, 0.95)
        alarms.evaluate()
        await asyncio.to_thread(wait, lambda: "twin/line1/alarms/events" in received, "the alarm event")
        assert received["twin/line1/alarms/events"][0]["event"] == "raised"
        assert received["twin/line1/signals/F/Line/twin:kpi:oee"][-1]["value"] == 0.95
        await asyncio.to_thread(wait, lambda: received["twin/line1/alarms/F/Line.twin:kpi:oee:oee_high"][-1]["state"]
                                == "active", "the alarm's state")
        publisher.client._sock.close()  # the twin vanishes: the broker publishes its will
        await asyncio.to_thread(wait, lambda: received["twin/line1/status"][-1] == {"online": False}, "the will")
        publisher.client.loop_stop()

    try:
        asyncio.run(scenario())
    finally:
        reader.disconnect()
        reader.loop_stop()


def test_payloads_encoded_by_hand_from_the_spec_decode():
    """A DDATA payload written byte by byte with the spec's field numbers and encodings (two's complement in
    int_value, little-endian DoubleArray in bytes_value, a Quality property) reads back as the spec means it."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    def field(number: int, kind: int, body: bytes) -> bytes:
        return varint(number << 3 | kind) + (varint(len(body)) + body if kind == 2 else body)

    quality = field(1, 2, b"Quality") + field(2, 2, field(1, 0, varint(sp.INT32)) + field(3, 0, varint(500)))
    metrics = [
        field(2, 0, varint(5)) + field(3, 0, varint(1_700_000_000_123)) + field(4, 0, varint(sp.INT16))
        + field(10, 0, varint(65536 - 42)),  # Int16 -42, by alias
        field(1, 2, b"Temp") + field(4, 0, varint(sp.DOUBLE)) + field(13, 1, struct.pack("<d", 81.5))
        + field(9, 2, quality),
        field(1, 2, b"Axes") + field(4, 0, varint(31)) + field(16, 2, struct.pack("<2d", 1.5, -2.0)),
        field(1, 2, b"Name") + field(4, 0, varint(sp.STRING)) + field(15, 2, "Pressé 1".encode()),
        field(1, 2, b"Gone") + field(4, 0, varint(sp.DOUBLE)) + field(7, 0, varint(1)),
    ]
    raw = field(1, 0, varint(1_700_000_000_000)) + b"".join(field(2, 2, m) for m in metrics) + field(3, 0, varint(17))
    payload = sp.Payload.FromString(raw)
    assert payload.seq == 17 and payload.timestamp == 1_700_000_000_000
    decoded_metrics = list(payload.metrics)
    assert (decoded_metrics[0].alias, decoded_metrics[0].timestamp) == (5, 1_700_000_000_123)
    assert [sp.metric_value(m) for m in decoded_metrics] == [-42, 81.5, (1.5, -2.0), "Pressé 1", None]
    assert sp.metric_quality(decoded_metrics[1]) == sp.QUALITY_STALE
    assert sp.parse_topic("spBv1.0/Plant/DDATA/Line1/Press") == sp.Topic("Plant", "DDATA", "Line1", "Press")
    assert sp.parse_topic("spBv1.0/STATE/host") is None and sp.parse_topic("plant/line1") is None
