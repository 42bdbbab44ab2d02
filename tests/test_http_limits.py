"""Connections that never finish a request are closed; the server keeps answering everyone else.

Runs the server with the configuration `twin serve` uses (twin.server.http.server_config), with a short
read deadline so the test stays quick.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from tests.helpers import free_port
from twin.server.app import create_app
from twin.server.http import server_config
from twin.sim.runtime import Twin

READ_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def url(sample_layout):
    port = free_port()
    server = uvicorn.Server(server_config(create_app(Twin(sample_layout)), "127.0.0.1", port,
                                          read_timeout_s=READ_TIMEOUT_S))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", port
    server.should_exit = True
    thread.join(10)


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_half_sent_headers_and_slow_bodies_are_cut_off(url):
    base, port = url
    sockets = []
    try:
        for i in range(100):
            sock = socket.create_connection(("127.0.0.1", port))
            if i % 2:
                sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never ends the headers
            else:  # whole headers, then a body that never comes
                sock.sendall(b"POST /api/write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{\"prim\": ")
            sockets.append(sock)
        started = time.monotonic()
        assert httpx.get(f"{base}/api/health", timeout=5).status_code == 200  # the others are not held up
        closed = [closed_by_server(sock, READ_TIMEOUT_S + 3 - (time.monotonic() - started)) for sock in sockets]
        assert all(closed), f"{closed.count(False)} of {len(closed)} connections still open"
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_connection_that_keeps_sending_requests_in_time_is_kept(url):
    base, _ = url
    with httpx.Client(base_url=base, timeout=5) as client:
        for _ in range(4):
            assert client.get("/api/health").status_code == 200
            time.sleep(READ_TIMEOUT_S * 0.6)  # idle between requests: the keep-alive rule, not the read deadline
