"""The binary stream protocol against a real server on loopback (docs/protocol.md): snapshot, deltas,
resync after a dropped frame, subscriptions, heartbeats, a stalled client, bad messages."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers import free_port, serve_app
from twin.core.transforms import pose_to_matrix
from twin.server.app import create_app
from twin.sim.runtime import Twin
from twin.stream.hub import StreamLimits
from twin.stream.protocol import Gap, StreamState

ROBOT = "/Factory/Line/Robot1"


@pytest.fixture(scope="module")
def twin(sample_layout):
    return Twin(sample_layout)


@pytest.fixture(scope="module")
def server(twin):
    limits = StreamLimits(heartbeat_s=0.4, stall_s=1.0, max_message_bytes=4096, messages_per_s=20.0,
                          abuse_limit=60)
    app = create_app(twin, tick_hz=30, stream_limits=limits)
    port = free_port()
    with serve_app(app, port):
        yield {"url": f"ws://127.0.0.1:{port}/ws", "port": port, "app": app}


def read_until(ws, state: StreamState, predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = state.receive(ws.recv(timeout=timeout))
        if predicate(message):
            return message
    raise AssertionError("the expected message did not come")


def is_type(kind):
    return lambda message: isinstance(message, dict) and message.get("type") == kind


def is_frame(message) -> bool:
    return not isinstance(message, dict)


def test_snapshot_then_deltas_carry_poses_values_and_quality(server, twin):
    state = StreamState()
    with connect(server["url"]) as ws:
        hello = state.receive(ws.recv(timeout=5))
        assert hello["type"] == "hello" and hello["format"] == "binary" and hello["heartbeat_s"] == 0.4
        snapshot = read_until(ws, state, is_frame)
        assert snapshot.snapshot and state.schema is not None
        assert len(state.transforms) == len(twin.cache.transform_prims)
        link = f"{ROBOT}/link_2"
        expected = twin.cache.transforms[twin.cache.transform_row(link)]
        assert np.abs(pose_to_matrix(state.transforms[link].astype(np.float64)) - expected).max() < 2e-4

        original = pose_to_matrix(state.transforms[link].astype(np.float64))
        row = twin.cache.signal_row(ROBOT, "twin:jointPositions")
        twin.cache.write_signal(row, np.array([0.5, -1.0, 1.0, 0.0, 1.0, 0.0]))
        key = f"{ROBOT}.twin:jointPositions"
        delta = read_until(ws, state, lambda m: is_frame(m) and not m.snapshot and key in state.signals
                           and np.allclose(state.signals[key]["v"], [0.5, -1.0, 1.0, 0.0, 1.0, 0.0]))
        assert delta.base < delta.version
        assert state.signals[key]["q"] == "good"
        # The simulation step poses the links from the joints; a frame (maybe the same) brings the moved link.
        def moved(_=None) -> bool:
            return np.abs(pose_to_matrix(state.transforms[link].astype(np.float64)) - original).max() > 1e-2

        if not moved():
            read_until(ws, state, lambda m: is_frame(m) and moved())
        now = twin.cache.transforms[twin.cache.transform_row(link)]
        assert np.abs(pose_to_matrix(state.transforms[link].astype(np.float64)) - now).max() < 2e-4

        stale = twin.cache.add_signal("/Factory/Line/Machining", "twin:state", kind="int")  # a new row: new schema
        twin.cache.write_signal(stale, 4.0, label="down")
        twin.cache.mark_status([stale], 0x40900000)
        read_until(ws, state, lambda m: is_frame(m)
                   and state.signals["/Factory/Line/Machining.twin:state"]["q"] == "stale")
        assert state.signals["/Factory/Line/Machining.twin:state"]["l"] == "down"


def test_a_dropped_frame_is_noticed_and_resynced(server, twin):
    state = StreamState()
    row = twin.cache.add_signal(ROBOT, "twin:cycles", kind="int")
    with connect(server["url"]) as ws:
        read_until(ws, state, is_frame)
        twin.cache.write_signal(row, 1.0)
        while True:  # lose one delta on purpose, as a broken client would
            message = ws.recv(timeout=5)
            if isinstance(message, bytes):
                break
        twin.cache.write_signal(row, 2.0)
        with pytest.raises(Gap, match="delta from version"):
            read_until(ws, state, is_frame)
        ws.send(json.dumps({"type": "resync"}))
        snapshot = read_until(ws, state, lambda m: is_frame(m) and m.snapshot)
        assert snapshot.snapshot and state.signals[f"{ROBOT}.twin:cycles"]["v"] == 2.0


def test_subscriptions_to_a_subtree_and_to_signals(server, twin):
    state = StreamState()
    with connect(server["url"]) as ws:
        read_until(ws, state, is_frame)
        ws.send(json.dumps({"type": "subscribe", "subtrees": [ROBOT]}))
        read_until(ws, state, is_type("subscribed"))
        state.transforms.clear()
        state.signals.clear()
        state.instances.clear()
        read_until(ws, state, lambda m: is_frame(m) and m.snapshot)
        assert state.transforms and all(path.startswith(ROBOT + "/") for path in state.transforms)
        assert state.signals and all(key.startswith(ROBOT + ".") for key in state.signals)
        assert not state.instances  # parts are not under the robot

        key = "/Factory/Line/Conveyor1.twin:partPositions"
        ws.send(json.dumps({"type": "subscribe", "signals": [key]}))
        read_until(ws, state, is_type("subscribed"))
        state.transforms.clear()
        state.signals.clear()
        read_until(ws, state, lambda m: is_frame(m) and m.snapshot)
        assert list(state.signals) == [key] and not state.transforms

        ws.send(json.dumps({"type": "subscribe", "signals": ["/Factory/Nope.twin:x"]}))
        error = read_until(ws, state, is_type("error"))
        assert "unknown signals: /Factory/Nope.twin:x" in error["error"]


def test_heartbeats_on_a_quiet_stream_and_ping(server):
    state = StreamState()
    with connect(server["url"]) as ws:
        read_until(ws, state, is_frame)
        heartbeat = read_until(ws, state, is_type("heartbeat"), timeout=3)
        assert heartbeat["version"] == state.version
        ws.send(json.dumps({"type": "ping", "id": 7}))
        assert read_until(ws, state, is_type("pong"))["id"] == 7


def test_bad_messages_get_errors_and_abuse_closes(server):
    state = StreamState()
    with connect(server["url"]) as ws:
        read_until(ws, state, is_frame)
        for message, expected in (("{not json", "not JSON"), (json.dumps({"type": "dance"}), "unknown message type"),
                                  (json.dumps([1, 2]), "unknown message type"),
                                  (b"\x00\x01", "binary messages are not accepted")):
            ws.send(message)
            assert expected in read_until(ws, state, is_type("error"))["error"]
        ws.send(json.dumps({"type": "subscribe", "subtrees": "Factory"}))
        assert "subtrees must be a list" in read_until(ws, state, is_type("error"))["error"]
    with connect(server["url"]) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.send("x" * 5000)  # over max_message_bytes (4096 here)
        while True:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1009
    with connect(server["url"]) as ws, pytest.raises(ConnectionClosed) as closed:
        for _ in range(200):
            ws.send(json.dumps({"type": "ping"}))
        while True:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1008 and "too many messages" in closed.value.rcvd.reason


def test_a_stalled_client_is_dropped_and_never_slows_the_others(server, twin):
    """One client stops reading while big frames flow; it is dropped with 4001, the other keeps 30 Hz."""
    big = twin.cache.add_signal("/Factory/Line/Conveyor1", "twin:bulk", width=20_000)
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            twin.cache.write_signal(big, np.random.random(20_000))
            time.sleep(1 / 60)

    writer = threading.Thread(target=churn, daemon=True)
    writer.start()
    stalled = socket.create_connection(("127.0.0.1", server["port"]))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    stalled.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server['port']}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b"101" in stalled.recv(12)  # switched protocols; from here on it never reads
    try:
        state = StreamState()
        with connect(server["url"], max_size=2**24) as ws:
            read_until(ws, state, is_frame)
            started = time.monotonic()
            frames, gaps = 0, []
            last = time.monotonic()
            while time.monotonic() - started < 4.0:
                message = state.receive(ws.recv(timeout=5))
                if is_frame(message):
                    frames += 1
                    gaps.append(time.monotonic() - last)
                    last = time.monotonic()
            hub = server["app"].state.hub
            assert hub.stats.dropped_stalled >= 1  # dropped after stall_s (1 s here)
            assert frames / 4.0 > 20  # the well-behaved client kept its pace meanwhile
            assert max(gaps) < 0.5
    finally:
        stop.set()
        writer.join(2)
        stalled.close()
