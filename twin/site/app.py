"""`twin site SITE.yaml`: the lines' processes, the broker reader and the site server, started and stopped
together. The site server (FastAPI, one router per area in twin/site/routes) answers what the broker shows of the
lines, and reaches each line's own server through its proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from twin.server.auth import Access, AuthError
from twin.server.deps import loopback_host
from twin.server.http import server_config
from twin.site.config import Site, load_site
from twin.site.routes import proxy, site, viewer
from twin.site.supervisor import Supervisor
from twin.site.uns import SiteNamespace

PROXY_TIMEOUT = httpx.Timeout(60.0, connect=proxy.CONNECT_TIMEOUT_S)  # a what-if study may take its time
_GUARDED = re.compile(r"^/(api/|lines/[^/]+/(api/|scene\.glb$))")  # what needs the viewer role


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_site_app(site_config: Site, workdir: Path, access: Access | None = None) -> FastAPI:
    """The site server; the lines start with it (lifespan) and stop with it. `workdir` holds each line's
    generated binding file and log."""
    ports: dict[str, int] = {}
    taken = {site_config.port, *(line.port for line in site_config.lines)}
    for line in site_config.lines:
        port = line.port  # as written, or 0: a free one that is not the site's nor another line's
        while not port or (port in taken and not line.port):
            port = free_port()
        ports[line.name] = port
        taken.add(port)
    app = FastAPI(title="Factory twin site", version="0.1.0", lifespan=_lifespan)
    app.state.site = site_config
    app.state.access = access or Access.load(site_config.tokens, loopback_only=loopback_host(site_config.host))
    app.state.supervisor = Supervisor(site_config, ports, workdir)
    app.state.namespace = SiteNamespace(site_config)
    app.add_middleware(ViewersOnly)
    for module in (site, proxy, viewer):  # the proxy's routes before the viewer's catch-all
        app.include_router(module.router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.http = httpx.AsyncClient(timeout=PROXY_TIMEOUT, follow_redirects=False)
    app.state.namespace.start()
    await app.state.supervisor.start()
    try:
        yield
    finally:
        await app.state.supervisor.stop()
        await asyncio.to_thread(app.state.namespace.stop)
        await app.state.http.aclose()


class ViewersOnly:
    """As on a line: a loopback site answers only loopback host names, and the API, the proxied API and the
    scene need the viewer role (anonymous is one only on loopback). Websockets are checked by their route."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            access: Access = request.app.state.access
            host = request.headers.get("host")
            if access.loopback_only and not loopback_host(host):
                await JSONResponse({"detail": f"this site answers only on loopback: use http://127.0.0.1 rather "
                                              f"than {host!r}"}, status_code=421)(scope, receive, send)
                return
            if _GUARDED.match(request.url.path) or request.url.path in ("/docs", "/openapi.json"):
                try:
                    access.require(request.headers.get("authorization"), "viewer")
                except AuthError as error:
                    await JSONResponse({"detail": str(error)}, status_code=error.status)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def run_site(path: Path) -> int:
    """Run the site until Ctrl-C or SIGTERM: uvicorn turns both into a clean shutdown (every line stopped), then
    passes SIGTERM on to the handler it found, which exits normally so that the working folder goes too."""
    site_config = load_site(path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per proxied request
    workdir = Path(tempfile.mkdtemp(prefix="twin-site-"))
    try:
        app = create_site_app(site_config, workdir)
        print(f"twin: site {site_config.path.name}: {len(site_config.lines)} lines, broker {site_config.broker.url}, "
              f"logs in {workdir}", flush=True)
        print(f"twin: serving the site at http://{site_config.host}:{site_config.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(server_config(app, site_config.host, site_config.port)).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
