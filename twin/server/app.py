"""HTTP and websocket server: the REST API, the live stream, and the viewer's files.

create_app keeps the shared objects on `app.state` (twin.server.deps hands them to the routes), includes one
router per API area (twin.server.routes) and runs the simulation clock (twin.server.clock) while it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.commission.server import CommissionServer
from twin.history.replay import Replay
from twin.history.store import Historian
from twin.server.assets import WEB_DIST
from twin.server.auth import Access, AuthError
from twin.server.clock import SimulationClock, run_ticks
from twin.server.deps import MAX_BODY_BYTES, ServerSettings, SignalWriter, loopback_host, quoted
from twin.server.routes import (
    alarms,
    commission,
    health,
    history,
    robots,
    scene,
    signals,
    simulation,
    snapshot,
    stream,
    whatif,
)
from twin.sim.runtime import Twin
from twin.stream.hub import StreamHub, StreamLimits

__all__ = ["WEB_DIST", "create_app"]
ROUTERS = (signals, whatif, history, alarms, robots, health, simulation, scene, snapshot, stream, commission)


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
    open_docs: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    ray_address: str | None = None,
    commission: CommissionServer | None = None,
) -> FastAPI:
    """The twin's web app. `connector_health()` describes the OPC-UA sessions and their bindings;
    `on_startup`/`on_shutdown` are async callables (connectors);
    `writer` takes operators' writes to the plant; `access` decides who may do what, the API description
    included unless `open_docs`; request bodies over `max_body_bytes` are refused with 413; with a
    `ray_address` what-if studies run on that Ray cluster (docs/scale.md); `commission` is the line a
    `twin commission` serves, which /api/commission shows and forces (docs/commissioning.md)."""
    app = FastAPI(title="Factory twin", version="0.1.0", lifespan=_lifespan)
    app.state.settings = ServerSettings(access or Access(), static_dir or WEB_DIST, glb_path, connector_health, writer,
                                        tuple(on_startup), tuple(on_shutdown), open_docs, ray_address)
    app.state.twin = twin
    app.state.hub = StreamHub(twin.cache, stream_limits, alarms=twin.alarms)
    app.state.clock = SimulationClock(tick_hz)
    app.state.historian = historian
    app.state.commission = commission
    app.state.replay = Replay(twin, historian) if historian is not None else None
    app.state.whatif = whatif.WhatIfStudies(twin, ray_address)
    if historian is not None:
        historian.attach_alarms(twin.alarms)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # inside the role check: who may not call is told so
    app.add_middleware(ViewersOnLoopback)
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


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each problem, quoting a short prefix of the input (FastAPI's own answer quotes all of it,
    and fails with a 500 on a NaN, which JSON cannot carry)."""
    problems = [{"loc": list(problem["loc"]), "msg": quoted(problem["msg"], 200), "type": problem["type"],
                 "input": quoted(repr(problem.get("input")))} for problem in error.errors()[:20]]
    return JSONResponse({"detail": problems}, status_code=422)


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    """Starlette's answer, with a message bounded however much of the input it quotes."""
    detail = quoted(error.detail, 300) if isinstance(error.detail, str) else error.detail
    if error.status_code in (204, 304):
        return Response(status_code=error.status_code, headers=error.headers)
    return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413 before it is read whole: by its Content-Length before
    reading any of it, or, sent without one, as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._refusal()}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._refusal())  # FastAPI passes it on from reading the body
            return message

        await self.app(scope, counted, send)

    def _refusal(self) -> str:
        return f"request bodies are limited to {self.max_bytes:,} bytes"


class ViewersOnLoopback:
    """Every API call needs at least the viewer role (anonymous counts as one only on loopback), and so does the
    API's description unless the server was told to open it. Plain ASGI rather than Starlette's
    BaseHTTPMiddleware: behind that one, `Request.is_disconnected()` never turns true, and the heavy routes stop
    their work when it does."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _refusal(Request(scope)) if scope["type"] == "http" else None
        await (refusal or self.app)(scope, receive, send)


def _refusal(request: Request) -> Response | None:
    """The answer to a request that may not reach the routes, or None."""
    settings: ServerSettings = request.app.state.settings
    access = settings.access
    if access.loopback_only and not loopback_host(request.headers.get("host")):
        return JSONResponse({"detail": f"this twin answers only on loopback: use http://127.0.0.1 rather than "
                                       f"{request.headers.get('host')!r}"}, status_code=421)
    app = request.app
    described = not settings.open_docs and request.url.path in (app.openapi_url, app.docs_url, app.redoc_url,
                                                                app.swagger_ui_oauth2_redirect_url)
    if request.url.path.startswith("/api/") or request.url.path == "/scene.glb" or described:
        try:
            access.require(request.headers.get("authorization"), "viewer")
        except AuthError as error:
            return JSONResponse({"detail": str(error)}, status_code=error.status)
    return None


def _serve_viewer(app: FastAPI, static_dir: Path) -> None:
    """The built viewer at /, or a page saying how to build it."""
    if (static_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="viewer")
        return

    @app.get("/", response_class=HTMLResponse)
    def no_viewer() -> str:
        return (f"<h1>Factory twin</h1><p>The viewer is not built: run <code>npm ci && npm run build</code> "
                f"in <code>web/</code> (looked in {static_dir}). The API is at <a href='/docs'>/docs</a>.</p>")
