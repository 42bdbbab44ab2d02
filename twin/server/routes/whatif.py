"""REST API of what-if studies: start one, follow its progress, read its KPIs, play one variant.

Studies are analysis, not control: they never touch the plant or the live twin, so the viewer
role may run them; their cost is bounded by the job queue (twin/line/jobs.py) and the limits of
twin/line/whatif.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from twin.core.errors import TwinError
from twin.line.jobs import WhatIfJobs, WhatIfRequest
from twin.line.live import LiveStart
from twin.line.model import KINDS, PARAMETERS, LineModel, read_line
from twin.line.playback import PlaybackGeometry, playback_frames, record_variant
from twin.line.whatif import MAX_HOURS, SweepParameter
from twin.server.auth import Access
from twin.sim.runtime import Twin

MAX_PLAYBACK_SECONDS = 3600.0
MAX_PLAYBACK_FRAMES = 3000


class SweepBody(BaseModel):
    prim: str
    attr: str
    values: list[float] = Field(min_length=1, max_length=1000)


class WhatIfBody(BaseModel):
    sweep: list[SweepBody] = Field(default_factory=list, max_length=4)
    replications: int = Field(30, ge=1, le=10_000)
    hours: float = Field(8.0, gt=0, le=MAX_HOURS)
    warmup_hours: float = Field(0.0, ge=0)
    seed: int = Field(1, ge=0, le=2**31 - 1)
    start: Literal["empty", "live"] = "empty"


def whatif_router(twin: Twin, access: Access) -> tuple[APIRouter, Callable[[], None]]:
    """The routes, and a function that stops the study running (call it when the server stops)."""
    router = APIRouter(prefix="/api")
    holder: dict[str, object] = {}
    playback_lock = asyncio.Lock()

    def shutdown() -> None:
        if "jobs" in holder:
            holder["jobs"].shutdown()

    def jobs() -> WhatIfJobs:
        """The line is read from the layout on first use; a layout without one answers 409."""
        if "jobs" not in holder:
            try:
                model = read_line(twin.stage.stage)
            except TwinError as error:
                raise HTTPException(409, f"this layout has no line to simulate: {error}") from None
            holder["jobs"] = WhatIfJobs(model, lambda: LiveStart.from_cache(model, twin.cache), device=twin.device)
        return holder["jobs"]

    @router.get("/line")
    async def line() -> dict:
        """The line model: elements in flow order with their kind, parameters and next elements."""
        model: LineModel = jobs().model
        return {"elements": [{"prim": el.path, "name": el.name, "kind": KINDS[el.kind], "next": list(el.next),
                              "parameters": el.parameters} for el in model.elements],
                "parameters": list(PARAMETERS)}

    @router.post("/whatif", status_code=202)
    async def start(body: WhatIfBody, authorization: str | None = Header(default=None)) -> dict:
        principal = access.require(authorization, "viewer")
        request = WhatIfRequest([SweepParameter(s.prim, s.attr, s.values) for s in body.sweep], body.replications,
                                body.hours, body.warmup_hours, body.seed, body.start)
        try:
            job = jobs().submit(request, principal.user)
        except TwinError as error:
            status = 429 if "already waiting" in str(error) else 422
            return JSONResponse({"detail": str(error)}, status_code=status)
        return job.as_dict()

    @router.get("/whatif")
    async def list_jobs() -> list[dict]:
        return [job.as_dict(with_result=False) for job in jobs().jobs.values()]

    @router.get("/whatif/{job_id}")
    async def job(job_id: str) -> dict:
        try:
            return jobs().get(job_id).as_dict()
        except KeyError as error:
            raise HTTPException(404, str(error.args[0])) from None

    @router.get("/whatif/{job_id}/playback")
    async def playback(job_id: str, point: int = Query(0, ge=0), replication: int = Query(0, ge=0),
                       seconds: float = Query(300.0, gt=0, le=MAX_PLAYBACK_SECONDS),
                       step: float = Query(0.5, ge=0.1, le=10.0)) -> dict:
        """One variant of a finished study, simulated again with its log: frames for the viewer."""
        if seconds / step > MAX_PLAYBACK_FRAMES:
            raise HTTPException(422, f"{seconds:g} s at a step of {step:g} s is more than {MAX_PLAYBACK_FRAMES} "
                                     "frames; take a longer step")
        manager = jobs()
        try:
            found = manager.get(job_id)
        except KeyError as error:
            raise HTTPException(404, str(error.args[0])) from None
        result = found.result
        if result is None:
            raise HTTPException(409, f"what-if job {job_id} is {found.status}, not done")
        if point >= len(result.points) or replication >= result.replications:
            raise HTTPException(422, f"job {job_id} has {len(result.points)} points and "
                                     f"{result.replications} replications; point {point}, replication "
                                     f"{replication} is not among them")
        variant = result.variants[result.variant_index(point, replication)]
        async with playback_lock:  # one playback at a time: each is a simulation and many frames
            simulation = await asyncio.to_thread(record_variant, manager.model, variant, seconds, seed=result.seed,
                                                 start=found.live_start, device=manager.device)
            geometry = PlaybackGeometry(manager.model, twin.stage, simulation.parameters[0])
            frames = await asyncio.to_thread(playback_frames, simulation, geometry, seconds, step)
        return {"job": job_id, "point": point, "replication": replication, "values": result.points[point]["values"],
                **frames}

    return router, shutdown
