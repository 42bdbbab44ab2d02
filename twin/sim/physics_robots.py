"""Robots that run their taught route on physics: their links follow the route's joint moves, the gripper closes
on the part at the pick pose and opens at the place pose, so the part is carried by the gripper (docs/physics.md,
"Robots and grippers"). `twin.sim.physics_runtime.PhysicsLine` starts a cycle when the line's flow does; this
module says where the joints are at each moment of it and reports what a grip found."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pxr import Usd

from twin.core.cache import GOOD, RuntimeCache
from twin.core.errors import LayoutError
from twin.kinematics.chain import Chain
from twin.kinematics.trajectory import chain_joint_move
from twin.physics.gripper import GripResult

log = logging.getLogger("twin.physics")

GRIP_FAULT = "twin:physics:gripFault"  # on the robot: 1 after a grip that found no part, 0 after one that did
JOINTS = "twin:physics:jointPositions"  # on the robot: where physics has its links (rad)


@dataclass(frozen=True)
class Move:
    start: float  # seconds since the cycle began
    duration: float
    q_from: np.ndarray
    q_to: np.ndarray


class RouteProgram:
    """A robot's taught route (`twin:route` through `twin:pose:*`) as a timeline of quintic joint moves and grip
    and release holds of `twin:gripTime`, timed exactly as the line model times it (`twin:jointSpeed`,
    `twin:jointAcceleration`): the grip closes at the end of its hold (`grip_at`), the gripper opens at the
    start of the release hold (`release_at`)."""

    def __init__(self, stage: Usd.Stage, path: str, cache: RuntimeCache, where: str):
        prim = stage.GetPrimAtPath(path)
        route = list(prim.GetAttribute("twin:route").Get() or [])
        if "grip" not in route or "release" not in route or route.index("grip") > route.index("release"):
            raise LayoutError(where, f"{path}: twin:route must contain 'grip' and then 'release', got {route}")
        self.path, self.chain = path, Chain.from_usd(stage, path)

        def number(name: str, default: float) -> float:
            value = prim.GetAttribute(name).Get() if prim.GetAttribute(name) else None
            return float(default if value is None else value)

        speed, acceleration = number("twin:jointSpeed", 1.0), number("twin:jointAcceleration", 4.0)
        hold = number("twin:gripTime", 0.0)
        self.moves: list[Move] = []
        self.steps: list[tuple[float, str]] = []  # (start, name) of each step: 'to_<pose>', 'grip', 'release'
        clock, previous = 0.0, None
        self.home: np.ndarray | None = None
        for step in route:
            if step in ("grip", "release"):
                self.steps.append((clock, step))
                if step == "release":
                    self.release_at = clock
                clock += hold
                if step == "grip":
                    self.grip_at = clock
                continue
            attribute = prim.GetAttribute(f"twin:pose:{step}")
            if not attribute or attribute.Get() is None:
                raise LayoutError(where, f"{path}: twin:route names pose {step!r}; twin:pose:{step} is not authored")
            pose = self.chain.check_q(np.array(attribute.Get(), np.float64))[0]
            if previous is None:
                self.home = pose
            else:
                move = chain_joint_move(self.chain, previous[None], pose[None], speed=speed,
                                        acceleration=acceleration, profile="quintic")
                self.moves.append(Move(clock, float(move.duration[0]), previous, pose))
                self.steps.append((clock, f"to_{step}"))
                clock += float(move.duration[0])
            previous = pose
        if self.home is None:
            raise LayoutError(where, f"{path}: twin:route names no pose")
        self.duration = clock
        self.fault_row = cache.add_signal(path, GRIP_FAULT, kind="int")
        cache.write_signal(self.fault_row, 0, status=GOOD)  # no grip has failed yet: a known value, not a wait
        self.joint_row = cache.add_signal(path, JOINTS, width=self.chain.n_joints, unit="rad")
        self.faults = 0
        self.last: np.ndarray | None = None  # the joint values last posed

    def joints(self, time: float) -> np.ndarray:
        """The joint values `time` seconds into a cycle: home before it, where the route ends after it."""
        if time <= 0.0:
            return self.home
        for move in reversed(self.moves):
            if time >= move.start:
                share = min((time - move.start) / move.duration, 1.0) if move.duration > 0 else 1.0
                eased = share ** 3 * (10.0 - 15.0 * share + 6.0 * share ** 2)  # quintic: at rest at both ends
                return move.q_from + eased * (move.q_to - move.q_from)
        return self.home

    def step_at(self, time: float) -> str:
        """The route's step `time` seconds into a cycle ('to_<pose>', 'grip', 'release'); 'waiting' outside it."""
        if time < 0.0 or time >= self.duration:
            return "waiting"
        return next((name for start, name in reversed(self.steps) if time >= start), "waiting")

    def moved(self, q: np.ndarray) -> bool:
        """Whether `q` differs from the joint values last posed (and remembers it)."""
        if self.last is not None and np.array_equal(q, self.last):
            return False
        self.last = q
        return True

    def publish(self, cache: RuntimeCache, q: np.ndarray, source_time: float) -> None:
        cache.write_signal(self.joint_row, q, status=GOOD, source_time=source_time)

    def report(self, cache: RuntimeCache, result: GripResult, source_time: float) -> None:
        """A grip's outcome as the fault signal, good and timed like any signal; a failed grip is also logged."""
        failed = result.part is None
        if failed:
            self.faults += 1
            log.warning("grip fault: %s (the robot carries on without a part)", result.fault)
        cache.write_signal(self.fault_row, int(failed), status=GOOD, source_time=source_time)
