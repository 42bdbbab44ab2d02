"""The scene's robots, posed from their live joint signals in one Warp launch per tick.

Each robot prim of the layout (`twin:kind = "robot"`) becomes one instance of a
`KinematicsBatch`; robots built from the same URDF share one chain. Every tick the
joint vectors are gathered from the runtime cache, forward kinematics runs for all
robots at once, and each link prim's local USD transform (what the viewer sets) goes back
into the cache. Links may be nested under other links or Xforms, the stage may use any
`metersPerUnit`, and pivot links (`<child>@<joint>`, no prim) are evaluated but never written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
from pxr import Usd, UsdGeom

from twin.core.cache import RuntimeCache, quality_name
from twin.core.stage import TwinStage, usd_to_numpy
from twin.kinematics.batch import KinematicsBatch
from twin.kinematics.chain import Chain
from twin.kinematics.usd import link_prim_paths

JOINT_SIGNAL = "twin:jointPositions"


@dataclass(frozen=True)
class SceneRobot:
    path: str
    chain: Chain
    joint_row: int  # cache row of the joint vector signal
    link_rows: np.ndarray  # cache transform rows of the links that are prims (pivot links are not)
    world: np.ndarray  # the robot prim's world transform


@dataclass(frozen=True)
class _LocalFrames:
    """How chain poses (metres, robot frame) become each link prim's local USD transform.

    local = left @ inverse(pose[parent]) @ pose[link] @ right, where parent is the nearest ancestor prim
    that is a link (or none: the ancestors are static, folded into `left`), and left/right carry the
    static Xforms between, the unit conversion and each prim's scale.
    """

    links: np.ndarray  # (k,) index into the FK output
    parents: np.ndarray  # (k,) index into the FK output, -1 for a static parent
    left: np.ndarray  # (k, 4, 4)
    right: np.ndarray  # (k, 4, 4)

    def apply(self, poses: np.ndarray) -> np.ndarray:
        parent = np.tile(np.eye(4), (len(self.parents), 1, 1))
        moving = self.parents >= 0
        parent[moving] = _rigid_inverse(poses[self.parents[moving]])
        return self.left @ parent @ poses[self.links] @ self.right


def _rigid_inverse(matrices: np.ndarray) -> np.ndarray:
    inverse = np.zeros_like(matrices)
    rotation_t = np.swapaxes(matrices[..., :3, :3], -1, -2)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -(rotation_t @ matrices[..., :3, 3, None])[..., 0]
    inverse[..., 3, 3] = 1.0
    return inverse


def _local_frames(stage: Usd.Stage, robot_path: str, chain: Chain, links: dict[str, str],
                  out_start: int) -> _LocalFrames:
    """The static part of every link prim's local transform, read from the authored stage."""
    meters = UsdGeom.GetStageMetersPerUnit(stage)
    to_units = np.diag([1.0 / meters] * 3 + [1.0])

    def world(path: str) -> np.ndarray:
        prim = stage.GetPrimAtPath(path)
        if not prim.IsA(UsdGeom.Xformable):
            return np.eye(4)
        return usd_to_numpy(UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(Usd.TimeCode.Default()))

    def scale(matrix: np.ndarray) -> np.ndarray:
        return np.diag([*np.linalg.norm(matrix[:3, :3], axis=0), 1.0])

    robot_world = world(robot_path)
    robot_rigid = robot_world @ np.linalg.inv(scale(robot_world))  # the frame chain poses are in, in metres
    robot_rigid[:3, 3] *= meters
    index_of_path = {path: chain.link_index(name) for name, path in links.items()}
    indices, parents, lefts, rights = [], [], [], []
    for name, path in links.items():
        link_world = world(path)
        rights.append(np.linalg.inv(to_units) @ scale(link_world))
        ancestor = stage.GetPrimAtPath(path).GetParent()
        while ancestor and str(ancestor.GetPath()) not in index_of_path and not ancestor.IsPseudoRoot():
            ancestor = ancestor.GetParent()
        parent_world = usd_to_numpy(
            UsdGeom.Xformable(stage.GetPrimAtPath(path)).ComputeParentToWorldTransform(Usd.TimeCode.Default()))
        if ancestor and str(ancestor.GetPath()) in index_of_path:  # moves with a link: static offset below it
            ancestor_world = world(str(ancestor.GetPath()))
            offset = np.linalg.inv(ancestor_world) @ parent_world
            lefts.append(np.linalg.inv(offset) @ np.linalg.inv(scale(ancestor_world)) @ to_units)
            parents.append(out_start + index_of_path[str(ancestor.GetPath())])
        else:
            lefts.append(np.linalg.inv(parent_world) @ to_units @ robot_rigid)
            parents.append(-1)
        indices.append(out_start + chain.link_index(name))
    return _LocalFrames(np.array(indices, np.int64), np.array(parents, np.int64), np.array(lefts).reshape(-1, 4, 4),
                        np.array(rights).reshape(-1, 4, 4))


class SceneRobots:
    """All robots of a stage, evaluated together."""

    def __init__(self, twin_stage: TwinStage, cache: RuntimeCache, *, device: str | None = None):
        self.cache = cache
        chains: dict[str, Chain] = {}
        instance_chains: list[int] = []
        robots: list[SceneRobot] = []
        frames: list[_LocalFrames] = []
        out_start = 0
        for prim in twin_stage.prims_of_kind("robot"):
            path = str(prim.GetPath())
            source = str(prim.GetAttribute("twin:urdf").Get() or path)
            chain = chains.get(source)
            if chain is None:
                chain = chains[source] = Chain.from_usd(twin_stage.authored_stage, path)
            instance_chains.append(list(chains).index(source))
            links = link_prim_paths(twin_stage.authored_stage, path)
            link_rows = np.array([cache.add_transform(link, twin_stage.local_transform(link))
                                  for link in links.values()], np.int64)
            joint_row = cache.add_signal(path, JOINT_SIGNAL, width=chain.n_joints, unit="rad")
            robots.append(SceneRobot(path, chain, joint_row, link_rows, twin_stage.world_transform(path)))
            frames.append(_local_frames(twin_stage.authored_stage, path, chain, links, out_start))
            out_start += chain.n_links
        self.robots = tuple(robots)
        self.batch = KinematicsBatch(list(chains.values()), instance_chains, device=device) if robots else None
        self.q = np.zeros(self.batch.n_q if self.batch else 0)
        if robots:
            self.all_link_rows = np.concatenate([robot.link_rows for robot in robots])
            self._frames = _LocalFrames(*(np.concatenate([getattr(f, name) for f in frames])
                                          for name in ("links", "parents", "left", "right")))
        self.link_local = np.zeros((self.batch.n_out if self.batch else 0, 4, 4))
        self._query_lock = threading.Lock()  # REST calls run in threads; evaluators keep buffers

    def follow(self, joint_rows: dict[str, int]) -> None:
        """Pose the robots named in `joint_rows` (path -> cache row) from those joint signals instead of their
        `twin:jointPositions` (the physics line's robots, which run their own cycles)."""
        self.robots = tuple(replace(robot, joint_row=joint_rows.get(robot.path, robot.joint_row))
                            for robot in self.robots)

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
        cache.write_transforms(self.all_link_rows, self._frames.apply(self.link_local))

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
