"""REST API of the scene's robots: describe them, and run their kinematics on the twin's device.

Poses and targets are 4x4 world transforms (the factory's frame), so a script can ask "which joints put
this gripper over that pallet" without knowing where the robot stands.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import Field

from twin.core.errors import KinematicsError
from twin.kinematics.ik import IkResult
from twin.physics.collision import DEFAULT_MAX_DISTANCE, MotionCheckers
from twin.server.deps import ApiModel, TwinDep
from twin.sim.robots import SceneRobots
from twin.sim.runtime import Twin

MAX_REST_FK = 2_000  # joint vectors per request: the answer is JSON, 2,000 x 9 links x 16 numbers is ~5 MB
MAX_REST_IK = 4_096  # targets x seeds per request: about 2 s of solving on a 2-core CPU
FK_CHUNK = 500  # joint vectors, and IK solves, between two checks that the client is still there
IK_CHUNK = 512
MAX_REST_CHECK_SAMPLES = 10_000  # trajectory samples per request (each may be interpolated into several checks)
MAX_REST_CHECKS = 200_000  # interpolated configurations per request: a few seconds on a 2-core CPU
MAX_REST_CLEARANCE_SAMPLES = 200  # samples whose clearance is asked for: ~30 ms each on a 2-core CPU


class ForwardBody(ApiModel):
    robot: str
    q: list[list[float]] | list[float]


class InverseBody(ApiModel):
    robot: str
    targets: list[list[list[float]]] | list[list[float]]
    link: str | None = None
    seeds: int = Field(8, ge=1, le=64)


class CheckMotionBody(ApiModel):
    robot: str
    trajectory: list[list[list[float]]] | list[list[float]] | list[float]
    times: list[list[float]] | list[float] | None = None
    distance: bool = True
    max_distance: float = Field(DEFAULT_MAX_DISTANCE, gt=0.0, le=10.0)


_CHECKERS: weakref.WeakKeyDictionary[Twin, MotionCheckers] = weakref.WeakKeyDictionary()


async def get_robots(twin: TwinDep) -> SceneRobots:
    return twin.robots


RobotsDep = Annotated[SceneRobots, Depends(get_robots)]
router = APIRouter(prefix="/api/robots")


async def _chunked(request: Request, call, robot: str, batch: list, chunk: int, *args) -> list:
    """`call(robot, part, *args)` over `batch` in parts of `chunk`, each on a worker thread, stopping when the
    client has left (a hostile or impatient client must not keep the kinematics busy)."""
    results = []
    for start in range(0, len(batch), chunk):
        if start and await request.is_disconnected():
            raise HTTPException(499, "the client left before the answer was ready")
        results.append(await asyncio.to_thread(_guarded, call, robot, batch[start:start + chunk], *args))
    return results


def _guarded(call, *args):
    """Run a kinematics call, turning an unknown robot or link into 404 and an impossible request into 422."""
    try:
        return call(*args)
    except KeyError as error:
        raise HTTPException(404, error.args[0]) from None
    except (KinematicsError, ValueError) as error:
        raise HTTPException(422, str(error)) from None


@router.get("")
async def describe(robots: RobotsDep) -> list[dict]:
    """Every robot: joints with limits (rad or m), links, world pose, current joint vector."""
    return robots.describe()


@router.post("/fk")
async def forward(body: ForwardBody, robots: RobotsDep, request: Request) -> dict:
    """World transforms of every link, (B, n_links, 4, 4), for joint vectors (B, n) or (n,)."""
    if not (body.q and isinstance(body.q[0], list)):
        poses = await asyncio.to_thread(_guarded, robots.forward_world, body.robot, body.q)
    elif len(body.q) > MAX_REST_FK:
        raise HTTPException(422, f"at most {MAX_REST_FK:,} joint vectors per request, got {len(body.q):,}; "
                                 f"larger batches belong in-process (twin.open or twin.Chain)")
    else:
        poses = np.concatenate(await _chunked(request, robots.forward_world, body.robot, body.q, FK_CHUNK))
    return {"links": list(robots.find(body.robot).chain.link_names), "poses": poses.tolist()}


@router.post("/ik")
async def inverse(body: InverseBody, robots: RobotsDep, request: Request) -> dict:
    """Joint vectors bringing `link` (default: the flange) to world targets, with success and residuals."""
    batched = bool(body.targets and body.targets[0]) and isinstance(body.targets[0][0], list)
    targets = body.targets if batched else [body.targets]
    if len(targets) * body.seeds > MAX_REST_IK:
        raise HTTPException(422, f"{len(targets):,} targets x {body.seeds} seeds is more than the {MAX_REST_IK:,} "
                                 f"targets x seeds a request may solve; larger batches belong in-process "
                                 f"(twin.open or twin.Chain)")
    parts = await _chunked(request, robots.inverse_world, body.robot, targets, max(1, IK_CHUNK // body.seeds),
                           body.link, body.seeds)
    result = IkResult(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))
    return {"q": result.q.tolist(), "success": result.success.tolist(),
            "position_error": result.position_error.tolist(), "rotation_error": result.rotation_error.tolist()}


@router.post("/check_motion")
async def check_motion(body: CheckMotionBody, twin: TwinDep) -> dict:
    """The first contact of a joint trajectory (T, n), or of each of a batch (B, T, n), with the cell or the
    robot itself; clearance when free (twin/physics/collision.py)."""
    batch = body.trajectory
    count = sum(len(t) if t and isinstance(t[0], list) else 1 for t in batch) if batch and isinstance(batch[0], list) \
        else 1  # samples, counted before any array is made (ragged lists are refused by the checker)
    if count > MAX_REST_CHECK_SAMPLES:
        raise HTTPException(422, f"trajectory: at most {MAX_REST_CHECK_SAMPLES:,} samples per request, got "
                                 f"{count:,}; larger batches belong in-process (twin.open)")
    if body.distance and count > MAX_REST_CLEARANCE_SAMPLES:
        raise HTTPException(422, f"trajectory: at most {MAX_REST_CLEARANCE_SAMPLES:,} samples per request with "
                                 f"distance (the clearance), got {count:,}; send distance=false for the contacts alone")
    checkers = _CHECKERS.get(twin)
    if checkers is None:
        checkers = _CHECKERS[twin] = MotionCheckers(twin.stage.authored_stage, [r.path for r in twin.robots.robots],
                                                    device=twin.device)
    check = functools.partial(checkers.check_motion, times=body.times, distance=body.distance,
                              max_distance=body.max_distance, max_checks=MAX_REST_CHECKS)
    found = await asyncio.to_thread(_guarded, check, body.robot, body.trajectory)
    return {"results": [result.to_dict() for result in found]} if isinstance(found, list) else found.to_dict()
