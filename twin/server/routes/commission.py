"""Commissioning (`twin commission`): the line's I/O as a watch table, and faults on demand (docs/commissioning.md).

Reading is for viewers; forcing, releasing and the force audit are for operators. A twin that is not
commissioning answers 404 on every route here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field
from starlette.requests import HTTPConnection

from twin.commission.address import INPUT
from twin.commission.forcing import ALL, MAX_TEXT, OFFLINE, ForceError, Mode, UnknownNodeError
from twin.commission.server import CommissionServer
from twin.server.deps import ApiModel, Finite, Operator, Viewer, quoted, require_role

router = APIRouter(prefix="/api/commission")


async def need_commission(connection: HTTPConnection) -> CommissionServer:
    server = getattr(connection.app.state, "commission", None)
    if server is None:
        raise HTTPException(404, "this twin is not commissioning a line: start it with `twin commission`")
    return server


CommissionDep = Annotated[CommissionServer, Depends(need_commission)]


class ForceRequest(ApiModel):
    node: str = Field(max_length=300)
    mode: Mode = "value"
    value: bool | Annotated[int, Field(ge=-(2**64), le=2**64)] | float | Annotated[str, Field(max_length=MAX_TEXT)] \
        | None = None
    period_s: Annotated[Finite, Field(gt=0)] | None = None


@router.get("/io")
async def io(server: CommissionDep, principal: Viewer) -> dict:
    """Every input and output with its value now (what the controller reads or wrote) and its force, like a PLC
    watch table; and the drives and stations that can be failed."""
    forces = server.forces.active
    rows = []
    for signal in server.signals:
        if signal.direction == INPUT:
            value: Any = server.forces.value(signal, signal.value())
        else:
            written = server.server.read_attribute_value(server.nodes[signal.node].nodeid).Value
            value = written.Value if written is not None else None
        force = forces.get(signal.node)
        rows.append({"node": signal.node, "direction": signal.direction, "type": signal.type, "unit": signal.unit,
                     "value": None if value is OFFLINE else value, "quality": "Bad" if value is OFFLINE else "Good",
                     "forced": force.json() if force else None})
    units = [{"node": node, "kind": "drive" if node in server.forces.drives else "station",
              "forced": forces[node].json() if node in forces else None}
             for node in (*server.forces.drives, *server.forces.stations)]
    return {"mode": "lockstep" if server.lockstep else "free-run", "endpoint": server.endpoint,
            "cycle": server.plant.cycles, "virtual_time": server.plant.time, "signals": rows, "units": units}


@router.get("/forces")
async def forces(server: CommissionDep, principal: Viewer) -> list[dict]:
    """The forces in effect."""
    return [force.json() for force in server.forces.active.values()]


@router.post("/forces")
async def force(body: ForceRequest, server: CommissionDep, principal: Operator) -> dict:
    """Force an input (value, stuck, flicker, offline) or fail a drive or a station (operator role)."""
    try:
        applied = await server.force(body.node, body.mode, body.value, period_s=body.period_s, user=principal.user)
    except ForceError as error:
        raise HTTPException(422, quoted(error, 300)) from None
    except UnknownNodeError as error:
        raise HTTPException(404, quoted(error, 300)) from None
    return applied.json()


@router.delete("/forces")
async def release_all(server: CommissionDep, principal: Operator) -> dict:
    """Release every force in one action (operator role)."""
    return {"released": await server.release(ALL, user=principal.user)}


@router.delete("/forces/{node}")
async def release(node: str, server: CommissionDep, principal: Operator) -> dict:
    """Release the force on one node (operator role)."""
    try:
        return {"released": await server.release(node, user=principal.user)}
    except UnknownNodeError as error:
        raise HTTPException(404, quoted(error, 300)) from None


@router.get("/audit", dependencies=[Depends(require_role("operator"))])
async def audit(server: CommissionDep) -> list[dict]:
    """Every force and release: time, user, action, node, mode, value."""
    return server.forces.audit_json()
