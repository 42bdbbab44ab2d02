"""REST API of what-if studies: start one, follow its progress, read its KPIs, play one variant.

Studies are analysis, not control: they never touch the plant or the live twin, so the viewer
role may run them; their cost is bounded by the job queue (twin/line/jobs.py) and the limits of
twin/line/whatif.py.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import Field

from twin.core.errors import TwinError
from twin.line.jobs import WhatIfJobs, WhatIfRequest
from twin.line.live import LiveStart
from twin.line.model import KINDS, PARAMETERS, LineModel, read_line
from twin.line.playback import PlaybackGeometry, playback_frames, record_variant
from twin.line.whatif import MAX_HOURS, SweepParameter
from twin.server.deps import ApiModel, Finite, Viewer
from twin.sim.runtime import Twin

MAX_PLAYBACK_SECONDS = 3600.0
MAX_PLAYBACK_FRAMES = 3000


class SweepBody(ApiModel):
    prim: str = Field(max_length=1000)
    attr: str = Field(max_length=200)
    values: list[float] = Field(min_length=1, max_length=1000)


class WhatIfBody(ApiModel):
    sweep: list[SweepBody] = Field(default_factory=list, max_length=4)
    replications: int = Field(30, ge=1, le=10_000)
    hours: float = Field(8.0, gt=0, le=MAX_HOURS)
    warmup_hours: float = Field(0.0, ge=0)
    seed: int = Field(1, ge=0, le=2**31 - 1)
    start: Literal["empty", "live"] = "empty"


class WhatIfStudies:
    """The study queue, made on first use from the layout's line; stopped with the server."""

    def __init__(self, twin: Twin, ray_address: str | None = None):
        self.twin = twin
        self.ray_address = ray_address  # studies run on this Ray cluster (`twin serve --ray-address`)
        self.playback_lock = asyncio.Lock()  # one playback at a time: each is a simulation and many frames
        self._jobs: WhatIfJobs | None = None

    def jobs(self) -> WhatIfJobs:
        """The queue, or 409 for a layout without a line."""
        if self._jobs is None:
            try:
                model = read_line(self.twin.stage.stage)
            except TwinError as error:
                raise HTTPException(409, f"this layout has no line to simulate: {error}") from None
            self._jobs = WhatIfJobs(model, lambda: LiveStart.from_cache(model, self.twin.cache),
                                    device=self.twin.device, ray_address=self.ray_address)
        return self._jobs

    def shutdown(self) -> None:
        if self._jobs is not None:
            self._jobs.shutdown()


async def get_studies(request: Request) -> WhatIfStudies:
    return request.app.state.whatif


async def need_jobs(studies: Annotated[WhatIfStudies, Depends(get_studies)]) -> WhatIfJobs:
    return studies.jobs()


StudiesDep = Annotated[WhatIfStudies, Depends(get_studies)]
JobsDep = Annotated[WhatIfJobs, Depends(need_jobs)]
router = APIRouter(prefix="/api")


@router.get("/line")
async def line(jobs: JobsDep) -> dict:
    """The line model: elements in flow order with their kind, parameters and next elements."""
    model: LineModel = jobs.model
    return {"elements": [{"prim": el.path, "name": el.name, "kind": KINDS[el.kind], "next": list(el.next),
                          "parameters": el.parameters} for el in model.elements],
            "parameters": list(PARAMETERS)}


@router.post("/whatif", status_code=202)
async def start(body: WhatIfBody, principal: Viewer, jobs: JobsDep, client: Request) -> dict:
    """Queue a study; one whose client left while it was checked is not queued (nobody would learn its id)."""
    request = WhatIfRequest([SweepParameter(s.prim, s.attr, s.values) for s in body.sweep], body.replications,
                            body.hours, body.warmup_hours, body.seed, body.start)
    try:
        await asyncio.to_thread(jobs.check, request)  # its size is counted first; then up to 20,000 points checked
        if await client.is_disconnected():
            raise HTTPException(499, "the client left before its study was queued")
        job = jobs.enqueue(request, principal.user)
    except TwinError as error:
        raise HTTPException(429 if "already waiting" in str(error) else 422, str(error)) from None
    return job.as_dict()


@router.get("/whatif")
async def list_jobs(jobs: JobsDep) -> list[dict]:
    return [job.as_dict(with_result=False) for job in jobs.jobs.values()]


@router.get("/whatif/{job_id}")
async def job(job_id: str, jobs: JobsDep) -> dict:
    try:
        return jobs.get(job_id).as_dict()
    except KeyError as error:
        raise HTTPException(404, str(error.args[0])) from None


@router.get("/whatif/{job_id}/playback")
async def playback(job_id: str, studies: StudiesDep, request: Request, point: int = Query(0, ge=0),
                   replication: int = Query(0, ge=0),
                   seconds: Annotated[Finite, Query(gt=0, le=MAX_PLAYBACK_SECONDS)] = 300.0,
                   step: Annotated[Finite, Query(ge=0.1, le=10.0)] = 0.5) -> dict:
    """One variant of a finished study, simulated again with its log: frames for the viewer."""
    if seconds / step > MAX_PLAYBACK_FRAMES:
        raise HTTPException(422, f"{seconds:g} s at a step of {step:g} s is more than {MAX_PLAYBACK_FRAMES} "
                                 "frames; take a longer step")
    manager = studies.jobs()
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
    async with studies.playback_lock:
        simulation = await asyncio.to_thread(record_variant, manager.model, variant, seconds, seed=result.seed,
                                             start=found.live_start, device=manager.device)
        if await request.is_disconnected():
            raise HTTPException(499, "the client left before its playback was ready")
        geometry = PlaybackGeometry(manager.model, studies.twin.stage, simulation.parameters[0])
        frames = await asyncio.to_thread(playback_frames, simulation, geometry, seconds, step)
    return {"job": job_id, "point": point, "replication": replication, "values": result.points[point]["values"],
            **frames}
