"""HTTP and websocket server: the REST API, the live stream, and the viewer's files.

create_app keeps the shared objects on `app.state` (twin.server.deps hands them to the routes), includes one
router per API area (twin.server.routes) and runs the simulation clock (twin.server.clock) while it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from twin.history.replay import Replay
from twin.history.store import Historian
from twin.server.assets import WEB_DIST
from twin.server.auth import Access, AuthError
from twin.server.clock import SimulationClock, run_ticks
from twin.server.deps import ServerSettings, SignalWriter, loopback_host
from twin.server.routes import alarms, health, history, robots, scene, signals, simulation, snapshot, stream, whatif
from twin.sim.runtime import Twin
from twin.stream.hub import StreamHub, StreamLimits

__all__ = ["WEB_DIST", "create_app"]
ROUTERS = (signals, whatif, history, alarms, robots, health, simulation, scene, snapshot, stream)


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
    app = FastAPI(title="Factory twin", version="0.1.0", lifespan=_lifespan)
    app.state.settings = ServerSettings(access or Access(), static_dir or WEB_DIST, glb_path, connector_health, writer,
                                        tuple(on_startup), tuple(on_shutdown))
    app.state.twin = twin
    app.state.hub = StreamHub(twin.cache, stream_limits, alarms=twin.alarms)
    app.state.clock = SimulationClock(tick_hz)
    app.state.historian = historian
    app.state.replay = Replay(twin, historian) if historian is not None else None
    app.state.whatif = whatif.WhatIfStudies(twin)
    if historian is not None:
        historian.attach_alarms(twin.alarms)
    app.add_exception_handler(AuthError, _auth_error)
    app.middleware("http")(_viewers_on_loopback)
    for module in ROUTERS:
        app.include_router(module.router)
    _serve_viewer(app, app.state.settings.static_dir)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the connectors and the simulation clock; stop them, and any what-if study, with the server."""
    settings: ServerSettings = app.state.settings
    for start in settings.on_startup:
        await start()
    ticks = asyncio.create_task(run_ticks(app.state.twin, app.state.hub, app.state.clock))
    try:
        yield
    finally:
        ticks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticks
        await asyncio.to_thread(app.state.whatif.shutdown)
        for stop in settings.on_shutdown:
            with contextlib.suppress(Exception):
                await stop()


async def _auth_error(request: Request, error: AuthError) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=error.status)


async def _viewers_on_loopback(request: Request, call_next: Callable) -> Response:
    """Every API call needs at least the viewer role (anonymous counts as one only on loopback)."""
    access: Access = request.app.state.settings.access
    if access.loopback_only and not loopback_host(request.headers.get("host")):
        return JSONResponse({"detail": f"this twin answers only on loopback: use http://127.0.0.1 rather than "
                                       f"{request.headers.get('host')!r}"}, status_code=421)
    if request.url.path.startswith("/api/") or request.url.path == "/scene.glb":
        try:
            access.require(request.headers.get("authorization"), "viewer")
        except AuthError as error:
            return JSONResponse({"detail": str(error)}, status_code=error.status)
    return await call_next(request)


def _serve_viewer(app: FastAPI, static_dir: Path) -> None:
    """The built viewer at /, or a page saying how to build it."""
    if (static_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="viewer")
        return

    @app.get("/", response_class=HTMLResponse)
    def no_viewer() -> str:
        return (f"<h1>Factory twin</h1><p>The viewer is not built: run <code>npm ci && npm run build</code> "
                f"in <code>web/</code> (looked in {static_dir}). The API is at <a href='/docs'>/docs</a>.</p>")
