"""Triangles of any UsdGeom gprim, ready for glTF: polygons fanned, primvars resolved, unit normals.

A Mesh of any face counts and the implicit shapes (Cube, Sphere, Cylinder, Cone, Capsule) become one
`Surface`: vertices with positions and unit normals (plus colours and texture coordinates when asked),
and triangle groups, one per `materialBind` GeomSubset and one for the faces in none. Zero-area
triangles are dropped (glTF validators flag them and they carry no normal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from pxr import Usd, UsdGeom

from twin.core.errors import LayoutError

SHAPE_SECTIONS = 32
_FACE_WISE = (UsdGeom.Tokens.uniform,)
_CORNER_WISE = (UsdGeom.Tokens.faceVarying,)


@dataclass
class Surface:
    """One gprim's triangles in its own frame; `groups` pairs triangles with their subset (None: the gprim)."""

    positions: np.ndarray  # (n, 3) float32
    normals: np.ndarray  # (n, 3) float32, unit length
    colors: np.ndarray | None  # (n, 3) float32, displayColor per vertex
    uvs: np.ndarray | None  # (n, 2) float32, glTF's convention (v down)
    groups: list[tuple[np.ndarray, UsdGeom.Subset | None]]  # (m, 3) vertex indices per triangle


def surface_of(prim: Usd.Prim, *, uv_primvar: str | None = None, vertex_colors: bool = False) -> Surface | None:
    """The prim's triangles, or None for a prim with no drawable faces (or one that is not a supported gprim)."""
    if prim.IsA(UsdGeom.Mesh):
        return _mesh_surface(UsdGeom.Mesh(prim), uv_primvar, vertex_colors)
    shape = _shape_mesh(prim)
    if shape is None:
        return None
    return _surface(prim, np.asarray(shape.vertices), np.full(len(shape.faces), 3), shape.faces.reshape(-1),
                    {}, flip=False, subsets=[])


def _shape_mesh(prim: Usd.Prim) -> trimesh.Trimesh | None:
    """An implicit UsdGeom shape as a triangle mesh, centred like USD's own, along its `axis`."""
    if prim.IsA(UsdGeom.Cube):
        box = trimesh.creation.box(extents=[UsdGeom.Cube(prim).GetSizeAttr().Get()] * 3)
        box.unmerge_vertices()  # a box's faces are flat: one normal per face
        return box
    if prim.IsA(UsdGeom.Sphere):
        return trimesh.creation.icosphere(subdivisions=3, radius=UsdGeom.Sphere(prim).GetRadiusAttr().Get())
    for schema, build in ((UsdGeom.Cylinder, _cylinder), (UsdGeom.Cone, _cone), (UsdGeom.Capsule, _capsule)):
        if prim.IsA(schema):
            shape = schema(prim)
            mesh = build(shape.GetRadiusAttr().Get(), shape.GetHeightAttr().Get())
            mesh.apply_transform(_Z_TO_AXIS[shape.GetAxisAttr().Get()])
            return mesh
    return None


def _cylinder(radius: float, height: float) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius, height, sections=SHAPE_SECTIONS)


def _cone(radius: float, height: float) -> trimesh.Trimesh:
    cone = trimesh.creation.cone(radius, height, sections=SHAPE_SECTIONS)
    cone.apply_translation((0.0, 0.0, -height / 2))  # USD centres the cone on its origin
    return cone


def _capsule(radius: float, height: float) -> trimesh.Trimesh:
    return trimesh.creation.capsule(height=height, radius=radius, count=[SHAPE_SECTIONS, SHAPE_SECTIONS // 2])


_Z_TO_AXIS = {
    "X": np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], float),
    "Y": np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float),
    "Z": np.eye(4),
}


def _mesh_surface(mesh: UsdGeom.Mesh, uv_primvar: str | None, vertex_colors: bool) -> Surface | None:
    prim = mesh.GetPrim()
    points = np.asarray(mesh.GetPointsAttr().Get() or [], np.float64).reshape(-1, 3)
    counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get() or [], np.int64)
    indices = np.asarray(mesh.GetFaceVertexIndicesAttr().Get() or [], np.int64)
    if len(points) == 0 or len(counts) == 0:
        return None
    if counts.min() < 0:
        raise _error(prim, f"{prim.GetPath()}: faceVertexCounts holds a negative count ({counts.min()})")
    where = f"{prim.GetPath()}"
    if counts.sum() != len(indices):
        raise _error(prim, f"{where}: faceVertexCounts add up to {counts.sum()}, but there are {len(indices)} "
                           "faceVertexIndices")
    if len(indices) and (indices.min() < 0 or indices.max() >= len(points)):
        raise _error(prim, f"{where}: faceVertexIndices reach point {indices.max()}, but there are {len(points)} "
                           "points")
    primvars: dict[str, tuple[np.ndarray, str]] = {}
    api = UsdGeom.PrimvarsAPI(prim)
    normals = api.GetPrimvar("normals")
    if normals and normals.HasAuthoredValue():
        primvars["normals"] = (np.asarray(normals.ComputeFlattened(), np.float64), normals.GetInterpolation())
    elif mesh.GetNormalsAttr().HasAuthoredValue():
        primvars["normals"] = (np.asarray(mesh.GetNormalsAttr().Get(), np.float64), mesh.GetNormalsInterpolation())
    if vertex_colors:
        color = mesh.GetDisplayColorPrimvar()
        if color and color.HasAuthoredValue() and color.GetInterpolation() != UsdGeom.Tokens.constant:
            primvars["colors"] = (np.asarray(color.ComputeFlattened(), np.float64), color.GetInterpolation())
    if uv_primvar:
        uvs = api.GetPrimvar(uv_primvar)
        if uvs and uvs.HasAuthoredValue():
            primvars["uvs"] = (np.asarray(uvs.ComputeFlattened(), np.float64), uvs.GetInterpolation())
    subsets = UsdGeom.Subset.GetGeomSubsets(mesh, UsdGeom.Tokens.face, "materialBind")
    flip = mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded
    return _surface(prim, points, counts, indices, primvars, flip=flip, subsets=subsets)


