"""The live stream's server side: one session per websocket client, frames shared between clients.

Each tick the server wakes every session. A session asks the hub for the frame from the cache
version it last sent to now, for its scope; the hub encodes each distinct (base, scope) once per
cache version, so a hundred clients in step cost one encoding. Backpressure is latest-value-wins,
by one of two rules. A client that acknowledges frames ({"type": "ack", "version": V}) has at most
`max_unacked` of them unacknowledged: while it is behind, the cache keeps changing and nothing is
sent; its next frame covers everything since the version it was last sent, so a page that renders
4 times a second gets fresh frames instead of a queue of stale ones. A client that never acks is
paced by its socket: the next frame waits until the previous one has left the server's write buffer.
A client whose socket takes no message for `stall_s` is dropped with close code 4001, so a stalled
client costs neither the others' latency nor the server's memory. (A client that is slow to ack
costs nothing meanwhile and is not dropped; it still gets heartbeats.)
Protocol: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from fastapi import WebSocket, WebSocketDisconnect

from twin.core.alarms import AlarmEngine
from twin.core.cache import RuntimeCache
from twin.stream.frames import build_frame
from twin.stream.protocol import PROTOCOL, Scope, encode_frame, schema_id, schema_message

CLOSE_STALLED = 4001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011

log = logging.getLogger("twin.stream")


@dataclass
class StreamLimits:
    heartbeat_s: float = 5.0  # a quiet stream still says it is alive this often
    stall_s: float = 10.0  # a client that takes no frame for this long is dropped
    max_message_bytes: int = 64 * 1024  # control messages from a client
    messages_per_s: float = 20.0  # sustained control-message rate per client (bursts of twice that)
    abuse_limit: int = 200  # messages over the rate before the client is dropped
    max_unacked: int = 2  # frames in flight to a client that acknowledges them


@dataclass
class HubStats:
    clients: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    encodes: int = 0
    encode_seconds: float = 0.0
    dropped_stalled: int = 0
    first_frame: float | None = None
    sessions: dict[int, dict] = field(default_factory=dict)


class StreamHub:
    def __init__(self, cache: RuntimeCache, limits: StreamLimits | None = None, alarms: AlarmEngine | None = None):
        self.cache = cache
        self.alarms = alarms
        self.sessions: set[_Session] = set()
        self.limits = limits or StreamLimits()
        self.stats = HubStats()
        self._frames: dict[tuple, tuple[bytes | None, int]] = {}
        self._frames_version: tuple[int, int] = (-1, -1)
        self._alarm_list: tuple[int, list[dict]] = (-1, [])

    def alarm_list(self) -> tuple[int, list[dict]]:
        """(version, the open alarms as JSON), built once per alarm version for every session."""
        if self.alarms is None:  # a hub without an alarm engine has none open
            return self._alarm_list
        version = self.alarms.version
        if self._alarm_list[0] != version:
            self._alarm_list = (version, self.alarms.open_alarms())
        return self._alarm_list

    def notify(self) -> None:
        """A simulation tick happened: wake every session (an Event each, no task per client and tick)."""
        for session in self.sessions:
            session.wake.set()

    def frame(self, base: int | None, scope: Scope) -> tuple[bytes | None, int]:
        """The binary frame from `base` to the current version for `scope`, encoded once per version."""
        version = (self.cache.version, schema_id(self.cache))  # adding rows changes the schema, not the version
        if version != self._frames_version:
            self._frames.clear()
            self._frames_version = version
        key = (base, scope)
        if key not in self._frames:
            started = time.perf_counter()
            self._frames[key] = encode_frame(self.cache, base, scope)
            self.stats.encodes += 1
            self.stats.encode_seconds += time.perf_counter() - started
        return self._frames[key]

    async def serve(self, websocket: WebSocket) -> None:
        """Run one accepted client's session until it leaves, stalls or breaks the rules."""
        session = _Session(self, websocket, websocket.query_params.get("format", "binary"))
        self.stats.clients += 1
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self.stats.clients -= 1


