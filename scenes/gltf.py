"""The stage as GLB for the browser: one glTF node per Xformable prim, named by its full prim path.

Nodes mirror the prim hierarchy and carry the prim's transform relative to its parent prim, so the
viewer can set a robot link's local matrix from the stream exactly as the runtime computes it.
glTF is +Y up in metres: one top node, `STAGE_FRAME`, turns the stage's up axis and units into that
frame, so every node below it keeps the stage's own local transforms.

Any composed stage exports: references and payloads (loaded), instanceable prims (nodes per instance
proxy, each named by its proxy path, sharing one glTF mesh per prototype prim), point instancers (a node
per instance, named `instance N of <instancer>` so a click selects the instancer, sharing the prototypes'
meshes), UsdPreviewSurface materials as glTF PBR, `materialBind` GeomSubsets as primitives of their own,
displayColor when no material is bound. Invisible prims and guide or proxy purposes are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pxr import Usd, UsdGeom, UsdShade

from twin.core.stage import usd_to_numpy

from .glb_writer import GlbBuilder
from .layout import open_layout
from .usd_geometry import Surface, surface_of

EXPORTER_VERSION = 2  # part of the served GLB's cache key: bump when the output changes
DEFAULT_COLOR = (0.7, 0.7, 0.7)
STAGE_FRAME = "stage-frame"
_UP_TO_Y_UP = {UsdGeom.Tokens.y: np.eye(3), UsdGeom.Tokens.z: np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)}
_CHILDREN = Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)
_HIDDEN_PURPOSES = (UsdGeom.Tokens.guide, UsdGeom.Tokens.proxy)
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def export_glb(stage: Usd.Stage | str | Path, out_path: str | Path) -> Path:
    """Write the composed stage (or a layout file) as GLB; returns the written path."""
    if not isinstance(stage, Usd.Stage):
        stage = open_layout(stage)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(stage_to_glb(stage))
    return out_path


def stage_to_glb(stage: Usd.Stage) -> bytes:
    """The GLB's bytes for the composed stage."""
    return _Exporter(stage).run()


def stage_to_gltf(stage: Usd.Stage) -> np.ndarray:
    """4x4 from the stage's frame (its upAxis, metersPerUnit) to glTF's +Y up metres."""
    matrix = np.eye(4)
    matrix[:3, :3] = _UP_TO_Y_UP[UsdGeom.GetStageUpAxis(stage)] * UsdGeom.GetStageMetersPerUnit(stage)
    return matrix


@dataclass(frozen=True)
class Look:
    """A UsdPreviewSurface's inputs as glTF's metallic-roughness model understands them."""

    name: str
    base_color: tuple[float, float, float] = (0.18, 0.18, 0.18)
    opacity: float = 1.0
    opacity_threshold: float = 0.0
    metallic: float = 0.0
    roughness: float = 0.5
    emissive: tuple[float, float, float] = (0.0, 0.0, 0.0)
    texture: str | None = None  # a resolved PNG or JPEG file for the base colour
    uv_primvar: str | None = None


def look_of(material: UsdShade.Material) -> Look | None:
    """The material's UsdPreviewSurface (None when its universal surface is something else, such as MDL only)."""
    shader = material.ComputeSurfaceSource()[0]
    if not shader or shader.GetIdAttr().Get() != "UsdPreviewSurface":
        return None
    values: dict[str, object] = {}
    for name in ("diffuseColor", "opacity", "opacityThreshold", "metallic", "roughness", "emissiveColor"):
        shader_input = shader.GetInput(name)
        if not shader_input:
            continue
        sources = shader_input.GetConnectedSources()[0]
        if sources:
            if name == "diffuseColor":
                values.update(_texture_inputs(UsdShade.Shader(sources[0].source.GetPrim())))
            continue  # other textured inputs keep the default factor
        value = shader_input.Get()
        if value is not None:
            values[name] = tuple(float(v) for v in value) if hasattr(value, "__len__") else float(value)
    return Look(
        name=str(material.GetPath()),
        base_color=values.get("diffuseColor", Look.base_color),  # type: ignore[arg-type]
        opacity=values.get("opacity", 1.0),  # type: ignore[arg-type]
        opacity_threshold=values.get("opacityThreshold", 0.0),  # type: ignore[arg-type]
        metallic=values.get("metallic", 0.0),  # type: ignore[arg-type]
        roughness=values.get("roughness", 0.5),  # type: ignore[arg-type]
        emissive=values.get("emissiveColor", Look.emissive),  # type: ignore[arg-type]
        texture=values.get("texture"),  # type: ignore[arg-type]
        uv_primvar=values.get("uv_primvar"),  # type: ignore[arg-type]
    )


