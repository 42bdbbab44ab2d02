"""`twin relay`: real mosquitto, a real `twin serve` of the sample layout publishing its stream state
(`publish: {stream: true}`), and real relay processes serving it. A value the plant sends to the line reaches a
relay's websocket clients; two relays' streams agree with the line's own, value for value; a relay started late
gets the whole state; a relay survives a broker restart and resyncs; writes to a relay are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from websockets.sync.client import connect

from tests.helpers import free_port, stop_process
from tests.mqtt_broker import Broker, needs_mosquitto, start_broker
from twin.core.errors import TwinError
from twin.site.relay import relay_broker

TEMPERATURE = "/Factory/Line/Conveyor1.twin:temperature"
OPERATOR = "relay-test-operator-token-0123456789"
BINDINGS = """\
brokers:
  uns: {{url: "mqtt://127.0.0.1:{port}", keepalive_s: 2}}
publish: {{broker: uns, format: json, topic_root: twin/line1, stream: true}}
bindings:
  - {{server: uns, topic: plant/line1/temperature, value_path: v, time_path: ts, prim: /Factory/Line/Conveyor1,
     attr: twin:temperature}}
"""


class Process:
    def __init__(self, args: list[str], log: Path, port: int):
        self.url, self.log = f"http://127.0.0.1:{port}", log
        env = {**os.environ, "TWIN_TOKENS": f"ops:operator:{OPERATOR}"}
        with log.open("wb") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "twin.cli", *args, "--port", str(port)],
                                            stdout=output, stderr=subprocess.STDOUT, env=env)

    def get(self, path: str) -> dict:
        return httpx.get(f"{self.url}{path}", timeout=10).json()

    def stop(self) -> None:
        stop_process(self.process, grace_s=15)


def wait(predicate: Callable[[], object], timeout: float, what: str, *processes: Process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.process.poll() is not None:
                pytest.fail(f"{process.log.name} exited: {process.log.read_text()[-3000:]}")
        try:
            if predicate():
                return
        except (httpx.TransportError, ValueError, KeyError):  # not serving yet
            pass
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; "
                + "; ".join(f"{p.log.name}: {p.log.read_text()[-1500:]}" for p in processes))


def snapshot(url: str) -> dict:
    """The first frame of the JSON stream: every transform, signal and instance set."""
    with connect(url.replace("http://", "ws://") + "/ws?format=json", open_timeout=10) as websocket:
        while (message := json.loads(websocket.recv(timeout=10)))["type"] != "snapshot":
            pass
    return message


def stream_value(url: str, key: str, wanted: float, timeout: float) -> float:
    """Read the binary-free JSON stream until `key` holds `wanted`; the seconds that took."""
    started = time.monotonic()
    with connect(url.replace("http://", "ws://") + "/stream?format=json", open_timeout=10) as websocket:
        while time.monotonic() - started < timeout:
            message = json.loads(websocket.recv(timeout=timeout))
            if message.get("signals", {}).get(key, {}).get("v") == wanted:
                return time.monotonic() - started
    pytest.fail(f"{key} never became {wanted} in the stream of {url}")


@pytest.fixture(scope="module")
def line(sample_layout, tmp_path_factory) -> Iterator[tuple[Process, Broker, paho.Client]]:
    folder = tmp_path_factory.mktemp("relay")
    broker = start_broker(folder / "broker")
    plant = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    plant.connect("127.0.0.1", broker.port)
    plant.loop_start()
    bindings = folder / "bindings.yaml"
    bindings.write_text(BINDINGS.format(port=broker.port))
    process = Process(["serve", str(sample_layout), "--bindings", str(bindings)], folder / "line.log", free_port())
    process.broker_url = f"mqtt://127.0.0.1:{broker.port}"  # type: ignore[attr-defined]
    try:
        yield process, broker, plant
    finally:
        process.stop()
        plant.loop_stop()
        broker.stop()


def start_relay(line: Process, layout: Path) -> Process:
    relay = Process(["relay", str(layout), "--broker", line.broker_url, "--topic-root", "twin/line1"],  # type: ignore
                    line.log.with_name(f"relay-{free_port()}.log"), free_port())
    wait(lambda: httpx.get(f"{relay.url}/healthz", timeout=5).status_code == 200, 180, "the relay synced", relay, line)
    return relay


@pytest.fixture(scope="module")
def relay(line, sample_layout) -> Iterator[Process]:
    process = start_relay(line[0], sample_layout)
    yield process
    process.stop()


def publish(plant: paho.Client, value: float) -> None:
    payload = json.dumps({"v": value, "ts": time.time()})
    plant.publish("plant/line1/temperature", payload, qos=1).wait_for_publish(5)


@needs_mosquitto
@pytest.mark.slow
def test_a_value_written_to_the_line_reaches_a_relays_clients(line, relay):
    process, _, plant = line
    with connect(relay.url.replace("http://", "ws://") + "/ws?format=json", open_timeout=10) as websocket:
        assert json.loads(websocket.recv(timeout=10))["type"] == "hello"
        publish(plant, 41.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = json.loads(websocket.recv(timeout=10))
            if frame.get("signals", {}).get(TEMPERATURE, {}).get("v") == 41.5:
                break
        else:
            pytest.fail("the relay's client never saw the value")
    assert frame["signals"][TEMPERATURE]["q"] == "good"
    assert relay.get(f"/api/signals?keys={TEMPERATURE}")[TEMPERATURE]["v"] == 41.5  # read-only REST
    refused = httpx.post(f"{relay.url}/api/write", json={"prim": "/Factory/Line/Conveyor1", "attr": "twin:speed",
                                                         "value": 1.0}, timeout=10)
    assert refused.status_code == 405 and "read-only relay" in refused.json()["detail"]
    assert "belongs to the line" in refused.json()["detail"]
    # a relay that has just started may take its first values from a keyframe it asked for after a gap;
    # once synced, the next change comes as a delta
    publish(plant, 42.5)
    stream_value(relay.url, TEMPERATURE, 42.5, 10)
    health = relay.get("/api/health")["relay"]
    assert health["synced"] and health["keyframes"] >= 1 and health["deltas"] >= 1 and health["errors"] == 0


@needs_mosquitto
@pytest.mark.slow
def test_a_late_relay_gets_the_whole_state_and_two_relays_agree_with_the_line(line, relay, sample_layout):
    process, _, plant = line
    publish(plant, 55.25)
    stream_value(relay.url, TEMPERATURE, 55.25, 10)
    late = start_relay(process, sample_layout)  # after the value: it comes with the keyframe
    try:
        assert late.get(f"/api/signals?keys={TEMPERATURE}")[TEMPERATURE]["v"] == 55.25
        paused = httpx.post(f"{process.url}/api/simulation", json={"running": False}, timeout=10,
                            headers={"Authorization": f"Bearer {OPERATOR}"})
        assert paused.status_code == 200

        def line_version() -> int:
            return process.get("/api/connectors")["uns (stream)"]["version"]

        def settled() -> bool:  # the line stands still and both relays hold its last version
            version = line_version()
            time.sleep(0.3)
            return version == line_version() and all(r.get("/api/health")["relay"]["line_version"] == version
                                                     for r in (relay, late))

        wait(settled, 15, "the line paused and both relays at its version", process, relay, late)
        frames = [snapshot(url) for url in (process.url, relay.url, late.url)]
        for part in ("transforms", "signals", "instances"):
            assert frames[1][part] == frames[0][part] == frames[2][part], part
        assert len(frames[0]["signals"]) > 10 and frames[0]["signals"][TEMPERATURE]["v"] == 55.25
    finally:
        httpx.post(f"{process.url}/api/simulation", json={"running": True}, timeout=10,
                   headers={"Authorization": f"Bearer {OPERATOR}"})
        late.stop()


@needs_mosquitto
@pytest.mark.slow
def test_a_relay_survives_a_broker_restart_and_resyncs(line, relay):
    process, broker, plant = line
    broker.stop()
    wait(lambda: httpx.get(f"{relay.url}/healthz", timeout=5).status_code == 503, 10, "the relay unsynced", relay)
    assert relay.get(f"/api/signals?keys={TEMPERATURE}")[TEMPERATURE]["q"] == "stale"
    broker.start()
    wait(lambda: httpx.get(f"{relay.url}/healthz", timeout=5).status_code == 200, 30, "the relay synced again",
         relay, process)
    wait(lambda: plant.is_connected() and process.get("/api/connectors")["uns"]["connected"], 30,
         "the plant and the line back on the broker", process)
    publish(plant, 66.0)
    stream_value(relay.url, TEMPERATURE, 66.0, 15)
    assert relay.get(f"/api/signals?keys={TEMPERATURE}")[TEMPERATURE]["q"] == "good"


def test_a_relay_names_a_bad_broker_url():
    with pytest.raises(TwinError, match=r"--broker: 'http://x' is not an mqtt://"):
        relay_broker("http://x")
    assert relay_broker("mqtts://broker.plant.example").port == 8883


def test_the_mirror_holds_exactly_the_lines_values_and_sees_gaps():
    """Without processes: keyframe, delta and a missed delta between two caches (twin/stream/mirror.py)."""
    import numpy as np

    from twin.core.cache import RuntimeCache
    from twin.stream.mirror import CacheMirror, MirrorError, decode_state, encode_state

    line = RuntimeCache()
    line.add_signal("/A", "x")
    line.add_signal("/A", "v", width=3)
    line.add_signal("/A", "t", kind="text")
    line.add_signal("/A", "s", kind="int", labels={0: "idle", 1: "run"})
    line.add_transform("/R")
    line.add_instance_set("parts", 4)
    line.write_signal(0, 1 / 3, source_time=10.0)
    line.write_signal(1, [1.0, 2.0, 3.0])
    line.write_signal(2, "hello")
    line.write_signal(3, 1.0, label="run")
    moved = np.eye(4)
    moved[0, 3] = 2.5
    line.write_transforms(np.array([0]), moved[None])
    parts = np.tile(np.eye(4), (4, 1, 1))
    parts[1, 1, 3] = 7.0
    line.write_instances("parts", parts, np.array([False, True, False, False]))
    relay = RuntimeCache()
    relay.add_signal("/B", "own")  # the relay's rows differ from the line's: the keyframe's schema maps them
    mirror = CacheMirror(relay)
    keyframe, version = encode_state(line, "S1", None)
    assert mirror.apply(decode_state(keyframe))
    rows = mirror.signal_rows
    assert relay.signal_value(int(rows[0])) == 1 / 3 and relay.source_time[rows[0]] == 10.0
    assert relay.signal_value(int(rows[1])).tolist() == [1.0, 2.0, 3.0] and relay.text[rows[2]] == "hello"
    assert relay.text[rows[3]] == "run" and relay.signals[rows[3]].labels == {0: "idle", 1: "run"}
    assert relay.transforms[mirror.transform_rows[0]][0, 3] == 2.5
    assert relay.instance_sets["parts"].active.tolist() == [False, True, False, False]
    line.write_signal(0, 2.5)
    delta, newer = encode_state(line, "S1", version)
    assert encode_state(line, "S1", newer)[0] is None  # nothing changed since
    assert mirror.apply(decode_state(delta)) and relay.signal_value(int(rows[0])) == 2.5
    line.write_signal(0, 3.5)
    line.write_signal(0, 4.5)
    assert not mirror.apply(decode_state(encode_state(line, "S1", newer + 1)[0]))  # one delta missed
    assert mirror.gaps == 1 and relay.signal_value(int(rows[0])) == 2.5
    with pytest.raises(MirrorError, match="no TWMR magic"):
        decode_state(b"garbage")
