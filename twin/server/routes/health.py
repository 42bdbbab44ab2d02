"""How the server is doing: uptime, tick and stream figures, and the OPC-UA connectors' health."""

from __future__ import annotations

import time

from fastapi import APIRouter

from twin.server.deps import ClockDep, HubDep, SettingsDep, TwinDep

router = APIRouter(prefix="/api")


@router.get("/connectors")
async def connectors(settings: SettingsDep) -> dict:
    """Each OPC-UA server: endpoint, connected, last error, its bindings and which of them fail."""
    return settings.connector_health() if settings.connector_health else {}


@router.get("/health")
async def health(twin: TwinDep, hub: HubDep, clock: ClockDep, settings: SettingsDep) -> dict:
    stats = hub.stats
    body = {
        "status": "ok",
        "uptime_s": round(time.time() - clock.started, 3),
        "layout": str(twin.stage.path),
        "device": twin.device,
        "tick_hz": clock.tick_hz,
        "running": clock.running,
        "ticks": clock.ticks,
        "tick_ms": round(clock.tick_seconds * 1000, 3),
        "clients": stats.clients,
        "stream": {"frames_sent": stats.frames_sent, "bytes_sent": stats.bytes_sent, "encodes": stats.encodes,
                   "encode_ms_total": round(stats.encode_seconds * 1000, 1), "dropped_stalled": stats.dropped_stalled},
        "signals": len(twin.cache.signals),
        "transforms": len(twin.cache.transform_prims),
        "live_layer_flushes": twin.live_writer.flushes,
    }
    if twin.physics is not None:  # physics time, parts, and whether it fell behind real time
        body["physics"] = twin.physics.health()
    if settings.connector_health:
        body["connectors"] = settings.connector_health()
    return body
