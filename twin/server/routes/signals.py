"""Signals: read the latest values; write one to the plant through its connector (operator role); the audit."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import Field

from twin.server.deps import ApiModel, Operator, SettingsDep, TwinDep, quoted, require_role
from twin.stream.frames import signal_json

router = APIRouter(prefix="/api")


MAX_WRITE_TEXT = 1000  # characters of a text value: what the audit keeps of each write is bounded


class WriteRequest(ApiModel):
    prim: str = Field(max_length=1000)
    attr: str = Field(max_length=200)
    value: float | int | bool | Annotated[str, Field(max_length=MAX_WRITE_TEXT)]


@router.get("/signals")
async def signals(twin: TwinDep, keys: str | None = None) -> dict:
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


@router.post("/write")
async def write(body: WriteRequest, principal: Operator, settings: SettingsDep) -> dict:
    """Send a value to the plant through the signal's writable binding (operator role)."""
    writer = settings.writer
    if writer is None or not writer.writable(body.prim, body.attr):
        raise HTTPException(404, f"{quoted(f'{body.prim}.{body.attr}')} has no writable binding")
    result = await writer.write(body.prim, body.attr, body.value, user=principal.user)
    answer = {"ok": result.ok, "status": result.status, "status_code": result.status_code,
              "message": result.message}
    if result.ok:
        return answer
    if result.status == "BadNotConnected":
        return JSONResponse(answer, status_code=503)
    if result.status in ("BadOutOfRange", "BadTypeMismatch") and "server refused" not in result.message:
        return JSONResponse(answer, status_code=422)  # refused by the twin's own checks
    return JSONResponse(answer, status_code=502)  # refused by the server: its status code says why


@router.get("/audit", dependencies=[Depends(require_role("operator"))])
async def audit(settings: SettingsDep) -> list[dict]:
    """Every write attempt: who, when, which node, old and new value, the server's answer."""
    writer = settings.writer
    return [dataclasses.asdict(record) for record in (writer.audit if writer else [])]
