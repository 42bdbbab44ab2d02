"""Collision geometry for physics (docs/physics.md): invisible UsdGeom.Cube prims with UsdPhysics.CollisionAPI.

The visible meshes merge many boxes into one prim, so a physics engine cannot use them as shapes.
Each element therefore also carries a `Collision` Xform of plain boxes, hidden from renderers and the
GLB export. `twin:physics:role` says what a box does: `static` (the default), `belt` (a surface that
carries parts along its parent conveyor's +X) or `stopper` (a bar that holds parts while raised).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics

PHYSICS_ROLES = ("static", "belt", "stopper")


def add_collision_boxes(
    stage: Usd.Stage,
    path: str,
    boxes: Iterable[tuple[str, Sequence[float], Sequence[float]]],
    *,
    role: str = "static",
) -> Usd.Prim:
    """Under `path` (an Xform, made if missing): one hidden Cube per (name, size, centre) in `path`'s frame."""
    if role not in PHYSICS_ROLES:
        raise ValueError(f"{path}: unknown physics role {role!r}; expected one of {PHYSICS_ROLES}")
    parent = stage.GetPrimAtPath(path)
    if not parent.IsValid():
        parent = UsdGeom.Xform.Define(stage, path).GetPrim()
    for name, size, centre in boxes:
        if min(size) <= 0.0:
            raise ValueError(f"{path}/{name}: collision box size must be positive, got {tuple(size)}")
        cube = UsdGeom.Cube.Define(stage, f"{path}/{name}")
        cube.CreateSizeAttr(1.0)
        cube.AddTranslateOp().Set(Gf.Vec3d(*map(float, centre)))
        cube.AddScaleOp().Set(Gf.Vec3f(*map(float, size)))
        cube.CreatePurposeAttr(UsdGeom.Tokens.guide)
        cube.CreateVisibilityAttr(UsdGeom.Tokens.invisible)
        UsdPhysics.CollisionAPI.Apply(cube.GetPrim())
        if role != "static":
            cube.GetPrim().CreateAttribute("twin:physics:role", Sdf.ValueTypeNames.String).Set(role)
    return parent
