"""REST API of the scene's robots: describe them, and run their kinematics on the twin's device.

Poses and targets are 4x4 world transforms (the factory's frame), so a script can ask "which joints put
this gripper over that pallet" without knowing where the robot stands.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from twin.core.errors import KinematicsError
from twin.server.deps import TwinDep
from twin.sim.robots import SceneRobots

MAX_REST_FK = 2_000  # joint vectors per request: the answer is JSON, 2,000 x 9 links x 16 numbers is ~5 MB


class ForwardBody(BaseModel):
    robot: str
    q: list[list[float]] | list[float]


class InverseBody(BaseModel):
    robot: str
    targets: list[list[list[float]]] | list[list[float]]
    link: str | None = None
    seeds: int = Field(8, ge=1, le=64)


async def get_robots(twin: TwinDep) -> SceneRobots:
    return twin.robots


RobotsDep = Annotated[SceneRobots, Depends(get_robots)]
router = APIRouter(prefix="/api/robots")


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
async def forward(body: ForwardBody, robots: RobotsDep) -> dict:
    """World transforms of every link, (B, n_links, 4, 4), for joint vectors (B, n) or (n,)."""
    if body.q and isinstance(body.q[0], list) and len(body.q) > MAX_REST_FK:
        raise HTTPException(422, f"at most {MAX_REST_FK:,} joint vectors per request, got {len(body.q):,}; "
                                 f"larger batches belong in-process (twin.open or twin.Chain)")
    poses = await asyncio.to_thread(_guarded, robots.forward_world, body.robot, body.q)
    return {"links": list(robots.find(body.robot).chain.link_names), "poses": poses.tolist()}


@router.post("/ik")
async def inverse(body: InverseBody, robots: RobotsDep) -> dict:
    """Joint vectors bringing `link` (default: the flange) to world targets, with success and residuals."""
    result = await asyncio.to_thread(_guarded, robots.inverse_world, body.robot, body.targets, body.link,
                                     body.seeds)
    return {"q": result.q.tolist(), "success": result.success.tolist(),
            "position_error": result.position_error.tolist(), "rotation_error": result.rotation_error.tolist()}
