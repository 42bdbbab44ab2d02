"""Robots read back from USD: any UsdPhysics articulation, the twin's own layout included.

An articulation is the rigid bodies under the prim with ArticulationRootAPI, grown through the joints
that connect them (joints may sit anywhere on the stage), less joints marked excludeFromArticulation
or disabled. A joint's frame is `localPos0/localRot0` in body0 and `localPos1/localRot1` in body1, so
the child body sits at `parent * J0 * motion(q) * inverse(J1)`; a revolute joint whose pivot is off
the child's origin gets an extra link at the pivot (named `<child>@<joint>`, with no prim). Link poses
come out in the robot prim's frame, in metres (`metersPerUnit`); the root link's pose is read from the
stage (or from its fixed joint to the world), never assumed. Names come from `twin:name` when authored,
so the twin's own robots keep their URDF spelling. Spherical, D6 and other joints are refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pxr import Usd, UsdGeom, UsdPhysics

from twin.core.errors import LayoutError
from twin.core.transforms import pose_to_matrix

_AXES = {"X": np.array([1.0, 0.0, 0.0]), "Y": np.array([0.0, 1.0, 0.0]), "Z": np.array([0.0, 0.0, 1.0])}
_ON_AXIS = 1e-9  # metres: a revolute pivot closer than this to the child's axis line needs no pivot link


@dataclass(frozen=True)
class Articulation:
    """What `Chain.from_usd` needs: joints as dicts for `Chain`, the root link and where it sits."""

    name: str
    root: str
    root_origin: np.ndarray  # (4, 4) the root link in the robot prim's frame, metres
    joints: list[dict]
    links: dict[str, str]  # link name -> prim path, for the links that are prims
    joint_paths: dict[str, str]  # joint name -> prim path


def _error(stage: Usd.Stage, message: str) -> LayoutError:
    layer = stage.GetRootLayer()
    return LayoutError(layer.realPath or layer.identifier, message)


def _robot_prim(stage: Usd.Stage, prim_path: str) -> Usd.Prim:
    prim = stage.GetPrimAtPath(prim_path)
    if not prim:
        raise _error(stage, f"no prim {prim_path}")
    if not prim.HasAPI(UsdPhysics.ArticulationRootAPI) and prim.GetAttribute("twin:kind").Get() != "robot":
        raise _error(stage, f"{prim_path} is not a robot (no ArticulationRootAPI, twin:kind is not 'robot')")
    return prim


def _name(prim: Usd.Prim) -> str:
    attribute = prim.GetAttribute("twin:name")
    return str(attribute.Get()) if attribute and attribute.HasAuthoredValue() else prim.GetName()


def _unique_names(prims: Iterable[Usd.Prim], robot: Usd.Prim) -> dict[str, str]:
    """Prim path -> name: `twin:name` or the prim name, or the path below the robot where names repeat."""
    prims = list(prims)
    counts: dict[str, int] = {}
    for prim in prims:
        counts[_name(prim)] = counts.get(_name(prim), 0) + 1
    names = {}
    for prim in prims:
        path = prim.GetPath()
        name = _name(prim)
        if counts[name] > 1:
            name = str(path.MakeRelativePath(robot.GetPath())) if path.HasPrefix(robot.GetPath()) else str(path)
        names[str(path)] = name
    return names


def _rotation(quat) -> np.ndarray:
    imaginary = quat.GetImaginary()
    pose = np.array([0.0, 0.0, 0.0, imaginary[0], imaginary[1], imaginary[2], quat.GetReal()])
    pose[3:] /= np.linalg.norm(pose[3:])
    return pose_to_matrix(pose)[:3, :3]


def _float(prim: Usd.Prim, name: str, default: float) -> float:
    attribute = prim.GetAttribute(name)
    value = attribute.Get() if attribute else None
    return default if value is None else float(value)


def _transform(rotation: np.ndarray, translation) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = translation
    return matrix


def _inverse(matrix: np.ndarray) -> np.ndarray:
    return _transform(matrix[:3, :3].T, -matrix[:3, :3].T @ matrix[:3, 3])


def _world_pose(prim: Usd.Prim, meters: float) -> tuple[np.ndarray, np.ndarray]:
    """(rigid world pose in metres, per-axis scale) of a prim; a prim that is not Xformable sits at the origin."""
    if not prim or not prim.IsA(UsdGeom.Xformable):
        return np.eye(4), np.ones(3)
    matrix = np.array(UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(Usd.TimeCode.Default())).T
    scale = np.linalg.norm(matrix[:3, :3], axis=0)
    return _transform(matrix[:3, :3] / scale, matrix[:3, 3] * meters), scale


def _bodies_and_joints(stage: Usd.Stage, robot: Usd.Prim) -> tuple[list[Usd.Prim], list[Usd.Prim]]:
    """The rigid bodies under `robot` and the joints that touch them, grown until no joint adds a body."""
    bodies = {str(p.GetPath()): p for p in Usd.PrimRange(robot) if p.HasAPI(UsdPhysics.RigidBodyAPI)}
    candidates = []
    for prim in stage.Traverse():
        if not prim.IsA(UsdPhysics.Joint):
            continue
        joint = UsdPhysics.Joint(prim)
        if joint.GetExcludeFromArticulationAttr().Get() or joint.GetJointEnabledAttr().Get() is False:
            continue
        ends = [str(t) for rel in (joint.GetBody0Rel(), joint.GetBody1Rel()) for t in rel.GetTargets()]
        candidates.append((prim, ends))
    joints: dict[str, Usd.Prim] = {}
    grown = True
    while grown:
        grown = False
        for prim, ends in candidates:
            path = str(prim.GetPath())
            if path in joints or not (prim.GetPath().HasPrefix(robot.GetPath()) or any(e in bodies for e in ends)):
                continue
            joints[path] = prim
            grown = True
            for end in ends:
                body = stage.GetPrimAtPath(end)
                if end not in bodies and body and body.HasAPI(UsdPhysics.RigidBodyAPI):
                    bodies[end] = body
    return list(bodies.values()), list(joints.values())


def _joint_kind(stage: Usd.Stage, prim: Usd.Prim) -> tuple[str, str, float, float]:
    """(type, axis token, lower, upper in USD units) of a joint the chain supports; others are refused."""
    if prim.IsA(UsdPhysics.FixedJoint):
        return "fixed", "X", -math.inf, math.inf
    if prim.IsA(UsdPhysics.RevoluteJoint) or prim.IsA(UsdPhysics.PrismaticJoint):
        revolute = prim.IsA(UsdPhysics.RevoluteJoint)
        typed = UsdPhysics.RevoluteJoint(prim) if revolute else UsdPhysics.PrismaticJoint(prim)
        lower, upper = typed.GetLowerLimitAttr().Get(), typed.GetUpperLimitAttr().Get()
        return ("revolute" if revolute else "prismatic", typed.GetAxisAttr().Get(),
                -math.inf if lower is None else float(lower), math.inf if upper is None else float(upper))
    why = {"PhysicsSphericalJoint": "a spherical joint has three rotational degrees of freedom",
           "PhysicsDistanceJoint": "a distance joint is a constraint, not a chain joint",
           "PhysicsJoint": "a generic (D6) joint has per-axis limits the chain cannot express"}
    reason = why.get(prim.GetTypeName(), "only revolute, prismatic and fixed joints make a chain")
    raise _error(stage, f"{prim.GetPath()}: unsupported joint type {prim.GetTypeName()!r}: {reason}; "
                        "mark it physics:excludeFromArticulation to leave it out")


def read_robot(stage: Usd.Stage, prim_path: str) -> Articulation:
    """The articulation at `prim_path`, joints in stage order (the twin's own robots store them in URDF order)."""
    robot = _robot_prim(stage, prim_path)
    meters = UsdGeom.GetStageMetersPerUnit(stage)
    bodies, joint_prims = _bodies_and_joints(stage, robot)
    if not bodies:
        raise _error(stage, f"{prim_path}: no rigid bodies (RigidBodyAPI) under it or joined to it")
    link_names = _unique_names(bodies, robot)
    joint_names = _unique_names(joint_prims, robot)
    frame = _inverse(_world_pose(robot, meters)[0])
    poses = {path: _world_pose(stage.GetPrimAtPath(path), meters) for path in link_names}
    joints: list[dict] = []
    world_fixed: dict[str, np.ndarray] = {}  # root link -> its world pose from its fixed joint
    static: dict[str, np.ndarray] = {}  # anchor link (the world or a static prim) -> its world pose
    moved_by: dict[str, dict[str | None, str]] = {}  # child body -> parent body -> joint prim path
    bodies_only = dict(link_names)
    for prim in joint_prims:
        joint = UsdPhysics.Joint(prim)
        where = str(prim.GetPath())
        kind, axis_token, lower, upper = _joint_kind(stage, prim)
        ends: list[str | None] = []
        for rel in (joint.GetBody0Rel(), joint.GetBody1Rel()):
            targets = [str(t) for t in rel.GetTargets()]
            if len(targets) > 1:
                raise _error(stage, f"{where}: {rel.GetName()} must target one prim or none (the world), "
                                    f"got {targets}")
            ends.append(targets[0] if targets else None)
        if not any(end in link_names for end in ends):
            raise _error(stage, f"{where}: neither end is a rigid body of {prim_path}, got {ends}")
        anchors = [end not in link_names for end in ends]  # the world, or a static prim: it does not move
        for end in ends:
            if end is not None and end not in poses:
                poses[end] = _world_pose(stage.GetPrimAtPath(end), meters)
        parent, child = ends
        scale0 = poses[parent][1] if parent else np.ones(3)
        scale1 = poses[child][1] if child else np.ones(3)
        joint0 = _transform(_rotation(joint.GetLocalRot0Attr().Get()),
                            np.array(joint.GetLocalPos0Attr().Get()) * scale0 * meters)
        joint1 = _transform(_rotation(joint.GetLocalRot1Attr().Get()),
                            np.array(joint.GetLocalPos1Attr().Get()) * scale1 * meters)
        if anchors[1]:  # body1 is the world: body0 sits at world * joint1 * inverse(joint0)
            if kind != "fixed":
                raise _error(stage, f"{where}: physics:body1 targets {child or 'nothing (the world)'}, not a rigid "
                                    f"body of {prim_path}; a {kind} joint must move body1")
            world_fixed[link_names[str(parent)]] = (poses[child][0] if child else np.eye(4)) @ joint1 @ _inverse(joint0)
            continue
        child = str(child)  # body1 is a link of this robot (checked above)
        if parent in moved_by.get(child, ()):
            raise _error(stage, f"{where}: {moved_by[child][parent]!r} already joins {parent} to {child} "
                                "(a multi-axis joint, which the chain cannot express)")
        moved_by.setdefault(child, {})[parent] = where
        if anchors[0]:
            anchor = poses[parent][0] if parent else np.eye(4)
            if kind == "fixed":
                world_fixed[link_names[child]] = anchor @ joint0 @ _inverse(joint1)
                continue
            parent = parent or ""
            link_names[parent] = _name(stage.GetPrimAtPath(parent)) if parent else "world"
            static[link_names[parent]] = anchor
        origin = joint0 @ _inverse(joint1)
        axis = joint1[:3, :3] @ _AXES[axis_token]
        if kind == "prismatic":
            lower, upper = lower * meters, upper * meters
        elif kind == "revolute":
            if math.isinf(lower) and math.isinf(upper):
                kind = "continuous"
            lower, upper = math.radians(lower), math.radians(upper)
        mimic = prim.GetAttribute("twin:mimicJoint")
        record = dict(
            name=joint_names[where], type=kind, parent=link_names[str(parent)], child=link_names[child], origin=origin,
            axis=axis, lower=lower, upper=upper, velocity=_float(prim, "twin:velocityLimit", math.inf),
            mimic_joint=str(mimic.Get()) if mimic and mimic.HasAuthoredValue() else None,
            mimic_multiplier=_float(prim, "twin:mimicMultiplier", 1.0),
            mimic_offset=_float(prim, "twin:mimicOffset", 0.0),
        )
        pivot = joint1[:3, 3] - (joint1[:3, 3] @ axis) * axis  # the pivot's offset from the child's axis line
        if kind in ("revolute", "continuous") and np.linalg.norm(pivot) > _ON_AXIS:
            # child = origin * Trans(p1) * Rot(axis, q) * Trans(-p1): the joint moves a link at the pivot
            pivot_link = f"{record['child']}@{record['name']}"
            joints.append(record | dict(child=pivot_link, origin=origin @ _transform(np.eye(3), joint1[:3, 3])))
            joints.append(dict(name=f"{record['name']}@pivot", type="fixed", parent=pivot_link,
                               child=record["child"], origin=_transform(np.eye(3), -joint1[:3, 3]), axis=axis,
                               lower=-math.inf, upper=math.inf, velocity=math.inf))
        else:
            joints.append(record)
    root = _root(stage, prim_path, list(link_names.values()), joints, list(world_fixed))
    pose = world_fixed.get(root, static.get(root))
    if pose is None:
        pose = poses[next(path for path, name in link_names.items() if name == root)][0]
    links = {name: path for path, name in bodies_only.items()}
    return Articulation(_name(robot), root, frame @ pose, joints, links,
                        {name: path for path, name in joint_names.items()})


def _root(stage: Usd.Stage, prim_path: str, links: list[str], joints: list[dict], fixed_to_world: list[str]) -> str:
    """The one link no joint moves; a tree needs exactly one, and each link at most one parent joint."""
    seen: dict[str, str] = {}
    for joint in joints:
        if joint["child"] in seen:
            raise _error(stage, f"{prim_path}: link {joint['child']!r} is moved by two joints, "
                                f"{seen[joint['child']]!r} and {joint['name']!r} (a closed loop: mark one "
                                "physics:excludeFromArticulation)")
        seen[joint["child"]] = joint["name"]
    roots = [name for name in links if name not in seen]
    if len(roots) != 1:
        raise _error(stage, f"{prim_path}: expected one root link (a rigid body no joint moves), found {roots}"
                            f"{' fixed to the world' if fixed_to_world else ''} among {len(links)} rigid bodies")
    if fixed_to_world and fixed_to_world != roots:
        raise _error(stage, f"{prim_path}: links {fixed_to_world} are fixed to the world, but the root is {roots[0]!r}")
    return roots[0]


def link_prim_paths(stage: Usd.Stage, prim_path: str) -> dict[str, str]:
    """Each link's name -> its prim path, in stage order (pivot links, which have no prim, are left out)."""
    return read_robot(stage, prim_path).links


def read_articulation(stage: Usd.Stage, prim_path: str) -> tuple[str, str, list[dict]]:
    """(robot name, root link name, joints as dicts for `Chain`); `read_robot` also gives the root's pose."""
    articulation = read_robot(stage, prim_path)
    return articulation.name, articulation.root, articulation.joints
