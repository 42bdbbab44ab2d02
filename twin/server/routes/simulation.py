"""The live simulation step: its state, and pause, resume or a new rate (operator role)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import Field

from twin.server.clock import SimulationClock
from twin.server.deps import ApiModel, ClockDep, Operator, TwinDep
from twin.sim.runtime import Twin

log = logging.getLogger("twin.server")
router = APIRouter(prefix="/api")


class SimulationControl(ApiModel):
    running: bool | None = None
    tick_hz: float | None = Field(None, ge=1.0, le=120.0)


def _simulation_state(twin: Twin, clock: SimulationClock) -> dict:
    return {"running": clock.running, "tick_hz": clock.tick_hz, "ticks": clock.ticks,
            "steps": twin.steps, "step_ms": round(twin.step_seconds * 1000, 3), "device": twin.device}


@router.get("/simulation")
async def simulation(twin: TwinDep, clock: ClockDep) -> dict:
    return _simulation_state(twin, clock)


@router.post("/simulation")
async def control_simulation(control: SimulationControl, principal: Operator, twin: TwinDep,
                             clock: ClockDep) -> dict:
    """Pause or resume the live simulation step, or change its rate (operator role). The stream
    keeps going while paused: signals still arrive, poses and parts stand still."""
    if control.running is not None:
        clock.running = control.running
    if control.tick_hz is not None:
        clock.tick_hz = control.tick_hz
    log.info("simulation %s at %g Hz by %s", "running" if clock.running else "paused", clock.tick_hz,
             principal.user)
    return _simulation_state(twin, clock)
