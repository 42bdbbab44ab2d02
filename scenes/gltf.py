"""The stage as GLB for the browser: one glTF node per Xformable prim, named by its full prim path.

Nodes mirror the prim hierarchy and carry the prim's transform relative to its parent prim, so the
viewer can set a robot link's local matrix from the stream exactly as the runtime computes it.
glTF is +Y up in metres: one top node, `STAGE_FRAME`, turns the stage's up axis and units into that
frame, so every node below it keeps the stage's own local transforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from pxr import Usd, UsdGeom
from trimesh.visual.material import PBRMaterial

from twin.core.stage import usd_to_numpy

from .layout import open_layout

DEFAULT_COLOR = (0.7, 0.7, 0.7)
STAGE_FRAME = "stage-frame"
_UP_TO_Y_UP = {UsdGeom.Tokens.y: np.eye(3), UsdGeom.Tokens.z: np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)}


def export_glb(stage: Usd.Stage | str | Path, out_path: str | Path) -> Path:
    """Write the composed stage (or a layout file) as GLB; returns the written path."""
    if not isinstance(stage, Usd.Stage):
        stage = open_layout(stage)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(stage_to_scene(stage).export(file_type="glb", include_normals=True))
    return out_path


def stage_to_scene(stage: Usd.Stage) -> trimesh.Scene:
    """A trimesh scene graph mirroring the stage's visible Xformable prims."""
    scene = trimesh.Scene()
    scene.graph.update(frame_from=scene.graph.base_frame, frame_to=STAGE_FRAME, matrix=stage_to_gltf(stage))
    cache = UsdGeom.XformCache()
    emitted: set[str] = set()
    for prim in stage.Traverse():
        if not prim.IsA(UsdGeom.Xformable):
            continue
        if UsdGeom.Imageable(prim).ComputeVisibility() == UsdGeom.Tokens.invisible:
            continue
        parent = prim.GetParent()
        while parent and str(parent.GetPath()) not in emitted:
            parent = parent.GetParent()
        if parent:
            matrix = usd_to_numpy(cache.ComputeRelativeTransform(prim, parent)[0])
            parent_name = str(parent.GetPath())
        else:
            matrix = usd_to_numpy(cache.GetLocalToWorldTransform(prim))
            parent_name = STAGE_FRAME
        name = str(prim.GetPath())
        emitted.add(name)
        geometry = _geometry(prim)
        if geometry is None:
            scene.graph.update(frame_from=parent_name, frame_to=name, matrix=matrix)
        else:
            scene.add_geometry(geometry, node_name=name, geom_name=name, parent_node_name=parent_name,
                               transform=matrix)
    return scene


def stage_to_gltf(stage: Usd.Stage) -> np.ndarray:
    """4x4 from the stage's frame (its upAxis, metersPerUnit) to glTF's +Y up metres."""
    matrix = np.eye(4)
    matrix[:3, :3] = _UP_TO_Y_UP[UsdGeom.GetStageUpAxis(stage)] * UsdGeom.GetStageMetersPerUnit(stage)
    return matrix


