"""The scene's robots, posed from their live joint signals in one Warp launch per tick.

Each robot prim of the layout (`twin:kind = "robot"`) becomes one instance of a
`KinematicsBatch`; robots built from the same URDF share one chain. Every tick the
joint vectors are gathered from the runtime cache, forward kinematics runs for all
robots at once, and each link's transform relative to its robot prim (the link's
local transform in USD, which is what the viewer sets) goes back into the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.cache import RuntimeCache, quality_name
from twin.kinematics import Chain, KinematicsBatch
from twin.stage import TwinStage
from twin.usd_robot import link_prim_paths

JOINT_SIGNAL = "twin:jointPositions"


@dataclass(frozen=True)
class SceneRobot:
    path: str
    chain: Chain
    joint_row: int  # cache row of the joint vector signal
    link_rows: np.ndarray  # cache transform rows, in chain.link_names order
    world: np.ndarray  # the robot prim's world transform


class SceneRobots:
    """All robots of a stage, evaluated together."""

    def __init__(self, twin_stage: TwinStage, cache: RuntimeCache, *, device: str | None = None):
        self.cache = cache
        chains: dict[str, Chain] = {}
        instance_chains: list[int] = []
        robots: list[SceneRobot] = []
        for prim in twin_stage.prims_of_kind("robot"):
            path = str(prim.GetPath())
            source = str(prim.GetAttribute("twin:urdf").Get() or path)
            chain = chains.get(source)
            if chain is None:
                chain = chains[source] = Chain.from_usd(twin_stage.stage, path)
            instance_chains.append(list(chains).index(source))
            links = link_prim_paths(twin_stage.stage, path)
            link_rows = np.array(
                [cache.add_transform(links[name], twin_stage.local_transform(links[name]))
                 for name in chain.link_names], np.int64,
            )
            joint_row = cache.add_signal(path, JOINT_SIGNAL, width=chain.n_joints, unit="rad")
            robots.append(SceneRobot(path, chain, joint_row, link_rows, twin_stage.world_transform(path)))
        self.robots = tuple(robots)
        self.batch = KinematicsBatch(list(chains.values()), instance_chains, device=device) if robots else None
        self.q = np.zeros(self.batch.n_q if self.batch else 0)
        if robots:
            self.all_link_rows = np.concatenate([robot.link_rows for robot in robots])
        self.link_local = np.zeros((self.batch.n_out if self.batch else 0, 4, 4))

    def update(self) -> None:
        """Pose every robot whose joint signal has a usable value; others keep their last pose."""
        if self.batch is None:
            return
        cache = self.cache
        for robot, q_slice in zip(self.robots, self.batch.q_slices, strict=True):
            values = cache.signal_values(robot.joint_row)
            if quality_name(cache.status[robot.joint_row]) != "bad" and np.all(np.isfinite(values)):
                self.q[q_slice] = values
        self.link_local = self.batch.forward(self.q)
        cache.write_transforms(self.all_link_rows, self.link_local)

    def link_world(self, robot_index: int, link: str) -> np.ndarray:
        """World transform of one link after the last update."""
        robot = self.robots[robot_index]
        local = self.link_local[self.batch.link_slices[robot_index]][robot.chain.link_index(link)]
        return robot.world @ local
