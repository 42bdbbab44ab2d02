"""`Chain`: the immutable model of one robot as flat arrays, built from URDF or from a USD articulation.

Its evaluation methods delegate: forward kinematics to `forward` (a kernel generated for the chain),
Jacobians to `batch`, inverse kinematics to `ik`. Those modules take the chain as an argument and
never import this one, so the package has no import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import warp as wp

from twin.core.errors import KinematicsError
from twin.kinematics.arrays import ChainArrays
from twin.kinematics.batch import KinematicsBatch
from twin.kinematics.device import default_device
from twin.kinematics.forward import ChainForward
from twin.kinematics.ik import IkResult, solve_ik
from twin.kinematics.joints import TYPE_CODES
from twin.kinematics.urdf import RobotDescription, load_urdf


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
    # per device, made on first use: the frozen model's uploads and evaluators are built once, not per call
    _arrays: dict[str, ChainArrays] = field(default_factory=dict, init=False, repr=False)
    _evaluators: dict[str, ChainForward] = field(default_factory=dict, init=False, repr=False)

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
        """Read a UsdPhysics articulation (docs/robots.md); link poses come out in the prim's frame, in metres."""
        from twin.kinematics.usd import read_robot

        robot = read_robot(stage, prim_path)
        return _build_chain(robot.name, robot.root, [_JointRecord(**joint) for joint in robot.joints],
                            robot.root_origin)

    # ----------------------------------------------------------------- evaluation
    def fk(self, q, *, base: np.ndarray | None = None, device: str | None = None) -> np.ndarray:
        """World transforms (B, n_links, 4, 4) of every link, in `link_names` order, for q of shape (B, n)."""
        q = self.check_q(q)
        return self.forward_evaluator(device).forward(q, None if base is None else np.asarray(base, np.float64))

    def forward_evaluator(self, device: str | None = None) -> ChainForward:
        """The batched FK of this robot, with a kernel specialised to it (twin/kinematics/forward.py)."""
        device = device or default_device()
        if device not in self._evaluators:
            self._evaluators[device] = ChainForward(self, device)
        return self._evaluators[device]

    def device_arrays(self, device: str) -> ChainArrays:
        """This chain's model arrays on `device`, uploaded on first use and shared by every later IK call."""
        if device not in self._arrays:
            self._arrays[device] = ChainArrays(self, device)
        return self._arrays[device]

    def jacobian(self, q, link: str, *, device: str | None = None) -> np.ndarray:
        """Geometric Jacobians (B, 6, n_joints) of `link`: linear rows first, world-aligned axes at the link origin.

        Mimic joints add their multiplier times their motion to their leader's column.
        """
        q = self.check_q(q)
        target = self.link_index(link)
        batch = KinematicsBatch([self], [0] * q.shape[0], device=device)
        batch.forward(q.reshape(-1))
        return batch.jacobian(target)

    def ik(self, targets, link: str, *, seeds: int | np.ndarray = 8, **options: Any) -> IkResult:
        """Joint solutions reaching (B, 4, 4) targets (in the robot's root frame) with `link`.

        Returns `IkResult(q, success, position_error, rotation_error)`; see twin/kinematics/ik.py for options.
        """
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


def _topological_order(root: str, joints: Sequence[_JointRecord]) -> list[tuple[str, _JointRecord | None]]:
    """Links depth-first from the root, children in file order, each with the joint that moves it (None: root)."""
    children: dict[str, list[_JointRecord]] = {}
    for record in joints:
        children.setdefault(record.parent, []).append(record)
    order: list[tuple[str, _JointRecord | None]] = []
    stack: list[tuple[str, _JointRecord | None]] = [(root, None)]
    while stack:
        link, incoming = stack.pop()
        order.append((link, incoming))
        stack.extend(reversed([(j.child, j) for j in children.get(link, [])]))
    return order


def _build_chain(
    name: str, root: str, joints: Sequence[_JointRecord], root_origin: np.ndarray | None = None
) -> Chain:
    """The chain's arrays; `root_origin` places the root link in the robot's frame (identity: at its origin)."""
    order = _topological_order(root, joints)
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
    if root_origin is not None:
        origin[0] = root_origin
    for i, (_, joint) in enumerate(order):
        if joint is None:
            continue
        parent[i] = link_index[joint.parent]
        jtype[i] = TYPE_CODES[joint.type]
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
