"""HTTP and websocket server: the REST API, the live stream, and the viewer's files.

One asyncio task steps the twin at `tick_hz` and wakes the websocket clients; each
client then sends itself a frame of what changed since its own last frame
(twin/stream.py), so a slow client slows only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Header, HTTPException, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from twin.history.store import Historian
from twin.server.assets import WEB_DIST
from twin.server.auth import Access, AuthError
from twin.server.routes.alarms import alarms_router
from twin.server.routes.history import history_router
from twin.server.routes.robots import robots_router
from twin.server.routes.whatif import whatif_router
from twin.sim.runtime import Twin
from twin.sim.scene_info import prim_details, scene_tree
from twin.stream.frames import signal_json
from twin.stream.hub import StreamHub, StreamLimits


class SignalWriter(Protocol):
    """What the server needs from a connector to write values back (connectors/opcua.py has it)."""

    def writable(self, prim: str, attr: str) -> bool: ...

    async def write(self, prim: str, attr: str, value: Any, *, user: str) -> Any: ...

    audit: Any


class SimulationControl(BaseModel):
    running: bool | None = None
    tick_hz: float | None = Field(None, ge=1.0, le=120.0)


class WriteRequest(BaseModel):
    prim: str
    attr: str
    value: float | int | bool | str

log = logging.getLogger("twin.server")

def create_app(
    twin: Twin,
    *,
    glb_path: Path | None = None,
    static_dir: Path | None = None,
    tick_hz: float = 30.0,
    connector_health: Callable[[], dict] | None = None,
    on_startup: Sequence[Callable] = (),
    on_shutdown: Sequence[Callable] = (),
    writer: SignalWriter | None = None,
    access: Access | None = None,
    stream_limits: StreamLimits | None = None,
    historian: Historian | None = None,
) -> FastAPI:
    """The twin's web app. `connector_health()` describes the OPC-UA sessions and their bindings;
    `on_startup`/`on_shutdown` are async callables (connectors);
    `writer` takes operators' writes to the plant; `access` decides who may do what."""
    access = access or Access()
    static_dir = static_dir or WEB_DIST
    state = {"started": time.time(), "frames": 0, "tick_seconds": 0.0, "running": True, "tick_hz": tick_hz}

    async def tick_loop() -> None:
        next_time = time.monotonic()
        while True:
            period = 1.0 / state["tick_hz"]
            started = time.perf_counter()
            try:
                if state["running"]:
                    twin.step()
            except Exception:  # keep serving; the error is in the log with its traceback
                log.exception("simulation step failed")
            state["tick_seconds"] = time.perf_counter() - started
            state["frames"] += 1
            hub.notify()
            next_time += period
            delay = next_time - time.monotonic()
            if delay < -period:  # fell behind: don't try to catch up with a burst
                next_time = time.monotonic()
            await asyncio.sleep(max(delay, 0.0))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for start in on_startup:
            await start()
        task = asyncio.create_task(tick_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.to_thread(stop_whatif)
            for stop in on_shutdown:
                with contextlib.suppress(Exception):
                    await stop()

    app = FastAPI(title="Factory twin", version="0.1.0", lifespan=lifespan)
    hub = StreamHub(twin.cache, stream_limits, alarms=twin.alarms)
    if historian is not None:
        historian.attach_alarms(twin.alarms)
    app.state.hub = hub
    app.state.twin = twin
    app.state.stats = state

    @app.exception_handler(AuthError)
    async def auth_error(request, error: AuthError):
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.middleware("http")
    async def viewers_only(request, call_next):
        """Every API call needs at least the viewer role (anonymous counts as one only on loopback)."""
        if access.loopback_only and not _loopback_host(request.headers.get("host")):
            return JSONResponse({"detail": f"this twin answers only on loopback: use http://127.0.0.1 rather than "
                                           f"{request.headers.get('host')!r}"}, status_code=421)
        if request.url.path.startswith("/api/") or request.url.path == "/scene.glb":
            try:
                access.require(request.headers.get("authorization"), "viewer")
            except AuthError as error:
                return JSONResponse({"detail": str(error)}, status_code=error.status)
        return await call_next(request)

    @app.post("/api/write")
    async def write(request: WriteRequest, authorization: str | None = Header(default=None)) -> dict:
        """Send a value to the plant through the signal's writable binding (operator role)."""
        principal = access.require(authorization, "operator")
        if writer is None or not writer.writable(request.prim, request.attr):
            raise HTTPException(404, f"{request.prim}.{request.attr} has no writable binding")
        result = await writer.write(request.prim, request.attr, request.value, user=principal.user)
        body = {"ok": result.ok, "status": result.status, "status_code": result.status_code,
                "message": result.message}
        if result.ok:
            return body
        if result.status == "BadNotConnected":
            return JSONResponse(body, status_code=503)
        if result.status in ("BadOutOfRange", "BadTypeMismatch") and "server refused" not in result.message:
            return JSONResponse(body, status_code=422)  # refused by the twin's own checks
        return JSONResponse(body, status_code=502)  # refused by the server: its status code says why

    @app.get("/api/audit")
    async def audit(authorization: str | None = Header(default=None)) -> list[dict]:
        """Every write attempt: who, when, which node, old and new value, the server's answer."""
        access.require(authorization, "operator")
        return [dataclasses.asdict(record) for record in (writer.audit if writer else [])]

    whatif_routes, stop_whatif = whatif_router(twin, access)
    app.include_router(whatif_routes)
    app.include_router(history_router(historian, twin))
    app.include_router(alarms_router(twin.alarms, access, historian))
    app.include_router(robots_router(twin.robots))

    @app.get("/api/connectors")
    async def connectors() -> dict:
        """Each OPC-UA server: endpoint, connected, last error, its bindings and which of them fail."""
        return connector_health() if connector_health else {}

    @app.get("/api/simulation")
    async def simulation() -> dict:
        return _simulation_state()

    @app.post("/api/simulation")
    async def control_simulation(request: SimulationControl,
                                 authorization: str | None = Header(default=None)) -> dict:
        """Pause or resume the live simulation step, or change its rate (operator role). The stream
        keeps going while paused: signals still arrive, poses and parts stand still."""
        principal = access.require(authorization, "operator")
        if request.running is not None:
            state["running"] = request.running
        if request.tick_hz is not None:
            state["tick_hz"] = request.tick_hz
        log.info("simulation %s at %g Hz by %s", "running" if state["running"] else "paused", state["tick_hz"],
                 principal.user)
        return _simulation_state()

    def _simulation_state() -> dict:
        return {"running": state["running"], "tick_hz": state["tick_hz"], "ticks": state["frames"],
                "steps": twin.steps, "step_ms": round(twin.step_seconds * 1000, 3), "device": twin.device}

    @app.get("/api/health")
    async def health() -> dict:
        body = {
            "status": "ok",
            "uptime_s": round(time.time() - state["started"], 3),
            "layout": str(twin.stage.path),
            "device": twin.device,
            "tick_hz": state["tick_hz"],
            "running": state["running"],
            "ticks": state["frames"],
            "tick_ms": round(state["tick_seconds"] * 1000, 3),
            "clients": hub.stats.clients,
            "stream": {"frames_sent": hub.stats.frames_sent, "bytes_sent": hub.stats.bytes_sent,
                       "encodes": hub.stats.encodes, "encode_ms_total": round(hub.stats.encode_seconds * 1000, 1),
                       "dropped_stalled": hub.stats.dropped_stalled},
            "signals": len(twin.cache.signals),
            "transforms": len(twin.cache.transform_prims),
            "live_layer_flushes": twin.live_writer.flushes,
        }
        if connector_health:
            body["connectors"] = connector_health()
        return body

    @app.get("/api/scene")
    async def scene() -> dict:
        return scene_tree(twin)

    @app.get("/api/prims/{path:path}")
    async def prim(path: str) -> dict:
        try:
            return prim_details(twin, "/" + path.strip("/"))
        except KeyError as error:
            raise HTTPException(404, str(error.args[0])) from None

    @app.get("/api/signals")
    async def signals(keys: str | None = None) -> dict:
        """Every signal's latest value, or those of `keys` (comma-separated 'prim.attr')."""
        cache = twin.cache
        if keys is None:
            chosen = cache.signals
        else:
            try:
                chosen = [cache.find_signal(key) for key in keys.split(",")]
            except KeyError as error:
                raise HTTPException(404, error.args[0]) from None
        return {info.key: {**signal_json(cache, info.row), "unit": info.unit} for info in chosen}

    @app.get("/api/snapshot.usda", response_class=PlainTextResponse)
    async def snapshot() -> str:
        """The live state as a USD layer over the authored layout (what `twin snapshot` saves)."""
        twin.live_writer.flush()
        return twin.stage.snapshot_layer().ExportToString()

    @app.get("/scene.glb")
    def scene_glb():
        if glb_path is None or not Path(glb_path).is_file():
            raise HTTPException(404, "this twin was started without a GLB of its layout")
        return FileResponse(glb_path, media_type="model/gltf-binary")

    @app.websocket("/ws")
    async def stream(websocket: WebSocket) -> None:
        token = websocket.query_params.get("token")
        authorization = websocket.headers.get("authorization") or (f"Bearer {token}" if token else None)
        origin = websocket.headers.get("origin")
        host = websocket.headers.get("host")
        refusal = None
        try:
            access.require(authorization, "viewer")
        except AuthError as error:
            refusal = str(error)
        if origin and origin.split("://", 1)[-1] != host:
            refusal = "a page from another site may not read this twin"
        if access.loopback_only and not _loopback_host(host):
            refusal = "this twin answers only on loopback"  # a rebound DNS name must not reach the plant
        await websocket.accept()  # then close with a code and reason the client can read (not a bare 403)
        if refusal:
            await websocket.close(code=1008, reason=refusal[:120])
            return
        await hub.serve(websocket)

    if (static_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="viewer")
    else:
        @app.get("/", response_class=HTMLResponse)
        def no_viewer() -> str:
            return (f"<h1>Factory twin</h1><p>The viewer is not built: run <code>npm ci && npm run build</code> "
                    f"in <code>web/</code> (looked in {static_dir}). The API is at <a href='/docs'>/docs</a>.</p>")

    return app


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback (with or without a port)."""
    if not host:
        return False
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if name.count(":") > 1 and not host.startswith("["):
        name = host  # a bare IPv6 address without a port
    return name in _LOOPBACK_NAMES

