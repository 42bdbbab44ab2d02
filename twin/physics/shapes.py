"""The layout's collision geometry read from USD, before any engine sees it (docs/physics.md).

Every `UsdPhysics.CollisionAPI` prim outside a rigid body (robots are articulations of rigid bodies and
are left to their own code) must be a `UsdGeom.Cube` under a rigid transform with a non-uniform scale:
an oriented box. `twin:physics:role` makes a box a belt (carrying along its conveyor's +X at
`twin:speed`) or a stopper; anything else is static. A belt outside the line's flow (a sink's takeaway belt)
sits under a prim that authors `twin:speed` without being a conveyor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pxr import Usd, UsdGeom, UsdPhysics

from twin.core.errors import LayoutError

ORTHOGONALITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Box:
    """An oriented box in the world: `rotation` (3x3) and `centre` place its frame, `half_extents` size it."""

    path: str
    role: str  # static, belt or stopper
    centre: np.ndarray
    rotation: np.ndarray
    half_extents: np.ndarray
    owner: str = ""  # belts: the conveyor's path; stoppers: the stopper's path
    direction: np.ndarray | None = None  # belts: the carrying direction in the box's own frame
    speed: float = 0.0  # belts: the authored nominal speed (m/s)


@dataclass(frozen=True)
class LayoutShapes:
    static: tuple[Box, ...]
    belts: tuple[Box, ...]
    stoppers: tuple[Box, ...]
    part_size: float | None  # `twin:partLength` of the conveyors, when authored


def read_shapes(stage: Usd.Stage) -> LayoutShapes:
    """Collect the collision boxes of `stage`; a shape the engine cannot take is a LayoutError naming it."""
    where = stage.GetRootLayer().identifier
    up, meters = UsdGeom.GetStageUpAxis(stage), UsdGeom.GetStageMetersPerUnit(stage)
    if up != UsdGeom.Tokens.z or abs(meters - 1.0) > 1e-9:
        # the model's gravity is -Z in m/s^2, its sizes, masses and speeds in metres: a Y-up or centimetre layout
        # would fall sideways or a hundred times too slowly, so it is refused rather than run wrong
        raise LayoutError(where, f"physics takes a Z-up layout in metres (upAxis Z, metersPerUnit 1); this stage "
                                 f"is {up} up with {meters:g} m per unit")
    cache = UsdGeom.XformCache()
    static, belts, stoppers = [], [], []
    part_sizes = set()
    iterator = iter(Usd.PrimRange(stage.GetPseudoRoot()))
    for prim in iterator:
        if prim.HasAPI(UsdPhysics.RigidBodyAPI):
            iterator.PruneChildren()  # robots and other bodies: not static geometry
            continue
        length = prim.GetAttribute("twin:partLength")
        if prim.GetAttribute("twin:kind").Get() == "conveyor" and length.HasAuthoredValue():
            part_sizes.add(float(length.Get()))
        if not prim.HasAPI(UsdPhysics.CollisionAPI):
            continue
        if not prim.IsA(UsdGeom.Cube):
            raise LayoutError(where, f"{prim.GetPath()}: collision shape {prim.GetTypeName() or 'untyped'} is not "
                                     "supported; physics takes UsdGeom.Cube collision boxes")
        box = _box(prim, cache, where)
        if box.role == "belt":
            belts.append(_belt(prim, box, cache, where))
        elif box.role == "stopper":
            stoppers.append(Box(**{**box.__dict__, "owner": str(prim.GetParent().GetParent().GetPath())}))
        else:
            static.append(box)
    if len(part_sizes) > 1:
        raise LayoutError(where, f"conveyors disagree on twin:partLength: {sorted(part_sizes)}")
    return LayoutShapes(tuple(static), tuple(belts), tuple(stoppers), part_sizes.pop() if part_sizes else None)


def _box(prim: Usd.Prim, cache: UsdGeom.XformCache, where: str) -> Box:
    matrix = np.array(cache.GetLocalToWorldTransform(prim), np.float64).T  # USD matrices are row-vector
    axes = matrix[:3, :3]
    scale = np.linalg.norm(axes, axis=0)
    size = float(UsdGeom.Cube(prim).GetSizeAttr().Get())
    if size <= 0.0 or np.any(scale <= 0.0):
        raise LayoutError(where, f"{prim.GetPath()}: collision box has zero or negative size")
    rotation = axes / scale
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=ORTHOGONALITY_TOLERANCE) or np.linalg.det(rotation) < 0:
        raise LayoutError(where, f"{prim.GetPath()}: collision box is sheared or mirrored; physics takes "
                                 "rotations with a per-axis scale")
    role_attribute = prim.GetAttribute("twin:physics:role")
    role = role_attribute.Get() if role_attribute.HasAuthoredValue() else "static"
    if role not in ("static", "belt", "stopper"):
        raise LayoutError(where, f"{prim.GetPath()}: unknown twin:physics:role {role!r}; "
                                 "expected static, belt or stopper")
    return Box(str(prim.GetPath()), role, matrix[:3, 3].copy(), rotation, scale * size / 2)


def _belt(prim: Usd.Prim, box: Box, cache: UsdGeom.XformCache, where: str) -> Box:
    conveyor = prim.GetParent()
    while conveyor and conveyor.GetAttribute("twin:kind").Get() != "conveyor" and \
            not conveyor.GetAttribute("twin:speed").HasAuthoredValue():
        conveyor = conveyor.GetParent()
    if not conveyor:
        raise LayoutError(where, f"{prim.GetPath()}: a belt surface must sit under a prim with twin:kind conveyor "
                                 "or with twin:speed")
    conveyor_x = np.array(cache.GetLocalToWorldTransform(conveyor), np.float64)[0, :3]
    direction = box.rotation.T @ (conveyor_x / np.linalg.norm(conveyor_x))
    speed = conveyor.GetAttribute("twin:speed").Get() or 0.0
    return Box(**{**box.__dict__, "owner": str(conveyor.GetPath()), "direction": direction, "speed": float(speed)})


def end_stop(belt: Box, name: str) -> Box:
    """A bar 3 cm thick and 6 cm tall across `belt`'s end, named `<belt owner>/<name>`: the stopper a layout's
    belt ends do not author (fixed in the running twin, raised and lowered in commissioning)."""
    along = int(np.argmax(np.abs(belt.direction)))
    up = int(np.argmax(np.abs(belt.rotation.T @ np.array([0.0, 0.0, 1.0]))))
    half = belt.half_extents.copy()
    offset = np.zeros(3)
    offset[along] = np.sign(belt.direction[along]) * (half[along] + 0.015)
    offset[up] = half[up] + 0.035
    half[along], half[up] = 0.015, 0.03
    path = f"{belt.owner}/{name}"
    return Box(path, "stopper", belt.centre + belt.rotation @ offset, belt.rotation, half, owner=path)
