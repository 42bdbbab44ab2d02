"""REST API of alarms: the open ones, their rules, acknowledgement (operator), recent and stored events.

The open alarms are also pushed on the websocket stream (an `alarms` message, docs/protocol.md), so
the viewer and SDK subscribers do not poll; these routes are for scripts and for catching up.
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import Field

from twin.core.alarms import AlarmEngine
from twin.server.deps import ApiModel, Finite, HistorianDep, Operator, TwinDep


class Acknowledgement(ApiModel):
    comment: str = Field("", max_length=500)


async def get_engine(twin: TwinDep) -> AlarmEngine:
    return twin.alarms


EngineDep = Annotated[AlarmEngine, Depends(get_engine)]
router = APIRouter(prefix="/api/alarms")


def _rule_json(rule) -> dict:
    return {"id": rule.id, "key": rule.key, "name": rule.name, "kind": rule.kind,
            "limit": None if math.isnan(rule.limit) else rule.limit, "equals": rule.equals,
            "deadband": rule.deadband, "window_s": rule.window_s if rule.kind == "rate" else None,
            "severity": rule.severity, "message": rule.message, "where": rule.where}


@router.get("")
async def open_alarms(engine: EngineDep) -> dict:
    """Alarms that are active or not yet acknowledged, most severe and newest first."""
    return {"version": engine.version, "seq": engine.last_seq, "alarms": engine.open_alarms()}


@router.get("/rules")
async def rules(engine: EngineDep) -> list[dict]:
    """Every rule, where it was defined, and whether its signal exists."""
    missing = {rule.id for rule in engine.unresolved()}
    return [{**_rule_json(rule), "resolved": rule.id not in missing} for rule in engine.rules]


@router.post("/{alarm_id}/acknowledge")
async def acknowledge(alarm_id: int, principal: Operator, engine: EngineDep,
                      body: Acknowledgement | None = None) -> dict:
    """An operator has seen the alarm (recorded with who, when and the comment)."""
    try:
        return engine.acknowledge(alarm_id, principal.user, (body or Acknowledgement()).comment).to_json()
    except KeyError as error:
        raise HTTPException(404, error.args[0]) from None
    except ValueError as error:
        raise HTTPException(409, str(error)) from None


@router.get("/events")
async def events(engine: EngineDep, since: int = Query(0, ge=0)) -> dict:
    """Transitions after sequence number `since` still in memory (the last 10,000)."""
    found = engine.events_since(since)
    return {"seq": engine.last_seq, "events": [event.to_json() for event in found]}


@router.get("/at")
async def alarms_at(t: Finite, store: HistorianDep) -> dict:
    """The alarm list as it was at instant `t` (Unix seconds), rebuilt from the stored transitions."""
    return {"at": t, "alarms": await asyncio.to_thread(store.alarms_at, t)}


@router.get("/history")
async def history(store: HistorianDep, start: Finite | None = None, end: Finite | None = None,
                  key: str | None = None) -> list[dict]:
    """Stored transitions over [start, end] (Unix seconds; unbounded where left out), optionally of one signal."""
    return await asyncio.to_thread(store.alarm_events, -math.inf if start is None else start,
                                   math.inf if end is None else end, key)