def _geometry(prim: Usd.Prim) -> trimesh.Trimesh | None:
    """Triangles of a Mesh or of a Cube / Sphere / Cylinder, coloured from displayColor."""
    if prim.IsA(UsdGeom.Mesh):
        mesh, face_of_triangle = _triangulate(UsdGeom.Mesh(prim))
    elif prim.IsA(UsdGeom.Cube):
        mesh = trimesh.creation.box(extents=[UsdGeom.Cube(prim).GetSizeAttr().Get()] * 3)
        face_of_triangle = np.arange(len(mesh.faces))
    elif prim.IsA(UsdGeom.Sphere):
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=UsdGeom.Sphere(prim).GetRadiusAttr().Get())
        face_of_triangle = np.arange(len(mesh.faces))
    elif prim.IsA(UsdGeom.Cylinder):
        cylinder = UsdGeom.Cylinder(prim)
        turn = {"X": [[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]],
                "Y": [[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]}
        turn = turn.get(cylinder.GetAxisAttr().Get())
        mesh = trimesh.creation.cylinder(cylinder.GetRadiusAttr().Get(), cylinder.GetHeightAttr().Get(),
                                         sections=24, transform=turn)
        face_of_triangle = np.arange(len(mesh.faces))
    else:
        return None
    if mesh is None:
        return None
    _paint(mesh, UsdGeom.Gprim(prim), face_of_triangle)
    mesh.vertex_normals = _unit_normals(mesh.vertex_normals)
    return mesh


def _unit_normals(normals: np.ndarray) -> np.ndarray:
    """glTF requires unit normals; a vertex of no real triangle (or whose faces cancel) gets +Z."""
    normals = np.array(normals, np.float64)
    lengths = np.linalg.norm(normals, axis=1)
    degenerate = lengths < 1e-9
    normals[degenerate] = (0.0, 0.0, 1.0)
    lengths[degenerate] = 1.0
    return normals / lengths[:, None]


def _triangulate(usd_mesh: UsdGeom.Mesh) -> tuple[trimesh.Trimesh | None, np.ndarray]:
    """Fan-triangulate the polygons; also says which polygon each triangle came from."""
    points = np.asarray(usd_mesh.GetPointsAttr().Get() or [], np.float64).reshape(-1, 3)
    counts = np.asarray(usd_mesh.GetFaceVertexCountsAttr().Get() or [], np.int64)
    indices = np.asarray(usd_mesh.GetFaceVertexIndicesAttr().Get() or [], np.int64)
    if len(points) == 0 or len(counts) == 0:
        return None, np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    fans = np.maximum(counts - 2, 0)
    face_of_triangle = np.repeat(np.arange(len(counts)), fans)
    corner = np.arange(len(face_of_triangle)) - np.repeat(np.cumsum(fans) - fans, fans)
    first = starts[face_of_triangle]
    triangles = np.stack([indices[first], indices[first + corner + 1], indices[first + corner + 2]], axis=1)
    corners = points[triangles]
    has_area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1) > 0
    triangles, face_of_triangle = triangles[has_area], face_of_triangle[has_area]  # glTF flags zero-area ones
    if len(triangles) == 0:
        return None, face_of_triangle
    if usd_mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded:
        triangles = triangles[:, ::-1]
    normals = usd_mesh.GetNormalsAttr().Get()
    kwargs = {}
    if normals is not None and len(normals) == len(points) and usd_mesh.GetNormalsInterpolation() in (
        UsdGeom.Tokens.vertex, UsdGeom.Tokens.varying
    ):
        kwargs["vertex_normals"] = np.asarray(normals, np.float64)
    return trimesh.Trimesh(points, triangles, process=False, **kwargs), face_of_triangle


def _paint(mesh: trimesh.Trimesh, gprim: UsdGeom.Gprim, face_of_triangle: np.ndarray) -> None:
    """displayColor as a glTF material (one colour) or as vertex colours (per vertex or per face)."""
    primvar = gprim.GetDisplayColorPrimvar()
    colors = primvar.ComputeFlattened() if primvar and primvar.HasAuthoredValue() else None
    colors = np.asarray(colors if colors is not None and len(colors) else [DEFAULT_COLOR], np.float64)
    interpolation = primvar.GetInterpolation() if primvar else UsdGeom.Tokens.constant
    base = [*colors[0], 1.0] if len(colors) == 1 else [1.0, 1.0, 1.0, 1.0]
    visual = trimesh.visual.TextureVisuals(
        material=PBRMaterial(baseColorFactor=base, metallicFactor=0.1, roughnessFactor=0.7)
    )
    per_vertex = None
    if len(colors) > 1 and interpolation in (UsdGeom.Tokens.vertex, UsdGeom.Tokens.varying) and len(
        colors
    ) == len(mesh.vertices):
        per_vertex = colors
    elif len(colors) > 1 and interpolation == UsdGeom.Tokens.uniform and len(colors) > face_of_triangle.max():
        mesh.unmerge_vertices()  # one colour per face needs the face's own vertices
        per_vertex = np.repeat(colors[face_of_triangle], 3, axis=0)
    if per_vertex is not None:
        rgba = np.concatenate([per_vertex, np.ones((len(per_vertex), 1))], axis=1)
        visual.vertex_attributes["color"] = np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8)
    mesh.visual = visual
