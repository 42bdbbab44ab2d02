"""Hostile stream clients: binary floods count toward the rate limit, NaN in a ping is an error and not a
dropped socket, and every refusal closes with a code and a reason (docs/protocol.md, limits)."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers import serve_app
from twin.server.app import create_app
from twin.sim.runtime import Twin
from twin.stream.hub import StreamLimits
from twin.stream.protocol import StreamState


@pytest.fixture(scope="module")
def url(sample_layout):
    limits = StreamLimits(heartbeat_s=0.5, stall_s=2.0, max_message_bytes=4096, messages_per_s=20.0, abuse_limit=60)
    with serve_app(create_app(Twin(sample_layout), tick_hz=30, stream_limits=limits)) as http:
        yield http.replace("http://", "ws://") + "/ws"


def test_a_binary_flood_is_rate_limited_and_closed_with_a_reason(url):
    with connect(url) as ws, pytest.raises(ConnectionClosed) as closed:
        for _ in range(300):
            ws.send(b"\x00" * 16)
        while True:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008 and "too many messages" in closed.value.rcvd.reason


def test_an_oversized_binary_message_closes_with_1009(url):
    with connect(url) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.send(b"\x00" * 5000)
        while True:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.parametrize("text, expected", [
    ('{"type": "ping", "id": NaN}', "NaN is not a JSON number"),
    ('{"type": "ping", "id": Infinity}', "Infinity is not a JSON number"),
    ('{"type": "ping", "id": {"a": 1}}', "id must be a number or a string"),
    (json.dumps({"type": "ping", "id": "x" * 100}), "id must be a number or a string"),
])
def test_bad_pings_are_answered_and_the_stream_goes_on(url, text, expected):
    state = StreamState()
    with connect(url) as ws:
        ws.send(text)
        errors = []
        while not errors:
            message = state.receive(ws.recv(timeout=5))
            if isinstance(message, dict) and message.get("type") == "error":
                errors.append(message["error"])
        assert expected in errors[0]
        ws.send(json.dumps({"type": "ping", "id": 3}))
        while True:
            message = state.receive(ws.recv(timeout=5))
            if isinstance(message, dict) and message.get("type") == "pong":
                assert message["id"] == 3
                break
