"""The scene's robots, posed from their live joint signals in one Warp launch per tick.

Each robot prim of the layout (`twin:kind = "robot"`) becomes one instance of a
`KinematicsBatch`; robots built from the same URDF share one chain. Every tick the
joint vectors are gathered from the runtime cache, forward kinematics runs for all
robots at once, and each link's transform relative to its robot prim (the link's
local transform in USD, which is what the viewer sets) goes back into the cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from twin.core.cache import RuntimeCache, quality_name
from twin.core.stage import TwinStage
from twin.kinematics.batch import KinematicsBatch
from twin.kinematics.chain import Chain
from twin.kinematics.usd import link_prim_paths

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
                chain = chains[source] = Chain.from_usd(twin_stage.authored_stage, path)
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
        self._query_lock = threading.Lock()  # REST calls run in threads; evaluators keep buffers

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

    # ------------------------------------------------------------------ questions about robots (SDK, REST)
    MAX_FK_BATCH = 100_000
    MAX_IK_BATCH = 10_000

    def find(self, path: str) -> SceneRobot:
        for robot in self.robots:
            if robot.path == path:
                return robot
        raise KeyError(f"no robot at {path}; robots: {', '.join(r.path for r in self.robots) or 'none'}")

    def describe(self) -> list[dict]:
        """Each robot's joints, limits, links, world pose and current joint vector, as JSON."""
        out = []
        for robot in self.robots:
            chain = robot.chain
            values = self.cache.signal_values(robot.joint_row)
            out.append({"path": robot.path, "joints": list(chain.joint_names), "links": list(chain.link_names),
                        "flange": flange(chain), "lower": _finite_list(chain.lower), "upper": _finite_list(chain.upper),
                        "base": robot.world.tolist(),
                        "q": values.tolist() if np.all(np.isfinite(values)) else None})
        return out

    def forward_world(self, path: str, q) -> np.ndarray:
        """World transforms (B, n_links, 4, 4) of a robot's links for joint vectors q (B, n) or (n,)."""
        robot = self.find(path)
        q = robot.chain.check_q(q)
        if len(q) > self.MAX_FK_BATCH:
            raise ValueError(f"at most {self.MAX_FK_BATCH:,} joint vectors per call, got {len(q):,}")
        with self._query_lock:
            return robot.chain.fk(q, base=robot.world, device=self.batch.device if self.batch else None)

    def inverse_world(self, path: str, targets, link: str | None = None, seeds: int = 8):
        """Joint vectors bringing `link` (default: the tool flange) to world targets (B, 4, 4)."""
        robot = self.find(path)
        targets = np.asarray(targets, np.float64)
        if targets.ndim == 2:
            targets = targets[None]
        if targets.ndim != 3 or targets.shape[1:] != (4, 4):
            raise ValueError(f"targets must be 4x4 matrices, shape (B, 4, 4); got {targets.shape}")
        if len(targets) > self.MAX_IK_BATCH:
            raise ValueError(f"at most {self.MAX_IK_BATCH:,} targets per call, got {len(targets):,}")
        if not 1 <= seeds <= 64:
            raise ValueError(f"seeds must be within 1..64, got {seeds}")
        local = np.linalg.inv(robot.world) @ targets  # the solver works in the robot's root frame
        with self._query_lock:
            return robot.chain.ik(local, link or flange(robot.chain), seeds=seeds,
                                  device=self.batch.device if self.batch else None)


def flange(chain: Chain) -> str:
    """The link a tool is mounted on: `tool0` (the ROS-Industrial name) or else the deepest link."""
    if "tool0" in chain.link_names:
        return "tool0"
    depth = np.zeros(chain.n_links, np.int64)
    for index in range(1, chain.n_links):  # links are in topological order: parents come first
        depth[index] = depth[chain.link_parent[index]] + 1
    return chain.link_names[int(np.argmax(depth))]


def _finite_list(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in values]