class _Session:
    def __init__(self, hub: StreamHub, websocket: WebSocket, format_: str):
        self.hub, self.websocket = hub, websocket
        self.json = format_ == "json"
        self.version: int | None = None  # None: the client needs a snapshot
        self.schema: int | None = None
        self.scope = Scope()
        self.snapshot_requested = False  # set by resync and subscribe; read when the next frame is built
        self.seq = 0  # JSON frames only: the binary ones carry their base and version
        self.alarms_version = -1  # of the alarm list last sent
        self.alarm_seq = hub.alarms.last_seq if hub.alarms else 0  # events before the session are not replayed
        # Flow control: versions of the data frames not yet acknowledged, oldest first; kept for a client that
        # never acks too (bounded), so that its first ack counts what is already in flight.
        self.unacked: deque[int] = deque(maxlen=max(64, hub.limits.max_unacked))
        self.acking = False  # from the client's first ack on, at most max_unacked frames are in flight
        self.last_sent = -1  # version of the last data frame sent
        self.wake = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self.tokens = hub.limits.messages_per_s * 2
        self.refilled = time.monotonic()
        self.excess = 0

    async def send_json(self, message: dict) -> None:
        await self._send(json.dumps(message, separators=(",", ":"), allow_nan=False))

    async def _send(self, data: bytes | str) -> None:
        hub = self.hub
        sender = self.websocket.send_bytes(data) if isinstance(data, bytes) else self.websocket.send_text(data)
        try:
            async with asyncio.timeout(hub.limits.stall_s):  # a timer on this task, not a task per send
                await sender
        except TimeoutError:
            hub.stats.dropped_stalled += 1
            raise _Stalled from None
        if isinstance(data, bytes):
            hub.stats.frames_sent += 1
        hub.stats.bytes_sent += len(data)

    async def run(self) -> None:
        limits = self.hub.limits
        receiver = asyncio.create_task(self._receive())
        try:
            await self.send_json({"type": "hello", "protocol": PROTOCOL, "format": "json" if self.json else "binary",
                                  "heartbeat_s": limits.heartbeat_s, "stall_s": limits.stall_s,
                                  "max_message_bytes": limits.max_message_bytes,
                                  "messages_per_s": limits.messages_per_s, "max_unacked": limits.max_unacked})
            last_sent = time.monotonic()
            while not receiver.done() and self.closing is None:
                sent = await self._send_update()
                if self.version is not None:  # after the snapshot: a client learns the scene first
                    sent = await self._send_alarms() or sent
                if sent:
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent >= limits.heartbeat_s:
                    await self.send_json({"type": "heartbeat", "version": self.version, "time": time.time()})
                    last_sent = time.monotonic()
                await self._wait(limits.heartbeat_s)
            if self.closing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.websocket.close(code=self.closing[0], reason=self.closing[1]), 2.0)
        except _Stalled:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(code=CLOSE_STALLED, reason="stalled: frames not read"),
                                       1.0)
        except Exception as error:  # mostly a client gone mid-send; anything else is said before closing
            if not isinstance(error, WebSocketDisconnect | ConnectionError):
                log.warning("stream session ended by %s: %s", type(error).__name__, str(error)[:200])
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(code=CLOSE_SERVER_ERROR, reason="server error"), 1.0)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver

    async def _wait(self, timeout: float) -> None:
        """Until the next simulation tick, a control message that needs an answer, or the heartbeat."""
        if not self.wake.is_set():
            timer = asyncio.get_running_loop().call_later(timeout, self.wake.set)
            await self.wake.wait()
            timer.cancel()
        self.wake.clear()

    async def _send_update(self) -> bool:
        cache = self.hub.cache
        if self.acking and len(self.unacked) >= self.hub.limits.max_unacked:
            return False  # behind: the frame after its next ack covers what changes meanwhile
        current_schema = schema_id(cache)
        if current_schema != self.schema or self.snapshot_requested:
            # Rows were added (new names, then a snapshot), or the client asked for one. A request that
            # arrives while this frame is being sent sets the flag again and is served by the next frame.
            self.snapshot_requested = False
            self.version = None
        if self.json:
            frame, version = build_frame(cache, self.version, self.seq)
            if frame is None:
                self.version = version
                return False
            self._sent(version)  # before sending: the client's ack may come back before the send returns
            await self.send_json(frame)
            self.seq += 1
        else:
            if self.version is None:
                await self.send_json(schema_message(cache, current_schema))
            data, version = self.hub.frame(self.version, self.scope)
            if data is None:  # nothing in scope changed: the client keeps the version it holds, the next
                return False  # delta is based on it (never on a version this client was not sent)
            self._sent(version)
            await self._send(data)
        self.schema = current_schema
        self.version = version
        if self.hub.stats.first_frame is None:
            self.hub.stats.first_frame = time.time()
        return True

    def _sent(self, version: int) -> None:
        self.unacked.append(version)
        self.last_sent = version

    def _acknowledge(self, request: dict) -> str | None:
        """Apply an ack; the error to answer, if any. Frames up to its version are no longer in flight."""
        version = request.get("version")
        if type(version) is not int or version < 0:
            return "ack: version must be the non-negative integer version of a frame"
        if version > self.last_sent:
            return f"ack: version {version} was not sent to this client (the last frame sent has {self.last_sent})"
        held_back = len(self.unacked) >= self.hub.limits.max_unacked
        self.acking = True
        while self.unacked and self.unacked[0] <= version:
            self.unacked.popleft()
        if held_back:
            self.wake.set()  # what changed while the client was behind goes out now, not at the next tick
        return None

    def _acknowledges_a_frame(self, request: Any) -> TypeGuard[dict]:
        """Whether `request` is an ack of a frame in flight: those are not counted toward the rate limit
        (at most one per frame sent), every other message is."""
        return (isinstance(request, dict) and request.get("type") == "ack" and bool(self.unacked)
                and type(request.get("version")) is int and self.unacked[0] <= request["version"] <= self.last_sent)

    async def _send_alarms(self) -> bool:
        """The open alarms and the transitions since the last message, whenever they changed."""
        alarms = self.hub.alarms
        if alarms is None or alarms.version == self.alarms_version or (alarms.version == 0 and not alarms.rules):
            return False
        self.alarms_version, open_alarms = self.hub.alarm_list()
        events = alarms.events_since(self.alarm_seq)
        if events:
            self.alarm_seq = events[-1].seq
        events = events[-100:]  # a longer burst is summed up by the list itself
        await self.send_json({"type": "alarms", "version": self.alarms_version, "alarms": open_alarms,
                              "events": [event.to_json() for event in events]})
        return True

    # ----------------------------------------------------------------- control messages
    async def _receive(self) -> None:
        limits = self.hub.limits
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            binary = message.get("bytes")
            size = len(binary) if binary is not None else len((message.get("text") or "").encode())
            if size > limits.max_message_bytes:
                self.closing = (CLOSE_TOO_BIG, f"message over {limits.max_message_bytes} bytes")
                self.wake.set()
                return
            request: Any = None
            problem: str | None = "binary messages are not accepted; send JSON text"
            if binary is None:
                try:
                    request, problem = json.loads(message.get("text") or "", parse_constant=_refuse_constant), None
                except json.JSONDecodeError as error:
                    problem = f"message is not JSON: {error.msg} at character {error.pos}"
                except ValueError as error:  # NaN or Infinity
                    problem = f"message is not JSON: {error}"
            if self._acknowledges_a_frame(request):
                self._acknowledge(request)
                continue
            if not self._allow():  # every other message counts, binary ones and bad ones too
                if self.excess > limits.abuse_limit:
                    self.closing = (CLOSE_POLICY, "too many messages")
                    self.wake.set()
                    return
                await self._error(f"too many messages: at most {limits.messages_per_s:g} per second")
                continue
            if problem is not None:
                await self._error(problem)
                continue
            await self._handle(request)

    def _allow(self) -> bool:
        rate = self.hub.limits.messages_per_s
        now = time.monotonic()
        self.tokens = min(2 * rate, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.excess += 1
        return False

    async def _handle(self, request) -> None:
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "ack":
            error = self._acknowledge(request)
            if error is not None:
                await self._error(error)
        elif kind == "resync":
            self._restart_window()
            self.snapshot_requested = True
            self.wake.set()
        elif kind == "subscribe":
            if self.json:
                await self._error("subscriptions need the binary format (connect without ?format=json)")
                return
            try:
                self.scope = Scope.parse(request, self.hub.cache)
            except ValueError as error:
                await self._error(f"subscribe: {error}")
                return
            self._restart_window()
            self.snapshot_requested = True  # a snapshot of the new scope
            await self.send_json({"type": "subscribed", "subtrees": list(self.scope.subtrees),
                                  "signals": list(self.scope.signals), "instances": self.scope.instances})
            self.wake.set()
        elif kind == "ping":
            ping_id = request.get("id")
            if not (ping_id is None or isinstance(ping_id, str | int | float) and len(str(ping_id)) <= 64):
                await self._error("ping: id must be a number or a string of at most 64 characters")
                return
            await self.send_json({"type": "pong", "id": ping_id, "time": time.time()})
        else:
            await self._error(f"unknown message type {kind!r}: use subscribe, resync, ack or ping")

    def _restart_window(self) -> None:
        """Resync and subscribe: the client drops the frames in flight, so they need no ack; the snapshot that
        answers is sent even to a client that is behind."""
        self.unacked.clear()

    async def _error(self, text: str) -> None:
        await self.send_json({"type": "error", "error": text})


class _Stalled(Exception):
    pass


def _refuse_constant(name: str) -> float:
    """JSON has no NaN or Infinity; Python's parser accepts them unless told otherwise."""
    raise ValueError(f"{name} is not a JSON number")
