"""How the twin's HTTP server is run: uvicorn with limits that no single client can outwait.

uvicorn closes idle keep-alive connections but waits for ever on a request that never finishes: 300
connections that send half a header each would be held open for good. `BoundedHttpProtocol` gives every
request `read_timeout_s` to arrive whole (headers and body), from the moment the connection opens or the
previous response ends; then the connection is closed. Websockets leave this protocol when they upgrade and
are bounded by the stream's own limits (twin.stream.hub).
"""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from twin.stream.hub import StreamLimits

READ_TIMEOUT_S = 10.0


class BoundedHttpProtocol(HttpToolsProtocol):
    """httptools' protocol with a deadline for reading each request."""

    read_timeout_s = READ_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        deadline = getattr(self, "_read_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection that did not send a whole request in %g s", self.read_timeout_s)
            self.transport.close()


def server_config(app, host: str, port: int, *, read_timeout_s: float = READ_TIMEOUT_S) -> uvicorn.Config:
    """The uvicorn configuration `twin serve` and `twin demo` run with."""
    protocol = type("TwinHttpProtocol", (BoundedHttpProtocol,), {"read_timeout_s": read_timeout_s})
    # No permessage-deflate: frames are mostly float arrays that barely compress, and compressing the
    # same frame once per client would cost more CPU than the whole rest of the stream.
    # Client messages are small control messages: refuse big ones before buffering them (close 1009).
    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=protocol, ws="websockets-sansio",
                          ws_per_message_deflate=False, ws_max_size=StreamLimits().max_message_bytes,
                          timeout_keep_alive=5, limit_concurrency=1000)
