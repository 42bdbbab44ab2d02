"""Robots read back from USD: the UsdPhysics articulation that `twin.scenes.robot` authors.

This is the exact inverse of the authoring (docs/architecture.md): a joint frame in its parent
link is `(localPos0, localRot0 * inverse(localRot1))`, and the joint axis is the axis token turned
by `localRot1`. Names come from `twin:name`, so joints and links keep their URDF spelling even
where USD needed a different prim name.
"""

from __future__ import annotations

import math

import numpy as np
from pxr import Usd, UsdPhysics

from twin.core.errors import LayoutError
from twin.core.transforms import pose_to_matrix

_AXES = {"X": np.array([1.0, 0.0, 0.0]), "Y": np.array([0.0, 1.0, 0.0]), "Z": np.array([0.0, 0.0, 1.0])}


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


def link_prim_paths(stage: Usd.Stage, prim_path: str) -> dict[str, str]:
    """Each link's original (URDF) name -> its prim path, in stage order."""
    robot = _robot_prim(stage, prim_path)
    return {
        _name(child): str(child.GetPath())
        for child in robot.GetChildren()
        if child.GetAttribute("twin:kind").Get() == "link"
    }


def _rotation(quat) -> np.ndarray:
    imaginary = quat.GetImaginary()
    pose = np.array([0.0, 0.0, 0.0, imaginary[0], imaginary[1], imaginary[2], quat.GetReal()])
    pose[3:] /= np.linalg.norm(pose[3:])
    return pose_to_matrix(pose)[:3, :3]


def _float(prim: Usd.Prim, name: str, default: float) -> float:
    attribute = prim.GetAttribute(name)
    value = attribute.Get() if attribute else None
    return default if value is None else float(value)


def read_articulation(stage: Usd.Stage, prim_path: str) -> tuple[str, str, list[dict]]:
    """(robot name, root link name, joints as dicts for `Chain`), from the prims under `prim_path`.

    Joints come in stage order, which is URDF order, so the input joint order survives the trip.
    """
    robot = _robot_prim(stage, prim_path)
    links = link_prim_paths(stage, prim_path)
    link_names = {path: name for name, path in links.items()}
    scope = robot.GetChild("joints")
    joints = []
    for prim in scope.GetChildren() if scope else []:
        joint = UsdPhysics.Joint(prim)
        where = str(prim.GetPath())
        if prim.IsA(UsdPhysics.FixedJoint):
            kind, axis_token = "fixed", "X"
        elif prim.IsA(UsdPhysics.RevoluteJoint) or prim.IsA(UsdPhysics.PrismaticJoint):
            revolute = prim.IsA(UsdPhysics.RevoluteJoint)
            typed = UsdPhysics.RevoluteJoint(prim) if revolute else UsdPhysics.PrismaticJoint(prim)
            kind = "revolute" if revolute else "prismatic"
            axis_token = typed.GetAxisAttr().Get()
            lower = float(typed.GetLowerLimitAttr().Get())
            upper = float(typed.GetUpperLimitAttr().Get())
        else:
            raise _error(stage, f"{where}: unsupported joint type {prim.GetTypeName()!r}")
        ends = []
        for rel in (joint.GetBody0Rel(), joint.GetBody1Rel()):
            targets = rel.GetTargets()
            if len(targets) != 1 or str(targets[0]) not in link_names:
                raise _error(stage, f"{where}: {rel.GetName()} must target one link of {prim_path}, "
                                    f"got {[str(t) for t in targets]}")
            ends.append(link_names[str(targets[0])])
        position1 = np.array(joint.GetLocalPos1Attr().Get())
        if np.any(np.abs(position1) > 1e-9):
            raise _error(stage, f"{where}: localPos1 must be 0 (the joint frame is the child link's origin), "
                                f"got {tuple(position1)}")
        align = _rotation(joint.GetLocalRot1Attr().Get())
        origin = np.eye(4)
        origin[:3, :3] = _rotation(joint.GetLocalRot0Attr().Get()) @ align.T
        origin[:3, 3] = joint.GetLocalPos0Attr().Get()
        if kind == "fixed":
            lower, upper = -math.inf, math.inf
        elif kind == "revolute":
            if math.isinf(lower) and math.isinf(upper):
                kind = "continuous"
            lower, upper = math.radians(lower), math.radians(upper)
        mimic = prim.GetAttribute("twin:mimicJoint")
        joints.append(dict(
            name=_name(prim), type=kind, parent=ends[0], child=ends[1], origin=origin,
            axis=align @ _AXES[axis_token], lower=lower, upper=upper,
            velocity=_float(prim, "twin:velocityLimit", math.inf),
            mimic_joint=str(mimic.Get()) if mimic and mimic.HasAuthoredValue() else None,
            mimic_multiplier=_float(prim, "twin:mimicMultiplier", 1.0),
            mimic_offset=_float(prim, "twin:mimicOffset", 0.0),
        ))
    children = {joint["child"] for joint in joints}
    roots = [name for name in links if name not in children]
    if len(roots) != 1:
        raise _error(stage, f"{prim_path}: expected one root link, found {roots}")
    return _name(robot), roots[0], joints
