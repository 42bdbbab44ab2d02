"""Robot kinematics on Warp: kinematic trees as flat arrays, forward kinematics in one launch.

`Chain` is the immutable model of one robot (from URDF or from a USD articulation).
`KinematicsBatch` packs several chains, with any number of instances each, into one
model so that every robot of a scene (or thousands of configurations of one robot)
is evaluated by a single kernel launch, one thread per robot instance. Joint values
and link transforms are the mutable state, kept in separate arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import warp as wp

from twin.core.errors import KinematicsError
from twin.core.transforms import matrix_to_pose, pose_to_matrix
from twin.kinematics.device import default_device
from twin.kinematics.urdf import RobotDescription, load_urdf

wp.config.log_level = wp.LOG_WARNING  # no banner or per-module load lines in the twin's logs

FIXED, REVOLUTE, PRISMATIC = 0, 1, 2
_TYPE_CODES = {"fixed": FIXED, "revolute": REVOLUTE, "continuous": REVOLUTE, "prismatic": PRISMATIC}


# --------------------------------------------------------------------------- the model of one robot
@dataclass(frozen=True, eq=False)
class Chain:
    """Immutable kinematic tree of one robot, links in topological order (root first).

    Per link `i > 0`: its parent link, the joint that moves it (type, origin in the parent
    frame, unit axis), and which input joint drives it (`q_index`, with mimic multiplier and
    offset; fixed joints have -1). The root link has parent -1 and an identity joint.
    """

    name: str
    link_names: tuple[str, ...]
    link_parent: np.ndarray  # (L,) int
    joint_type: np.ndarray  # (L,) int, code of the joint that moves the link
    joint_origin: np.ndarray  # (L, 4, 4)
    joint_axis: np.ndarray  # (L, 3)
    joint_q_index: np.ndarray  # (L,) int, -1 for fixed
    mimic_multiplier: np.ndarray  # (L,)
    mimic_offset: np.ndarray  # (L,)
    joint_names: tuple[str, ...]  # the input joints, in URDF order
    lower: np.ndarray  # (n,)
    upper: np.ndarray  # (n,)
    velocity_limit: np.ndarray  # (n,)

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def n_links(self) -> int:
        return len(self.link_names)

    def link_index(self, link: str) -> int:
        try:
            return self.link_names.index(link)
        except ValueError:
            raise KinematicsError(f"robot {self.name!r} has no link {link!r}; links: {list(self.link_names)}") from None

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_urdf(cls, path: str | Path) -> Chain:
        return cls.from_description(load_urdf(path, check_meshes=False))

    @classmethod
    def from_description(cls, robot: RobotDescription) -> Chain:
        joints = [
            _JointRecord(j.name, j.type, j.parent, j.child, j.origin, j.axis, j.lower, j.upper, j.velocity,
                         j.mimic.joint if j.mimic else None, j.mimic.multiplier if j.mimic else 1.0,
                         j.mimic.offset if j.mimic else 0.0)
            for j in robot.joints
        ]
        return _build_chain(robot.name, robot.root, joints)

    @classmethod
    def from_usd(cls, stage, prim_path: str) -> Chain:
        """Read a robot authored as a UsdPhysics articulation (see docs/architecture.md)."""
        from twin.kinematics.usd import read_articulation

        name, root, joints = read_articulation(stage, prim_path)
        return _build_chain(name, root, [_JointRecord(**joint) for joint in joints])

    # ----------------------------------------------------------------- evaluation
    def fk(self, q, *, base: np.ndarray | None = None, device: str | None = None) -> np.ndarray:
        """World transforms (B, n_links, 4, 4) of every link, in `link_names` order, for q of shape (B, n)."""
        q = self.check_q(q)
        return self.forward_evaluator(device).forward(q, None if base is None else np.asarray(base, np.float64))

    def forward_evaluator(self, device: str | None = None):
        """The batched FK of this robot, with a kernel specialised to it (twin/fk_codegen.py)."""
        from twin.kinematics.forward import ChainForward

        device = device or default_device()
        cache = self.__dict__.setdefault("_evaluators", {})  # frozen dataclass: per-instance memo
        if device not in cache:
            cache[device] = ChainForward(self, device)
        return cache[device]

    def jacobian(self, q, link: str, *, device: str | None = None) -> np.ndarray:
        """Geometric Jacobians (B, 6, n_joints) of `link`: linear rows first, world-aligned axes at the link origin.

        Mimic joints add their multiplier times their motion to their leader's column.
        """
        q = self.check_q(q)
        target = self.link_index(link)
        batch = KinematicsBatch([self], [0] * q.shape[0], device=device)
        batch.forward(q.reshape(-1))
        return batch.jacobian(target)

    def ik(self, targets, link: str, *, seeds: int | np.ndarray = 8, **options):
        """Joint solutions reaching (B, 4, 4) targets (in the robot's root frame) with `link`.

        Returns `IkResult(q, success, position_error, rotation_error)`; see twin/ik.py for options.
        """
        from twin.kinematics.ik import solve_ik

        return solve_ik(self, targets, link, seeds=seeds, **options)

    def check_q(self, q) -> np.ndarray:
        if isinstance(q, wp.array):
            q = q.numpy()
        q = np.asarray(q, np.float64)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.n_joints:
            raise KinematicsError(
                f"robot {self.name!r}: q must have shape (B, {self.n_joints}), got {tuple(np.shape(q))}"
            )
        if not np.all(np.isfinite(q)):
            bad = np.argwhere(~np.isfinite(q))[0]
            raise KinematicsError(f"robot {self.name!r}: q[{bad[0]}, {bad[1]}] is not finite")
        return q


@dataclass
class _JointRecord:
    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray
    axis: np.ndarray
    lower: float
    upper: float
    velocity: float
    mimic_joint: str | None = None
    mimic_multiplier: float = 1.0
    mimic_offset: float = 0.0


def _build_chain(name: str, root: str, joints: Sequence[_JointRecord]) -> Chain:
    children: dict[str, list[_JointRecord]] = {}
    for joint in joints:
        children.setdefault(joint.parent, []).append(joint)
    order: list[tuple[str, _JointRecord | None]] = []
    stack: list[tuple[str, _JointRecord | None]] = [(root, None)]
    while stack:  # depth-first, children in file order
        link, joint = stack.pop()
        order.append((link, joint))
        stack.extend(reversed([(j.child, j) for j in children.get(link, [])]))
    inputs = [j for j in joints if j.type != "fixed" and j.mimic_joint is None]
    input_index = {j.name: i for i, j in enumerate(inputs)}
    link_index = {link: i for i, (link, _) in enumerate(order)}
    count = len(order)
    parent = np.full(count, -1, np.int32)
    jtype = np.zeros(count, np.int32)
    origin = np.tile(np.eye(4), (count, 1, 1))
    axis = np.zeros((count, 3))
    q_index = np.full(count, -1, np.int32)
    multiplier = np.ones(count)
    offset = np.zeros(count)
    for i, (_, joint) in enumerate(order):
        if joint is None:
            continue
        parent[i] = link_index[joint.parent]
        jtype[i] = _TYPE_CODES[joint.type]
        origin[i] = joint.origin
        axis[i] = joint.axis
        if joint.type == "fixed":
            continue
        if joint.mimic_joint is not None:
            if joint.mimic_joint not in input_index:
                raise KinematicsError(f"robot {name!r}: joint {joint.name!r} mimics {joint.mimic_joint!r}, "
                                      "which is not an input joint")
            q_index[i] = input_index[joint.mimic_joint]
            multiplier[i], offset[i] = joint.mimic_multiplier, joint.mimic_offset
        else:
            q_index[i] = input_index[joint.name]
    lower = np.array([j.lower if j.type != "continuous" else -math.inf for j in inputs])
    upper = np.array([j.upper if j.type != "continuous" else math.inf for j in inputs])
    return Chain(
        name, tuple(link for link, _ in order), parent, jtype, origin, axis, q_index, multiplier, offset,
        tuple(j.name for j in inputs), lower, upper, np.array([j.velocity for j in inputs]),
    )


# --------------------------------------------------------------------------- batched evaluation on Warp
@wp.func
def joint_transform(origin: wp.transform, kind: int, axis: wp.vec3, value: float) -> wp.transform:
    """Parent-to-child transform: the joint origin followed by the joint's motion."""
    if kind == 1:
        motion = wp.quat_from_axis_angle(axis, value)
        return wp.transform(wp.transform_get_translation(origin), wp.transform_get_rotation(origin) * motion)
    if kind == 2:
        return origin * wp.transform(axis * value, wp.quat_identity())
    return origin


@wp.struct
class LinkJoint:
    """Everything FK needs about one link, packed so a link costs one load."""

    origin: wp.transform
    axis: wp.vec3
    parent: wp.int32
    kind: wp.int32
    q_index: wp.int32
    multiplier: float
    offset: float


@wp.kernel
def forward_kinematics_kernel(
    instance_chain: wp.array(dtype=wp.int32),
    instance_q_start: wp.array(dtype=wp.int32),
    instance_out_start: wp.array(dtype=wp.int32),
    instance_base: wp.array(dtype=wp.transform),
    chain_link_start: wp.array(dtype=wp.int32),
    chain_link_count: wp.array(dtype=wp.int32),
    links: wp.array(dtype=LinkJoint),
    q: wp.array(dtype=float),
    link_world: wp.array(dtype=wp.transform),
):
    instance = wp.tid()
    chain = instance_chain[instance]
    first = chain_link_start[chain]
    q_start = instance_q_start[instance]
    out = instance_out_start[instance]
    previous = instance_base[instance]
    for k in range(chain_link_count[chain]):
        link = links[first + k]
        value = float(0.0)
        if link.kind != 0:
            value = link.multiplier * q[q_start + link.q_index] + link.offset
        local = joint_transform(link.origin, link.kind, link.axis, value)
        if link.parent < 0:
            previous = instance_base[instance] * local
        elif link.parent == k - 1:  # serial chains: the parent is still in registers
            previous = previous * local
        else:
            previous = link_world[out + link.parent] * local
        link_world[out + k] = previous


vec6 = wp.types.vector(length=6, dtype=float)


@wp.func
def jacobian_column(frame: wp.transform, kind: int, axis: wp.vec3, multiplier: float, point: wp.vec3) -> vec6:
    """One joint's Jacobian column at `point` (linear rows first), for a link `frame` the joint moves."""
    world_axis = wp.transform_vector(frame, axis) * multiplier
    if kind == 1:
        linear = wp.cross(world_axis, point - wp.transform_get_translation(frame))
        return vec6(linear[0], linear[1], linear[2], world_axis[0], world_axis[1], world_axis[2])
    return vec6(world_axis[0], world_axis[1], world_axis[2], 0.0, 0.0, 0.0)


@wp.kernel
def jacobian_kernel(
    link_world: wp.array(dtype=wp.transform),
    link_parent: wp.array(dtype=wp.int32),
    joint_type: wp.array(dtype=wp.int32),
    joint_axis: wp.array(dtype=wp.vec3),
    joint_q_index: wp.array(dtype=wp.int32),
    mimic_multiplier: wp.array(dtype=float),
    n_links: int,
    target: int,
    jacobian: wp.array3d(dtype=float),
):
    """One instance per thread: walk from the target link to the root, one column per moving joint."""
    instance = wp.tid()
    first = instance * n_links
    point = wp.transform_get_translation(link_world[first + target])
    k = target
    while k >= 0:
        if joint_type[k] != 0:
            column = jacobian_column(link_world[first + k], joint_type[k], joint_axis[k], mimic_multiplier[k], point)
            for row in range(6):
                jacobian[instance, row, joint_q_index[k]] += column[row]
        k = link_parent[k]


class KinematicsBatch:
    """Many instances of one or more chains, evaluated together.

    `instance_chains[i]` says which chain instance `i` is; its joints occupy
    `q_slices[i]` of the flat joint vector and its links `link_slices[i]` of the output.
    """

    def __init__(self, chains: Sequence[Chain], instance_chains: Sequence[int], *, device: str | None = None):
        self.device = device or default_device()
        self.chains = tuple(chains)
        self.instance_chains = np.asarray(instance_chains, np.int32)
        if self.instance_chains.size == 0:
            raise KinematicsError("a kinematics batch needs at least one robot instance")
        link_counts = np.array([c.n_links for c in self.chains], np.int32)
        joint_counts = np.array([c.n_joints for c in self.chains], np.int32)
        chain_link_start = np.concatenate([[0], np.cumsum(link_counts)[:-1]]).astype(np.int32)
        per_instance_links = link_counts[self.instance_chains]
        per_instance_joints = joint_counts[self.instance_chains]
        self.out_start = np.concatenate([[0], np.cumsum(per_instance_links)[:-1]]).astype(np.int32)
        self.q_start = np.concatenate([[0], np.cumsum(per_instance_joints)[:-1]]).astype(np.int32)
        self.n_q = int(per_instance_joints.sum())
        self.n_out = int(per_instance_links.sum())
        self.link_slices = [slice(s, s + n) for s, n in zip(self.out_start, per_instance_links, strict=True)]
        self.q_slices = [slice(s, s + n) for s, n in zip(self.q_start, per_instance_joints, strict=True)]

        def cat(attribute):
            return np.concatenate([getattr(c, attribute) for c in self.chains])

        with wp.ScopedDevice(self.device):
            self._model = dict(
                instance_chain=wp.array(self.instance_chains, dtype=wp.int32),
                instance_q_start=wp.array(self.q_start, dtype=wp.int32),
                instance_out_start=wp.array(self.out_start, dtype=wp.int32),
                instance_base=wp.array(matrix_to_pose(np.tile(np.eye(4), (len(self.instance_chains), 1, 1))),
                                       dtype=wp.transform),
                chain_link_start=wp.array(chain_link_start, dtype=wp.int32),
                chain_link_count=wp.array(link_counts, dtype=wp.int32),
                link_parent=wp.array(cat("link_parent"), dtype=wp.int32),
                joint_type=wp.array(cat("joint_type"), dtype=wp.int32),
                joint_origin=wp.array(matrix_to_pose(cat("joint_origin")), dtype=wp.transform),
                joint_axis=wp.array(cat("joint_axis"), dtype=wp.vec3),
                joint_q_index=wp.array(cat("joint_q_index"), dtype=wp.int32),
                mimic_multiplier=wp.array(cat("mimic_multiplier"), dtype=float),
                mimic_offset=wp.array(cat("mimic_offset"), dtype=float),
            )
            packed = []
            for origin, axis, parent, kind, q_index, multiplier, offset in zip(
                matrix_to_pose(cat("joint_origin")), cat("joint_axis"), cat("link_parent"), cat("joint_type"),
                cat("joint_q_index"), cat("mimic_multiplier"), cat("mimic_offset"), strict=True,
            ):
                link = LinkJoint()
                link.origin = wp.transform(*origin[:3], *origin[3:])
                link.axis = wp.vec3(*axis)
                link.parent, link.kind, link.q_index = int(parent), int(kind), int(q_index)
                link.multiplier, link.offset = float(multiplier), float(offset)
                packed.append(link)
            self._links = wp.array(packed, dtype=LinkJoint)
            self.q = wp.zeros(max(self.n_q, 1), dtype=float)
            self.link_world = wp.zeros(self.n_out, dtype=wp.transform)

    def set_base(self, bases: np.ndarray) -> None:
        """World pose (4x4) of each instance's root."""
        self._model["instance_base"].assign(matrix_to_pose(bases).astype(np.float32))

    def forward(self, q: np.ndarray | wp.array) -> np.ndarray:
        """Flat joint vector in, (n_out, 4, 4) link transforms out."""
        if isinstance(q, wp.array):
            wp.copy(self.q, q)
        else:
            q = np.asarray(q, np.float32).reshape(-1)
            if q.size != self.n_q:
                raise KinematicsError(f"expected {self.n_q} joint values, got {q.size}")
            if self.n_q:
                self.q.assign(q)
        self.launch()
        return pose_to_matrix(self.link_world.numpy())

    def jacobian(self, target_link: int) -> np.ndarray:
        """Jacobians (instances, 6, n) of one link, after `forward`; all instances must be one chain."""
        chain = self.chains[0]
        if len(self.chains) != 1:
            raise KinematicsError("Jacobians are computed for batches of a single chain")
        m = self._model
        out = wp.zeros((len(self.instance_chains), 6, chain.n_joints), dtype=float, device=self.device)
        wp.launch(jacobian_kernel, dim=len(self.instance_chains),
                  inputs=[self.link_world, m["link_parent"], m["joint_type"], m["joint_axis"], m["joint_q_index"],
                          m["mimic_multiplier"], chain.n_links, target_link],
                  outputs=[out], device=self.device)
        return out.numpy().astype(np.float64)

    def launch(self) -> None:
        m = self._model
        wp.launch(
            forward_kinematics_kernel, dim=len(self.instance_chains),
            inputs=[m["instance_chain"], m["instance_q_start"], m["instance_out_start"], m["instance_base"],
                    m["chain_link_start"], m["chain_link_count"], self._links, self.q],
            outputs=[self.link_world], device=self.device,
        )

    @cached_property
    def chain_of_instance(self) -> list[Chain]:
        return [self.chains[c] for c in self.instance_chains]
