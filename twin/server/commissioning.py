"""`twin commission` with its HTTP API and viewer: the OPC-UA server of the simulated line, and the twin's web
app fed from the same plant, so that the viewer shows the line the controller runs (docs/commissioning.md).

One event loop runs both: the plant, the OPC-UA server, the feed into the runtime cache and the HTTP server,
so nothing is shared across threads.
"""

from __future__ import annotations

from pathlib import Path

import uvicorn

from twin.commission.address import NAMESPACE
from twin.commission.feed import PlantFeed
from twin.commission.security import EndpointSecurity
from twin.commission.server import CommissionServer
from twin.server.app import create_app
from twin.server.assets import layout_glb
from twin.server.auth import Access
from twin.server.http import server_config
from twin.sim.runtime import Twin

HOST = "127.0.0.1"  # commissioning serves loopback only, like its OPC-UA endpoint


async def serve_commission(layout: str | Path, *, port: int, http_port: int, lockstep: bool, speedup: float,
                           cycle_s: float, watchdog_s: float, seed: int, tick_hz: float = 30.0,
                           host: str = "127.0.0.1", security: EndpointSecurity | None = None,
                           physics: bool = False) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn handles them and returns)."""
    server = CommissionServer(layout, port=port, lockstep=lockstep, speedup=speedup, cycle_s=cycle_s,
                              watchdog_s=watchdog_s, seed=seed, host=host, security=security, physics=physics)
    twin = Twin(layout)
    feed = PlantFeed(server.plant, twin.cache)
    twin.alarms.check()
    access = Access(loopback_only=True)
    app = create_app(twin, glb_path=layout_glb(layout), tick_hz=tick_hz, access=access, commission=server,
                     on_startup=[feed.start], on_shutdown=[feed.stop])
    token = access.issue("commissioning-operator", "operator")
    async with server:
        mode = "lock-step: call Line.Simulation.Step" if lockstep else f"free-run at {speedup:g}x real time"
        print(f"twin commission: {len(server.signals)} signals at {server.endpoint} ({mode}); "
              f"namespace {NAMESPACE} is ns={server.namespace_index}", flush=True)
        print(f"twin commission: viewer at http://{HOST}:{http_port}/ (to force I/O: "
              f"http://{HOST}:{http_port}/?token={token})", flush=True)
        await uvicorn.Server(server_config(app, HOST, http_port)).serve()
