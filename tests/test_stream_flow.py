"""Stream flow control (docs/protocol.md): a client that acks has at most `max_unacked` frames in flight and
gets the newest state, never a backlog; a client that never acks is paced by its socket and stays correct; a
fast client gets every change as before. The simulation is paused, so only the test's own writes move the
cache (the clock sends a value written between ticks at once)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from websockets.sync.client import connect

from tests.helpers import serve_app
from twin.server.app import create_app
from twin.sim.runtime import Twin
from twin.stream.hub import StreamLimits
from twin.stream.protocol import Frame, StreamState

PRIM = "/Factory/Line/Machining"
WIDE = 50_000  # values in the wide signal: 400 kB frames fill a socket's buffers in a few frames
MAX_UNACKED = 2


@pytest.fixture(scope="module")
def twin(sample_layout):
    twin = Twin(sample_layout)
    twin.cache.add_signal(PRIM, "test:flow")
    twin.cache.add_signal(PRIM, "test:wide", width=WIDE)
    return twin


@pytest.fixture(scope="module")
def server(twin):
    # 5 control messages a second: a client acking 40 frames a second would be refused if acks counted
    limits = StreamLimits(heartbeat_s=1.0, stall_s=10.0, messages_per_s=5.0, max_unacked=MAX_UNACKED)
    app = create_app(twin, tick_hz=30, stream_limits=limits)
    app.state.clock.running = False
    with serve_app(app) as http:
        yield {"url": http.replace("http://", "ws://") + "/ws", "hub": app.state.hub}


@contextlib.contextmanager
def writing(twin: Twin, attr: str, every_s: float) -> Iterator[list[float]]:
    """Write 1, 2, 3, ... to PRIM.attr every `every_s` in a thread; yields the list of values written so far."""
    row, width = twin.cache.signal_row(PRIM, attr), twin.cache.signals[twin.cache.signal_row(PRIM, attr)].width
    written: list[float] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.wait(every_s):
            value = float(len(written) + 1)
            twin.cache.write_signal(row, value if width == 1 else np.full(width, value))
            written.append(value)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield written
    finally:
        stop.set()
        thread.join(5)


def value_of(state: StreamState, attr: str) -> float:
    value = state.signals[f"{PRIM}.{attr}"]["v"]
    return float(value if np.isscalar(value) else value[-1])


def until_snapshot(ws, state: StreamState) -> Frame:
    while not (isinstance(message := state.receive(ws.recv(timeout=10)), Frame) and message.snapshot):
        assert isinstance(message, Frame) or message.get("type") != "error", message
    return message


def ack(ws, version: int) -> None:
    ws.send(json.dumps({"type": "ack", "version": version}))


def drain(ws, state: StreamState, errors: list[str]) -> list[Frame]:
    """Every message that has arrived, applied in order (StreamState raises Gap on a delta with a wrong base)."""
    frames = []
    with contextlib.suppress(TimeoutError):
        while True:
            message = state.receive(ws.recv(timeout=0))
            if isinstance(message, Frame):
                frames.append(message)
            elif message.get("type") == "error":
                errors.append(message["error"])
    return frames


def test_a_slow_acking_client_has_at_most_max_unacked_in_flight_and_converges(server, twin):
    """Like a page that renders 5 frames a second: it takes what arrived, applies it and acks the newest."""
    state, errors = StreamState(), []
    with connect(server["url"]) as ws:
        ack(ws, until_snapshot(ws, state).version)
        time.sleep(0.2)  # the ack is in before anything changes
        in_flight = []
        with writing(twin, "test:flow", every_s=0.005) as written:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                time.sleep(0.2)  # "rendering"
                frames = drain(ws, state, errors)
                in_flight.append(len(frames))
                if frames:
                    ack(ws, frames[-1].version)
        last = written[-1]
        deadline = time.monotonic() + 3.0
        while value_of(state, "test:flow") != last and time.monotonic() < deadline:
            time.sleep(0.05)
            frames = drain(ws, state, errors)
            if frames:
                ack(ws, frames[-1].version)
    assert not errors
    assert max(in_flight) <= MAX_UNACKED, in_flight  # without flow control: ~40 queued frames a cycle
    assert sum(in_flight) <= MAX_UNACKED * len(in_flight) < len(written) / 10  # intermediate values skipped
    assert value_of(state, "test:flow") == last  # the newest state, once the writes stop


def test_a_client_that_never_acks_is_paced_by_its_socket_and_stays_correct(server, twin):
    state, errors = StreamState(), []
    sock = socket.create_connection(("127.0.0.1", int(server["url"].split(":")[2].split("/")[0])))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # no autotuning to tens of megabytes
    with connect(server["url"], sock=sock, max_size=None) as ws:
        until_snapshot(ws, state)
        stats = server["hub"].stats
        sent_before = stats.frames_sent
        with writing(twin, "test:wide", every_s=0.02) as written:  # 400 kB per write, nothing read
            time.sleep(1.0)
            sent_at_1s = stats.frames_sent
            time.sleep(1.0)
            sent_at_2s = stats.frames_sent
            count = len(written)
        assert sent_at_2s == sent_at_1s  # buffers full: the server sends nothing more and queues nothing
        assert sent_at_2s - sent_before < count / 2  # writes coalesced while the socket did not drain
        last = written[-1]
        deadline = time.monotonic() + 10.0
        while value_of(state, "test:wide") != last and time.monotonic() < deadline:
            drain(ws, state, errors)
            time.sleep(0.01)
    assert not errors
    assert value_of(state, "test:wide") == last


def test_a_fast_client_gets_every_change_and_its_acks_are_not_rate_limited(server, twin):
    """Writes 40 a second; a client that acks at once sees each value, as one that never acks does, though
    the server allows 5 other control messages a second."""
    seen: dict[str, list[float]] = {"acks": [], "no acks": []}
    latency: dict[str, list[float]] = {"acks": [], "no acks": []}
    errors: list[str] = []
    stop = threading.Event()

    def read(name: str) -> None:
        state = StreamState()
        with connect(server["url"]) as ws:
            until_snapshot(ws, state)
            ready.wait()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    message = state.receive(ws.recv(timeout=0.1))
                    if isinstance(message, Frame):
                        latency[name].append(time.time() - state.signals[f"{PRIM}.test:flow"]["t"])
                        seen[name].append(value_of(state, "test:flow"))
                        if name == "acks":
                            ack(ws, message.version)
                    elif message.get("type") == "error":
                        errors.append(message["error"])

    ready = threading.Barrier(3)
    readers = [threading.Thread(target=read, args=(name,), daemon=True) for name in seen]
    for reader in readers:
        reader.start()
    ready.wait()
    with writing(twin, "test:flow", every_s=0.025) as written:
        time.sleep(2.0)
    time.sleep(0.3)
    stop.set()
    for reader in readers:
        reader.join(5)
    assert not errors
    for name in seen:
        assert len(set(seen[name]) & set(written)) >= 0.9 * len(written), name
        assert seen[name][-1] == written[-1]
    assert np.median(latency["acks"]) <= np.median(latency["no acks"]) + 0.01


def test_resync_while_behind_gets_a_snapshot_and_bad_acks_are_answered(server, twin):
    state, errors = StreamState(), []
    with connect(server["url"]) as ws:
        ack(ws, until_snapshot(ws, state).version)
        with writing(twin, "test:flow", every_s=0.005):
            time.sleep(0.3)  # the window fills; nothing acked
        assert len(drain(ws, state, errors)) <= MAX_UNACKED
        ws.send(json.dumps({"type": "resync"}))
        until_snapshot(ws, state)  # sent though the client is behind
        ws.send(json.dumps({"type": "ack", "version": state.version + 1000}))
        ws.send(json.dumps({"type": "ack", "version": "7"}))
        deadline = time.monotonic() + 5
        while len(errors) < 2 and time.monotonic() < deadline:
            drain(ws, state, errors)
            time.sleep(0.02)
    assert f"version {state.version + 1000} was not sent to this client" in errors[0]
    assert "version must be the non-negative integer" in errors[1]