def _texture_inputs(texture: UsdShade.Shader) -> dict[str, object]:
    """A UsdUVTexture's image (PNG or JPEG, resolved) and the primvar its coordinates come from."""
    if texture.GetIdAttr().Get() != "UsdUVTexture" or not texture.GetInput("file"):
        return {}
    asset = texture.GetInput("file").Get()
    path = asset.resolvedPath if asset is not None else ""
    if not path or Path(path).suffix.lower() not in _IMAGE_TYPES:
        return {}
    found: dict[str, object] = {"texture": path, "uv_primvar": "st"}
    st_input = texture.GetInput("st")
    readers = st_input.GetConnectedSources()[0] if st_input else []
    if readers:
        varname = UsdShade.Shader(readers[0].source.GetPrim()).GetInput("varname")
        if varname and varname.Get():
            found["uv_primvar"] = str(varname.Get())
    return found


class _Exporter:
    """One pass over the stage writing nodes; meshes, materials and images are written once and shared."""

    def __init__(self, stage: Usd.Stage):
        self.stage = stage
        self.glb = GlbBuilder()
        self.xforms = UsdGeom.XformCache()
        self.meshes: dict[tuple, int | None] = {}
        self.materials: dict[tuple, int] = {}
        self.images: dict[str, int] = {}
        self.looks: dict[str, Look | None] = {}

    def run(self) -> bytes:
        frame = self.glb.add_node({"name": STAGE_FRAME, **_matrix(stage_to_gltf(self.stage))}, None)
        for prim in self.stage.GetPseudoRoot().GetFilteredChildren(_CHILDREN):
            self._visit(prim, frame, None)
        return self.glb.to_bytes()

    def _visit(self, prim: Usd.Prim, parent_node: int, parent_prim: Usd.Prim | None,
               instance_root: bool = False, in_instancer: bool = False) -> None:
        """Emit the prim's node (if Xformable) and its subtree; `parent_prim` is the nearest emitted ancestor."""
        if prim.IsA(UsdGeom.Imageable):
            imageable = UsdGeom.Imageable(prim)
            if imageable.GetVisibilityAttr().Get() == UsdGeom.Tokens.invisible:
                return
            if imageable.GetPurposeAttr().Get() in _HIDDEN_PURPOSES:
                return
        if prim.IsA(UsdGeom.Xformable):
            node: dict = {"name": prim.GetName() if in_instancer else str(prim.GetPath())}
            if not instance_root:  # a point instance's transform already holds its prototype root's
                node.update(_matrix(self._local(prim, parent_prim)))
            if prim.IsA(UsdGeom.Gprim):
                mesh = self._mesh(prim)
                if mesh is not None:
                    node["mesh"] = mesh
            parent_node, parent_prim = self.glb.add_node(node, parent_node), prim
            if prim.IsA(UsdGeom.PointInstancer):
                self._instances(UsdGeom.PointInstancer(prim), parent_node)
                return  # the prototypes below an instancer are drawn only as its instances
        elif instance_root:
            parent_prim = prim  # a prototype root without a transform (a Scope): its children sit in the instance
        for child in prim.GetFilteredChildren(_CHILDREN):
            self._visit(child, parent_node, parent_prim, in_instancer=in_instancer)

    def _local(self, prim: Usd.Prim, parent: Usd.Prim | None) -> np.ndarray:
        world = usd_to_numpy(self.xforms.GetLocalToWorldTransform(prim))
        if parent is None:
            return world
        relative, resets = self.xforms.ComputeRelativeTransform(prim, parent)
        if resets:
            return np.linalg.inv(usd_to_numpy(self.xforms.GetLocalToWorldTransform(parent))) @ world
        return usd_to_numpy(relative)

    def _instances(self, instancer: UsdGeom.PointInstancer, node: int) -> None:
        """A node per visible instance holding its prototype's subtree; the meshes are the prototypes'."""
        prototypes = [self.stage.GetPrimAtPath(path) for path in instancer.GetPrototypesRel().GetForwardedTargets()]
        proto_indices = instancer.GetProtoIndicesAttr().Get() or []
        time = Usd.TimeCode.Default()
        transforms = instancer.ComputeInstanceTransformsAtTime(time, time)
        mask = instancer.ComputeMaskAtTime(time) or [True] * len(proto_indices)
        where = instancer.GetPath()
        for i, (proto, matrix, shown) in enumerate(zip(proto_indices, transforms, mask, strict=False)):
            if not shown or not 0 <= proto < len(prototypes) or not prototypes[proto]:
                continue
            instance = self.glb.add_node({"name": f"instance {i} of {where}", **_matrix(usd_to_numpy(matrix))}, node)
            self._visit(prototypes[proto], instance, None, instance_root=True, in_instancer=True)

    def _mesh(self, prim: Usd.Prim) -> int | None:
        """The glTF mesh of a gprim, shared by every instance of the same prototype prim with the same looks."""
        gprim = UsdGeom.Gprim(prim)
        look = self._bound_look(prim)
        subsets = UsdGeom.Subset.GetGeomSubsets(UsdGeom.Imageable(prim), UsdGeom.Tokens.face, "materialBind")
        subset_looks = {str(s.GetPath()): self._bound_look(s.GetPrim()) or look for s in subsets}
        source = prim.GetPrimInPrototype() if prim.IsInstanceProxy() else prim
        key = (str(source.GetPath()), look, tuple(subset_looks.values()))
        if key in self.meshes:
            return self.meshes[key]
        textured = [entry for entry in (look, *subset_looks.values()) if entry and entry.texture]
        surface = surface_of(prim, uv_primvar=textured[0].uv_primvar if textured else None,
                             vertex_colors=look is None)
        self.meshes[key] = None if surface is None else self._write_mesh(str(source.GetPath()), surface, gprim, look,
                                                                          subset_looks)
        return self.meshes[key]

    def _bound_look(self, prim: Usd.Prim) -> Look | None:
        material = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()[0]
        if not material:
            return None
        if material.GetPrim().IsInstanceProxy():  # every instance's copy of a prototype's material is one look
            material = UsdShade.Material(material.GetPrim().GetPrimInPrototype())
        path = str(material.GetPath())
        if path not in self.looks:
            self.looks[path] = look_of(material)
        return self.looks[path]

    def _write_mesh(self, name: str, surface: Surface, gprim: UsdGeom.Gprim, look: Look | None,
                    subset_looks: dict[str, Look | None]) -> int:
        attributes = {"POSITION": self.glb.add_accessor(surface.positions, bounds=True),
                      "NORMAL": self.glb.add_accessor(surface.normals)}
        if surface.uvs is not None:
            attributes["TEXCOORD_0"] = self.glb.add_accessor(surface.uvs)
        if surface.colors is not None:
            rgba = np.concatenate([surface.colors, np.ones((len(surface.colors), 1), np.float32)], axis=1)
            attributes["COLOR_0"] = self.glb.add_accessor(np.round(rgba * 255).astype(np.uint8), normalized=True)
        double_sided = bool(gprim.GetDoubleSidedAttr().Get())
        primitives = []
        for triangles, subset in surface.groups:
            group_look = subset_looks[str(subset.GetPath())] if subset else look
            if group_look is None:
                material = self._display_material(gprim, surface.colors is not None, double_sided)
            else:
                material = self._look_material(group_look, double_sided, surface.uvs is not None)
            primitives.append({"attributes": attributes, "material": material,
                               "indices": self.glb.add_indices(triangles, len(surface.positions))})
        return self.glb.add("meshes", {"name": name, "primitives": primitives})

    def _display_material(self, gprim: UsdGeom.Gprim, vertex_colors: bool, double_sided: bool) -> int:
        """displayColor and displayOpacity when no material is bound: white under per-vertex colours."""
        color: tuple[float, ...] = DEFAULT_COLOR
        opacity = 1.0
        if vertex_colors:
            color = (1.0, 1.0, 1.0)
        else:
            colors = gprim.GetDisplayColorPrimvar().ComputeFlattened()
            if colors:
                color = tuple(float(c) for c in colors[0])
        opacities = gprim.GetDisplayOpacityPrimvar().ComputeFlattened()
        if opacities:
            opacity = float(opacities[0])
        key = ("display", color, opacity, double_sided)
        if key not in self.materials:
            material: dict = {"pbrMetallicRoughness": {"baseColorFactor": [*_units(color), _unit(opacity)],
                                                       "metallicFactor": 0.1, "roughnessFactor": 0.7}}
            if opacity < 1.0:
                material["alphaMode"] = "BLEND"
            if double_sided:
                material["doubleSided"] = True
            self.materials[key] = self.glb.add("materials", material)
        return self.materials[key]

    def _look_material(self, look: Look, double_sided: bool, has_uvs: bool) -> int:
        key = ("look", look, double_sided, has_uvs)
        if key in self.materials:
            return self.materials[key]
        textured = look.texture is not None and has_uvs
        pbr: dict = {"baseColorFactor": [*(_units(look.base_color) if not textured else [1.0, 1.0, 1.0]),
                                         _unit(look.opacity)],
                     "metallicFactor": _unit(look.metallic), "roughnessFactor": _unit(look.roughness)}
        if look.texture is not None and has_uvs:
            pbr["baseColorTexture"] = {"index": self._texture(look.texture)}
        material: dict = {"name": look.name, "pbrMetallicRoughness": pbr}
        if any(look.emissive):
            material["emissiveFactor"] = _units(look.emissive)  # glTF caps emission at 1 without an extension
        if look.opacity_threshold > 0.0:
            material["alphaMode"], material["alphaCutoff"] = "MASK", look.opacity_threshold
        elif look.opacity < 1.0:
            material["alphaMode"] = "BLEND"
        if double_sided:
            material["doubleSided"] = True
        self.materials[key] = self.glb.add("materials", material)
        return self.materials[key]

    def _texture(self, path: str) -> int:
        if path not in self.images:
            if "samplers" not in self.glb.gltf:
                self.glb.add("samplers", {})
            view = self.glb.add_view(Path(path).read_bytes())
            image = self.glb.add("images", {"bufferView": view, "mimeType": _IMAGE_TYPES[Path(path).suffix.lower()]})
            self.images[path] = self.glb.add("textures", {"source": image, "sampler": 0})
        return self.images[path]


def _matrix(matrix: np.ndarray) -> dict:
    """A node's `matrix` entry (glTF is column-major); nothing for the identity."""
    if np.allclose(matrix, np.eye(4), atol=1e-12):
        return {}
    return {"matrix": [float(v) for v in np.asarray(matrix, np.float64).T.reshape(-1)]}


def _unit(value: float) -> float:
    """A factor clipped to glTF's [0, 1]."""
    return min(max(float(value), 0.0), 1.0)


def _units(values: tuple[float, ...]) -> list[float]:
    return [_unit(v) for v in values]
