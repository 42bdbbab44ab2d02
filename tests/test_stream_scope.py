"""A subscribed client never sees a delta based on a version it was not sent (docs/protocol.md, "Versions").

Rows outside a client's scope change every tick (the simulation poses parts and links); the client's own
signal changes rarely. Every delta it receives must be based on the version of the last frame it holds.
"""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from tests.helpers import serve_app
from twin.server.app import create_app
from twin.sim.runtime import Twin
from twin.stream.protocol import StreamState

MACHINING = "/Factory/Line/Machining"


@pytest.fixture(scope="module")
def served(sample_layout):
    twin = Twin(sample_layout)
    with serve_app(create_app(twin, tick_hz=30)) as url:
        yield twin, url.replace("http://", "ws://") + "/ws"


def test_a_scoped_client_holds_every_base(served):
    twin, url = served
    row = twin.cache.add_signal(MACHINING, "twin:scopeProbe", kind="int")
    other = twin.cache.add_signal(MACHINING, "twin:outOfScope", kind="int")
    state = StreamState()
    key = f"{MACHINING}.twin:scopeProbe"
    with connect(url) as ws:
        ws.send(json.dumps({"type": "subscribe", "signals": [key]}))
        deltas = heartbeats = 0
        deadline = time.monotonic() + 6
        value = 0
        while time.monotonic() < deadline:
            for _ in range(5):  # out of scope: the cache's version moves on without this client
                twin.cache.write_signal(other, float(time.monotonic()))
                time.sleep(0.02)
            value += 1
            twin.cache.write_signal(row, float(value))
            while True:  # StreamState raises Gap on a delta whose base is not the held version
                message = state.receive(ws.recv(timeout=5))
                if isinstance(message, dict):
                    if message["type"] == "heartbeat":
                        heartbeats += 1
                        assert message["version"] == state.version  # the version the client holds
                    continue
                if message.snapshot:
                    continue
                deltas += 1
                if state.signals.get(key, {}).get("v") == float(value):
                    break
        assert deltas >= 20
        assert list(state.signals) == [key]