def _surface(prim: Usd.Prim, points: np.ndarray, counts: np.ndarray, indices: np.ndarray,
             primvars: dict[str, tuple[np.ndarray, str]], *, flip: bool,
             subsets: list[UsdGeom.Subset]) -> Surface | None:
    """Fan-triangulate; vertices are points, or face corners when a primvar varies per face or corner."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    fans = np.maximum(counts - 2, 0)
    face_of_triangle = np.repeat(np.arange(len(counts)), fans)
    step = np.arange(len(face_of_triangle)) - np.repeat(np.cumsum(fans) - fans, fans)
    first = starts[face_of_triangle]
    corners = np.stack([first, first + step + 1, first + step + 2], axis=1)  # indices into faceVertexIndices
    if flip:
        corners = corners[:, ::-1]
    face_of_corner = np.repeat(np.arange(len(counts)), counts)
    per_corner = any(interp in _FACE_WISE + _CORNER_WISE for _, interp in primvars.values())
    triangles = corners if per_corner else indices[corners]
    vertex_point = indices if per_corner else np.arange(len(points))

    attributes = {}
    for name, (values, interpolation) in primvars.items():
        resolved = _per_vertex(values, interpolation, vertex_point, face_of_corner if per_corner else None,
                               len(points), len(counts), len(indices))
        if resolved is None:
            continue  # a primvar whose length fits no interpolation is ignored, as renderers do
        attributes[name] = resolved
    positions = points[vertex_point]

    area = np.linalg.norm(np.cross(positions[triangles[:, 1]] - positions[triangles[:, 0]],
                                   positions[triangles[:, 2]] - positions[triangles[:, 0]]), axis=1)
    extent = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
    keep = area > max(extent, 1e-30) ** 2 * 1e-12
    triangles, face_of_triangle = triangles[keep], face_of_triangle[keep]
    if len(triangles) == 0:
        return None
    used, triangles = np.unique(triangles, return_inverse=True)
    triangles = triangles.reshape(-1, 3)
    positions = positions[used]
    attributes = {name: values[used] for name, values in attributes.items()}
    normals = _unit_normals(attributes.get("normals"), positions, triangles)

    groups: list[tuple[np.ndarray, UsdGeom.Subset | None]] = []
    claimed = np.zeros(len(face_of_triangle), bool)
    for subset in subsets:
        faces = np.asarray(subset.GetIndicesAttr().Get() or [], np.int64)
        mine = np.isin(face_of_triangle, faces) & ~claimed
        claimed |= mine
        if mine.any():
            groups.append((triangles[mine], subset))
    if not claimed.all():
        groups.insert(0, (triangles[~claimed], None))
    uvs = attributes.get("uvs")
    return Surface(
        positions=positions.astype(np.float32),
        normals=normals.astype(np.float32),
        colors=np.clip(attributes["colors"], 0.0, 1.0).astype(np.float32) if "colors" in attributes else None,
        uvs=np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1).astype(np.float32) if uvs is not None else None,
        groups=groups,
    )


def _per_vertex(values: np.ndarray, interpolation: str, vertex_point: np.ndarray, face_of_corner: np.ndarray | None,
                n_points: int, n_faces: int, n_corners: int) -> np.ndarray | None:
    """A primvar's value for each output vertex (a point, or a face corner when `face_of_corner` is given)."""
    if interpolation == UsdGeom.Tokens.constant and len(values) >= 1:
        return np.repeat(values[:1], len(vertex_point), axis=0)
    if interpolation in (UsdGeom.Tokens.vertex, UsdGeom.Tokens.varying) and len(values) == n_points:
        return values[vertex_point]
    if face_of_corner is None:
        return None
    if interpolation == UsdGeom.Tokens.uniform and len(values) == n_faces:
        return values[face_of_corner]
    if interpolation == UsdGeom.Tokens.faceVarying and len(values) == n_corners:
        return values
    return None


def _unit_normals(authored: np.ndarray | None, positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Authored normals made unit length; missing or zero ones rebuilt from the area-weighted triangles around."""
    face_normals = np.cross(positions[triangles[:, 1]] - positions[triangles[:, 0]],
                            positions[triangles[:, 2]] - positions[triangles[:, 0]])
    built = np.zeros_like(positions)
    for corner in range(3):
        np.add.at(built, triangles[:, corner], face_normals)
    lengths = np.linalg.norm(built, axis=1)
    cancelled = lengths < 1e-12  # faces around a vertex that cancel out: take one of them
    if cancelled.any():
        built[triangles[:, 0]] = np.where(cancelled[triangles[:, 0], None], face_normals, built[triangles[:, 0]])
        lengths = np.linalg.norm(built, axis=1)
    built /= np.maximum(lengths, 1e-30)[:, None]
    if authored is None:
        return built
    lengths = np.linalg.norm(authored, axis=1)
    good = np.isfinite(lengths) & (lengths > 1e-12)
    return np.where(good[:, None], authored / np.where(good, lengths, 1.0)[:, None], built)


def _error(prim: Usd.Prim, message: str) -> LayoutError:
    """A LayoutError naming the layer that authored the prim, and the prim."""
    spec = prim.GetPrimStack()[0] if prim.GetPrimStack() else None
    layer = spec.layer.realPath or spec.layer.identifier if spec else prim.GetStage().GetRootLayer().identifier
    return LayoutError(layer, message)
