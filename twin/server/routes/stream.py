"""The live stream's websocket: a viewer's token, a same-site page and (by default) a loopback Host, or refused."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from twin.server.auth import AuthError
from twin.server.deps import HubDep, ServerSettings, SettingsDep, loopback_host

router = APIRouter()


def _refusal(websocket: WebSocket, settings: ServerSettings) -> str | None:
    """Why this connection may not read the twin, or None; the last rule broken gives the reason."""
    token = websocket.query_params.get("token")
    authorization = websocket.headers.get("authorization") or (f"Bearer {token}" if token else None)
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host")
    refusal = None
    try:
        settings.access.require(authorization, "viewer")
    except AuthError as error:
        refusal = str(error)
    if origin and origin.split("://", 1)[-1] != host:
        refusal = "a page from another site may not read this twin"
    if settings.access.loopback_only and not loopback_host(host):
        refusal = "this twin answers only on loopback"  # a rebound DNS name must not reach the plant
    return refusal


@router.websocket("/ws")
async def stream(websocket: WebSocket, hub: HubDep, settings: SettingsDep) -> None:
    refusal = _refusal(websocket, settings)
    await websocket.accept()  # then close with a code and reason the client can read (not a bare 403)
    if refusal:
        await websocket.close(code=1008, reason=refusal[:120])
        return
    await hub.serve(websocket)
