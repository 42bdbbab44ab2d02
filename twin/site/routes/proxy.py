"""Each line through the site: `/lines/NAME/api/...` and `/lines/NAME/scene.glb` forwarded to the line's server,
`/lines/NAME/ws` (or `/stream`) to its live stream, so that any client given `SITE/lines/NAME` as a twin's URL
works unchanged. Responses stream through (bounded memory whatever their size); request bodies are bounded; the
caller's Authorization header (or the viewer's `?token=`) goes along, and the line checks the role it needs.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import websockets
from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from twin.server.auth import AuthError
from twin.server.deps import MAX_BODY_BYTES, loopback_host

router = APIRouter()

REQUEST_HEADERS = ("authorization", "content-type", "accept", "accept-encoding", "if-none-match",
                   "if-modified-since")
RESPONSE_HEADERS = ("content-type", "content-length", "content-encoding", "cache-control", "etag", "last-modified",
                    "content-disposition", "retry-after")
MAX_STREAM_MESSAGE_BYTES = 64 * 2**20  # a line's frames (a snapshot of every signal) stay well below this
CONNECT_TIMEOUT_S = 5.0


def _port(request: Request | WebSocket, name: str) -> int:
    entry = request.app.state.supervisor.lines.get(name)
    if entry is None:
        raise HTTPException(404, f"no line {name!r} in this site; lines: {sorted(request.app.state.supervisor.lines)}")
    return entry.port


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request bodies are limited to {MAX_BODY_BYTES:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"request bodies are limited to {MAX_BODY_BYTES:,} bytes")
    return bytes(body)


async def _forward(request: Request, name: str, path: str) -> Response:
    port = _port(request, name)
    http: httpx.AsyncClient = request.app.state.http
    headers = {key: value for key in REQUEST_HEADERS if (value := request.headers.get(key))}
    url = f"http://127.0.0.1:{port}{path}" + (f"?{request.url.query}" if request.url.query else "")
    upstream = http.build_request(request.method, url, headers=headers, content=await _bounded_body(request))
    try:
        response = await http.send(upstream, stream=True)
    except httpx.TransportError as error:
        return JSONResponse({"detail": f"line {name} does not answer at 127.0.0.1:{port} ({type(error).__name__}): "
                                       "it may be down or starting; see /api/site"}, status_code=502)
    return StreamingResponse(response.aiter_raw(), status_code=response.status_code,
                             headers={key: value for key in RESPONSE_HEADERS
                                      if (value := response.headers.get(key))},
                             background=BackgroundTask(response.aclose))


@router.api_route("/lines/{name}/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def line_api(name: str, path: str, request: Request) -> Response:
    """The line's REST API."""
    return await _forward(request, name, f"/api/{path}")


@router.get("/lines/{name}/scene.glb")
async def line_scene(name: str, request: Request) -> Response:
    """The line's 3D scene for the viewer."""
    return await _forward(request, name, "/scene.glb")


def _refusal(websocket: WebSocket) -> str | None:
    """As the line's own stream decides: a viewer's token, a same-site page, a loopback Host on a loopback site."""
    access = websocket.app.state.access
    token = websocket.query_params.get("token")
    authorization = websocket.headers.get("authorization") or (f"Bearer {token}" if token else None)
    origin, host = websocket.headers.get("origin"), websocket.headers.get("host")
    try:
        access.require(authorization, "viewer")
    except AuthError as error:
        return str(error)
    if origin and origin.split("://", 1)[-1] != host:
        return "a page from another site may not read this twin"
    if access.loopback_only and not loopback_host(host):
        return "this site answers only on loopback"
    return None


@router.websocket("/lines/{name}/ws")
@router.websocket("/lines/{name}/stream")
async def line_stream(websocket: WebSocket, name: str) -> None:
    """The line's live stream, message for message in both directions (acknowledgements included, so the line's
    flow control still paces each viewer)."""
    await websocket.accept()  # then close with a reason the client can read
    refusal = _refusal(websocket)
    entry = websocket.app.state.supervisor.lines.get(name)
    if refusal or entry is None:
        await websocket.close(code=1008, reason=(refusal or f"no line {name!r} in this site")[:120])
        return
    query = websocket.url.query
    authorization = websocket.headers.get("authorization")
    try:
        upstream = await websockets.connect(
            f"ws://127.0.0.1:{entry.port}/ws" + (f"?{query}" if query else ""), open_timeout=CONNECT_TIMEOUT_S,
            additional_headers={"Authorization": authorization} if authorization else None,
            max_size=MAX_STREAM_MESSAGE_BYTES, compression=None, max_queue=4)
    except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
        await websocket.close(code=1011, reason=f"line {name} does not answer ({type(error).__name__})"[:120])
        return

    async def to_line() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            await upstream.send(message["bytes"] if message.get("bytes") is not None else message.get("text", ""))

    async def to_viewer() -> None:
        async for message in upstream:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)

    tasks = [asyncio.create_task(to_line()), asyncio.create_task(to_viewer())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, websockets.ConnectionClosed,
                                     RuntimeError):
                await task
        reason = upstream.close_reason or "the line closed the stream"
        code = upstream.close_code if upstream.close_code in (1000, 1001, 1008, 1011) else 1011
        await upstream.close()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code, reason=reason[:120])
