"""`twin relay LAYOUT --broker URL --topic-root ROOT`: a stream process for one line, fed from the broker.

It builds the line's runtime cache from the same layout (no connectors, no simulation), keeps it equal to the
line's from the keyframes and deltas the line publishes (`publish: {stream: true}`, twin/server/publish_stream.py)
and serves the viewer, the `/ws` (and `/stream`) websocket with the usual StreamHub, and read-only REST. Since
every relay holds the whole state, any number of them can stand behind a load balancer (docs/scale.md). Writes
belong to the line and are refused here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as paho
from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from twin.connectors.bindings import BrokerConfig, BrokerSpec
from twin.connectors.mqtt import broker_client
from twin.core.cache import UNCERTAIN_LAST_USABLE_VALUE, quality_name
from twin.core.errors import TwinError
from twin.server.app import BodyLimit, ViewersOnLoopback
from twin.server.assets import WEB_DIST
from twin.server.auth import Access
from twin.server.deps import ServerSettings, loopback_host
from twin.server.publish_stream import stream_topics
from twin.server.routes import scene, signals
from twin.server.routes import stream as stream_route
from twin.sim.runtime import Twin
from twin.stream.hub import StreamHub
from twin.stream.mirror import CacheMirror, MirrorError, decode_state

log = logging.getLogger("twin.relay")

REQUEST_INTERVAL_S = 1.0  # at most one keyframe request a second from this relay
_CONNECTED, _LOST = "connected", "lost"  # the link's events, queued in order with the messages (not topics)


class RelayFeed:
    """The broker side: the line's state messages into a CacheMirror, on the server's event loop."""

    def __init__(self, broker: BrokerConfig, topic_root: str, twin: Twin, hub: StreamHub):
        self.broker, self.topic_root, self.hub = broker, topic_root, hub
        self.state_topic, self.request_topic, self.status_topic = stream_topics(topic_root)
        self.mirror = CacheMirror(twin.cache)
        self.client = broker_client(broker, Path("--broker"))
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = False
        self.line_online: bool | None = None  # from ROOT/stream/status; None: not heard yet
        self.last_message = 0.0  # time.time() of the last state message applied
        self.requested = 0.0
        self.requests = 0
        self.errors = 0
        self._inbox: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    @property
    def synced(self) -> bool:
        """Connected, the line online, and a keyframe applied: this relay serves the line's current state."""
        return self.connected and self.line_online is not False and self.mirror.version is not None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._apply_messages(), name="relay-feed")
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=round(self.broker.keepalive_s))
        self.client.loop_start()

    async def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ------------------------------------------------------------------ paho's thread
    def _on_connect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the relay: %s", self.broker.url, reason)
            return
        self.connected = True
        client.subscribe([(self.state_topic, 1), (self.status_topic, 1)])
        self._post((_CONNECTED, b""))
        log.info("relay connected to %s, reading %s", self.broker.url, self.state_topic)

    def _on_disconnect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        if self.connected:
            log.warning("relay lost the broker %s (%s); reconnecting", self.broker.url, reason)
            self._post((_LOST, b""))
        self.connected = False

    def _on_message(self, client: paho.Client, userdata, message: paho.MQTTMessage) -> None:
        self._post((message.topic, bytes(message.payload)))

    def _post(self, item: tuple[str, bytes]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)

    # ------------------------------------------------------------------ the event loop
    async def _apply_messages(self) -> None:
        while True:
            item = await self._inbox.get()
            while item is not None:  # everything queued, then one wake-up of the viewers' sessions
                try:
                    self._handle(*item)
                except Exception:  # a bad message never ends the relay
                    self.errors += 1
                    log.exception("relay: message on %s", item[0])
                item = self._inbox.get_nowait() if not self._inbox.empty() else None
            self.hub.notify()

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic == _CONNECTED:  # the retained keyframe may be old: ask for a fresh one at once
            self._ask_keyframe("the relay connected", force=True)
        elif topic == _LOST:  # stale until the line's state comes again
            self._mark_stale()
        elif topic == self.status_topic:
            self.line_online = bool(json.loads(payload).get("online"))
            if not self.line_online:
                self._mark_stale()
        else:
            try:
                message = decode_state(payload)
                applied = self.mirror.apply(message)
            except MirrorError as error:
                self.errors += 1
                log.error("relay: %s: %s", topic, error)
                return
            if applied:
                self.last_message = time.time()
            else:
                self._ask_keyframe(f"a delta on version {message.header['base']} while holding "
                                   f"{self.mirror.version}")

    def _ask_keyframe(self, why: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.connected or (not force and now - self.requested < REQUEST_INTERVAL_S):
            return
        self.requested = now
        self.requests += 1
        log.info("relay: asking the line for a keyframe: %s", why)
        self.client.publish(self.request_topic, json.dumps({"why": why}), qos=0)

    def _mark_stale(self) -> None:
        """The line is gone or the broker is: its values stay, marked stale, until its state comes again."""
        cache = self.mirror.cache
        usable = [row for row in range(len(cache.signals)) if quality_name(cache.status[row]) != "bad"]
        cache.mark_status(usable, UNCERTAIN_LAST_USABLE_VALUE)

    def health(self) -> dict:
        mirror = self.mirror
        return {"synced": self.synced, "broker": {"url": self.broker.url, "connected": self.connected},
                "topic": self.state_topic, "line_online": self.line_online, "session": mirror.session,
                "line_version": mirror.version, "keyframes": mirror.keyframes, "deltas": mirror.deltas,
                "gaps": mirror.gaps, "keyframe_requests": self.requests, "errors": self.errors,
                "last_message_age_s": round(time.time() - self.last_message, 3) if self.last_message else None}


router = APIRouter()
router.add_api_route("/api/signals", signals.signals, methods=["GET"])


@router.get("/api/health")
async def health(request: Request) -> dict:
    feed: RelayFeed = request.app.state.feed
    hub: StreamHub = request.app.state.hub
    return {"status": "ok", "role": "relay", "layout": str(request.app.state.twin.stage.path),
            "clients": hub.stats.clients, "signals": len(hub.cache.signals), "relay": feed.health(),
            "stream": {"frames_sent": hub.stats.frames_sent, "bytes_sent": hub.stats.bytes_sent,
                       "encodes": hub.stats.encodes, "dropped_stalled": hub.stats.dropped_stalled}}


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """For a load balancer (no token needed): 200 while this relay holds the line's current state, else 503."""
    feed: RelayFeed = request.app.state.feed
    body = {"synced": feed.synced, "clients": request.app.state.hub.stats.clients}
    return JSONResponse(body, status_code=200 if feed.synced else 503)


@router.api_route("/api/{path:path}", methods=["POST", "PUT", "PATCH", "DELETE"])
async def refuse_writes(path: str, request: Request) -> JSONResponse:
    feed: RelayFeed = request.app.state.feed
    return JSONResponse({"detail": f"this is a read-only relay of the line publishing on {feed.state_topic}: "
                                   f"{request.method} /api/{path} belongs to the line itself (its own server, or "
                                   f"the site's /lines/NAME/api/{path})"}, status_code=405)


@router.websocket("/stream")
async def stream_alias(websocket: WebSocket) -> None:
    """The same stream as /ws (the site's name for it)."""
    app = websocket.app
    await stream_route.stream(websocket, app.state.hub, app.state.settings)


def create_relay_app(twin: Twin, broker: BrokerConfig, topic_root: str, *, glb_path: Path | None = None,
                     access: Access | None = None, static_dir: Path | None = None) -> FastAPI:
    app = FastAPI(title="Factory twin relay", version="0.1.0", lifespan=_lifespan)
    app.state.settings = ServerSettings(access or Access(), static_dir or WEB_DIST, glb_path)
    app.state.twin = twin
    app.state.hub = StreamHub(twin.cache)  # the line's alarms stay with the line
    app.state.feed = RelayFeed(broker, topic_root, twin, app.state.hub)
    app.add_middleware(BodyLimit, max_bytes=64 * 1024)
    app.add_middleware(ViewersOnLoopback)
    for module_router in (router, stream_route.router, scene.router):
        app.include_router(module_router)
    viewer = app.state.settings.static_dir
    if (viewer / "index.html").is_file():
        app.mount("/", StaticFiles(directory=viewer, html=True), name="viewer")
    else:
        @app.get("/", response_class=HTMLResponse)
        def no_viewer() -> str:
            return f"<h1>Factory twin relay</h1><p>The viewer is not built (looked in {viewer}).</p>"
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await app.state.feed.start()
    try:
        yield
    finally:
        await app.state.feed.stop()


def relay_broker(url: str) -> BrokerConfig:
    """The broker of `--broker URL`; TwinError names what is wrong with it."""
    try:
        return BrokerSpec(url=url).config("broker", 0, Path.cwd())
    except ValidationError:
        raise TwinError(f"--broker: {url!r} is not an mqtt://HOST[:PORT] or mqtts://HOST[:PORT] URL") from None


def run_relay(layout: Path, *, broker_url: str, topic_root: str, host: str, port: int, tokens: Path | None,
              glb: Path | None) -> int:
    import uvicorn

    from twin.server.assets import layout_glb
    from twin.server.http import server_config

    broker = relay_broker(broker_url)
    if not topic_root.strip("/") or any(char in topic_root for char in "+#"):
        raise TwinError(f"--topic-root: {topic_root!r} must be the line's topic_root, without wildcards")
    glb_path = glb or layout_glb(layout)
    twin = Twin(layout)
    access = Access.load(tokens, loopback_only=loopback_host(host))
    app = create_relay_app(twin, broker, topic_root.strip("/"), glb_path=glb_path, access=access)
    print(f"twin: relaying {stream_topics(topic_root)[0]} from {broker.url} for {layout.name} at "
          f"http://{host}:{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(server_config(app, host, port)).run()
    return 0
