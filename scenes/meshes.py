"""Authoring helpers: transforms, typed attributes and `UsdGeom.Mesh` prims from trimesh meshes.

Every builder authors geometry as plain triangle meshes (never `UsdGeom.Cube` and friends) so that
the GLB export, the viewer and any USD renderer see exactly the same triangles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import trimesh
from pxr import Sdf, Usd, UsdGeom, Vt

from twin.core.stage import numpy_to_usd

Color = tuple[float, float, float]

SAFETY_YELLOW: Color = (0.95, 0.72, 0.05)
BELT_GREY: Color = (0.22, 0.23, 0.24)
STEEL: Color = (0.55, 0.57, 0.6)
DARK_GREY: Color = (0.15, 0.15, 0.16)

_ATTRIBUTE_TYPES = {
    bool: Sdf.ValueTypeNames.Bool,
    int: Sdf.ValueTypeNames.Int,
    float: Sdf.ValueTypeNames.Double,
    str: Sdf.ValueTypeNames.String,
}


def pose(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    """4x4 transform for a placement on the floor: a translation and a rotation about Z."""
    matrix = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    matrix[:2, :2] = [[c, -s], [s, c]]
    matrix[:3, 3] = (x, y, z)
    return matrix


def as_matrix(placement: np.ndarray | Sequence[float]) -> np.ndarray:
    """Accept a 4x4 matrix or an (x, y, yaw) floor placement."""
    array = np.asarray(placement, np.float64)
    if array.shape == (4, 4):
        return array
    if array.shape == (3,):
        return pose(array[0], array[1], 0.0, array[2])
    raise ValueError(f"expected a 4x4 matrix or (x, y, yaw), got shape {array.shape}")


def set_transform(prim: Usd.Prim, matrix: np.ndarray) -> None:
    """A single `xformOp:transform`: the op the live layer overrides at runtime."""
    xformable = UsdGeom.Xformable(prim)
    xformable.ClearXformOpOrder()
    xformable.AddTransformOp().Set(numpy_to_usd(matrix))


def set_attributes(prim: Usd.Prim, values: dict[str, object]) -> None:
    """Author custom attributes, typed from the Python value (lists of str become string[])."""
    for name, value in values.items():
        if isinstance(value, list | tuple):
            prim.CreateAttribute(name, Sdf.ValueTypeNames.StringArray).Set(Vt.StringArray(list(value)))
        else:
            prim.CreateAttribute(name, _ATTRIBUTE_TYPES[type(value)]).Set(value)


def define_xform(
    stage: Usd.Stage, path: str, transform: np.ndarray | None = None, **attributes: object
) -> Usd.Prim:
    """An Xform with an optional transform and `twin:` attributes given as keyword arguments."""
    prim = UsdGeom.Xform.Define(stage, path).GetPrim()
    if transform is not None:
        set_transform(prim, transform)
    set_attributes(prim, {f"twin:{key}": value for key, value in attributes.items()})
    return prim


def add_mesh(
    stage: Usd.Stage,
    path: str,
    mesh: trimesh.Trimesh,
    color: Color | np.ndarray,
    transform: np.ndarray | None = None,
) -> UsdGeom.Mesh:
    """Author a triangle mesh; `color` is one RGB or one RGB per vertex.

    No normals: every consumer derives them from the triangles, and vertices are already split
    where an edge must look sharp (see `box` and `cylinder`), so they would only double the file.
    """
    usd_mesh = UsdGeom.Mesh.Define(stage, path)
    vertices = np.ascontiguousarray(mesh.vertices, np.float32)
    usd_mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(vertices))
    usd_mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3, np.int32)))
    indices = np.ascontiguousarray(mesh.faces, np.int32).ravel()
    usd_mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(indices))
    usd_mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    if len(vertices):
        usd_mesh.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(np.stack([vertices.min(0), vertices.max(0)])))
    colors = np.asarray(color, np.float32)
    primvar = usd_mesh.CreateDisplayColorPrimvar(
        UsdGeom.Tokens.vertex if colors.ndim == 2 else UsdGeom.Tokens.constant
    )
    primvar.Set(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(colors.reshape(-1, 3))))
    if transform is not None:
        set_transform(usd_mesh.GetPrim(), transform)
    return usd_mesh


def box(size: Sequence[float], center: Sequence[float] = (0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """An axis-aligned box, 12 triangles, flat shaded."""
    mesh = trimesh.creation.box(extents=size, transform=pose(*center))
    mesh.unmerge_vertices()
    return mesh


def cylinder(
    radius: float,
    height: float,
    center: Sequence[float] = (0.0, 0.0, 0.0),
    axis: str = "z",
    sections: int = 16,
) -> trimesh.Trimesh:
    """A capped cylinder along a principal axis, with smooth sides and flat caps."""
    transform = pose(*center)
    if axis == "x":
        transform[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]
    elif axis == "y":
        transform[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]
    return trimesh.creation.cylinder(radius, height, sections=sections, transform=transform).smooth_shaded


def merge(meshes: Iterable[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Several parts of one colour in one prim: fewer prims, same triangles."""
    return trimesh.util.concatenate(list(meshes))


def add_boxes(
    stage: Usd.Stage,
    path: str,
    boxes: Iterable[tuple[Sequence[float], Sequence[float]]],
    color: Color,
) -> UsdGeom.Mesh:
    """One mesh prim made of (size, center) boxes of one colour."""
    return add_mesh(stage, path, merge(box(size, center) for size, center in boxes), color)
