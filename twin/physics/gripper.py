"""Grippers on robot tool links, read from USD, and which part a grip would take (docs/physics.md).

A gripper is declared on a robot link by custom attributes (`twin.scenes.robot.add_gripper` authors them with
their collision boxes): `twin:gripper:type` ("suction" or "parallel"), `twin:gripper:suctionRadius` and
`twin:gripper:stroke` (metres; the pad's radius, the jaws' opening) and `twin:gripper:reach` (metres: how far
the part's surface may be from the grip face). The grip face is the link's origin, facing its +Z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pxr import Usd

from twin.core.errors import LayoutError

GRIPPER_TYPES = ("suction", "parallel")
DEFAULT_REACH = 0.01  # metres


@dataclass(frozen=True)
class Gripper:
    path: str  # the tool link's prim
    gripper_type: str
    suction_radius: float
    stroke: float
    reach: float


@dataclass(frozen=True)
class GripResult:
    """What a grip did: the part taken, or a fault saying why none was (the program carries on without one)."""

    robot: str
    part: int | None
    fault: str | None = None


def read_gripper(prim: Usd.Prim, where: str) -> Gripper | None:
    """The gripper declared on link `prim`, None when it has none; bad attributes are a LayoutError naming it."""
    kind = prim.GetAttribute("twin:gripper:type")
    if not kind or not kind.HasAuthoredValue():
        return None
    gripper_type = kind.Get()
    if gripper_type not in GRIPPER_TYPES:
        raise LayoutError(where, f"{prim.GetPath()}: twin:gripper:type {gripper_type!r} is not one of {GRIPPER_TYPES}")

    def length(name: str, default: float = 0.0) -> float:
        attribute = prim.GetAttribute(f"twin:gripper:{name}")
        value = attribute.Get() if attribute and attribute.HasAuthoredValue() else default
        if not isinstance(value, int | float) or not np.isfinite(value) or value < 0.0:
            raise LayoutError(where, f"{prim.GetPath()}: twin:gripper:{name} must be a length >= 0 m, got {value!r}")
        return float(value)

    gripper = Gripper(str(prim.GetPath()), gripper_type, length("suctionRadius"), length("stroke"),
                      length("reach", DEFAULT_REACH))
    needed = "suctionRadius" if gripper_type == "suction" else "stroke"
    if gripper.reach <= 0.0 or length(needed) <= 0.0:
        raise LayoutError(where, f"{prim.GetPath()}: a {gripper_type} gripper needs positive twin:gripper:{needed} "
                                 "and twin:gripper:reach")
    return gripper


def part_in_reach(gripper: Gripper, tool: np.ndarray, poses: np.ndarray, part_size: float) -> int | None:
    """Index into `poses` ((n, 7) x, y, z, qx, qy, qz, qw) of the part a grip at tool pose `tool` (4x4) takes.

    The grip face (the tool's origin) must lie within `reach` of the part's box. A suction pad must sit
    on the part: the pad's axis within half the part less the pad's radius of the part's centre. Parallel jaws
    must close on it: its centre between the open jaws, its width across them no more than the stroke.
    Of several parts the nearest is taken.
    """
    if not len(poses):
        return None
    half = part_size / 2
    rotations = _rotations(poses[:, 3:])  # (n, 3, 3) part to world
    offset = tool[:3, 3] - poses[:, :3]
    in_part = np.einsum("nji,nj->ni", rotations, offset)  # the grip face in each part's frame
    distance = np.linalg.norm(np.maximum(np.abs(in_part) - half, 0.0), axis=1)
    centre_in_tool = (poses[:, :3] - tool[:3, 3]) @ tool[:3, :3]  # each part's centre in the tool's frame
    if gripper.gripper_type == "suction":
        fits = np.linalg.norm(centre_in_tool[:, :2], axis=1) <= half - gripper.suction_radius + gripper.reach
    else:
        jaw_axis = tool[:3, 1]
        width = 2 * half * np.abs(np.einsum("nij,i->nj", rotations, jaw_axis)).sum(axis=1)  # extent across jaws
        fits = (width <= gripper.stroke) & (np.abs(centre_in_tool[:, 1]) + width / 2 <= gripper.stroke / 2) & \
               (np.abs(centre_in_tool[:, 0]) <= half)
    candidates = np.flatnonzero((distance <= gripper.reach) & fits)
    if not len(candidates):
        return None
    return int(candidates[np.argmin(distance[candidates])])


def _rotations(quaternions: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotation matrices of (n, 4) quaternions x, y, z, w."""
    x, y, z, w = (quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=1),
    ], axis=1)
