"""The viewer's GLB from stages the project did not author: references, a payload, native instancing and a
point instancer (meshes shared, not copied), UsdPreviewSurface materials, GeomSubsets, a textured mesh,
Y-up at centimetres; one of the `newton` wheel's assets; and the content-keyed cache `twin serve` uses.

The GLB is read here with a reader of its own (not the exporter's code), and world positions are
compared with the stage's, computed with UsdGeom.XformCache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade

from tests.helpers import BROWSER
from tests.test_valid_outputs import gltf_issues
from twin.core.stage import usd_to_numpy
from twin.scenes.gltf import STAGE_FRAME, export_glb
from twin.server.assets import layout_glb

CM_Y_UP_TO_GLTF = np.diag([0.01, 0.01, 0.01, 1.0])  # a Y-up stage in centimetres, in glTF's metres
INSTANCES = [(100.0, 0.0, 0.0), (200.0, 0.0, 0.0), (300.0, 0.0, 50.0), (0.0, 80.0, -40.0)]
BALLS = [(0.0, 0.0, 0.0), (10.0, 0.0, 0.0), (20.0, 5.0, 0.0), (30.0, 0.0, 7.0), (40.0, 0.0, 0.0)]
RED = dict(diffuseColor=Gf.Vec3f(0.9, 0.1, 0.05), metallic=0.8, roughness=0.25, emissiveColor=Gf.Vec3f(0.2, 0, 0))
BLUE = dict(diffuseColor=Gf.Vec3f(0.1, 0.2, 0.9), metallic=0.0, roughness=0.9, opacity=0.5)


# --------------------------------------------------------------------------- a GLB reader of the test's own
class Glb:
    """A GLB's JSON and binary chunk, accessors as numpy arrays, nodes' world matrices."""

    def __init__(self, path: Path):
        data = path.read_bytes()
        magic, version, length = struct.unpack_from("<III", data)
        assert (magic, version, length) == (0x46546C67, 2, len(data))
        json_length, _ = struct.unpack_from("<II", data, 12)
        self.json = json.loads(data[20:20 + json_length])
        offset = 20 + json_length
        self.binary = data[offset + 8:] if offset < len(data) else b""
        self.nodes = self.json["nodes"]
        self.parent = {child: i for i, node in enumerate(self.nodes) for child in node.get("children", [])}
        self.by_name: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            self.by_name.setdefault(node.get("name"), i)

    def accessor(self, index: int) -> np.ndarray:
        accessor = self.json["accessors"][index]
        view = self.json["bufferViews"][accessor["bufferView"]]
        dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[accessor["componentType"]]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[accessor["type"]]
        start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        array = np.frombuffer(self.binary, dtype, accessor["count"] * width, start)
        return array.reshape(-1, width) if width > 1 else array

    def world(self, node: int) -> np.ndarray:
        matrix = np.eye(4)
        while node is not None:
            local = np.array(self.nodes[node].get("matrix", np.eye(4).reshape(-1)), float).reshape(4, 4).T
            matrix = local @ matrix
            node = self.parent.get(node)
        return matrix

    def world_positions(self, node: int) -> np.ndarray:
        """The node's mesh vertices in glTF's world (metres, +Y up)."""
        primitive = self.json["meshes"][self.nodes[node]["mesh"]]["primitives"][0]
        points = self.accessor(primitive["attributes"]["POSITION"]).astype(float)
        return points @ self.world(node)[:3, :3].T + self.world(node)[:3, 3]


def usd_world_points(prim: Usd.Prim, to_gltf: np.ndarray) -> np.ndarray:
    """A Mesh prim's points in glTF's frame, from the stage alone."""
    world = to_gltf @ usd_to_numpy(UsdGeom.XformCache().GetLocalToWorldTransform(prim))
    points = np.asarray(UsdGeom.Mesh(prim).GetPointsAttr().Get(), float)
    return points @ world[:3, :3].T + world[:3, 3]


def assert_same_points(ours: np.ndarray, theirs: np.ndarray, atol: float = 1e-5) -> None:
    """Every glTF vertex is a USD point and every USD point a glTF vertex (vertices may be split per face)."""
    distances = np.linalg.norm(ours[:, None, :] - theirs[None, :, :], axis=2)
    assert distances.min(axis=1).max() < atol
    assert distances.min(axis=0).max() < atol


# --------------------------------------------------------------------------- a stage nobody on the project wrote
def write_png(path: Path, rgb: tuple[int, int, int], size: int = 4) -> None:
    """A plain RGB PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * size for _ in range(size))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _stage(path: Path) -> Usd.Stage:
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, UsdGeom.LinearUnits.centimeters)
    return stage


def _preview_material(stage: Usd.Stage, path: str, **inputs: object) -> UsdShade.Material:
    material = UsdShade.Material.Define(stage, path)
    shader = UsdShade.Shader.Define(stage, f"{path}/Surface")
    shader.CreateIdAttr("UsdPreviewSurface")
    for name, value in inputs.items():
        kind = Sdf.ValueTypeNames.Color3f if isinstance(value, Gf.Vec3f) else Sdf.ValueTypeNames.Float
        shader.CreateInput(name, kind).Set(value)
    material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    return material


def _box_of_quads(stage: Usd.Stage, path: str, size: float) -> UsdGeom.Mesh:
    """A box of six quads, as a CAD export writes it (no normals authored)."""
    h = size / 2
    points = [(x, y, z) for x in (-h, h) for y in (-h, h) for z in (-h, h)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = UsdGeom.Mesh.Define(stage, path)
    mesh.CreatePointsAttr(points)
    mesh.CreateFaceVertexCountsAttr([4] * 6)
    mesh.CreateFaceVertexIndicesAttr([i for quad in quads for i in quad])
    return mesh


@pytest.fixture(scope="module")
def authored(tmp_path_factory) -> Path:
    """layout.usda: four instanceable references to part.usda, a payload, a point instancer, a textured
    pentagon with a zero-area triangle, an invisible and a guide prim."""
    folder = tmp_path_factory.mktemp("authored")
    write_png(folder / "wood.png", (200, 120, 40))

    part = _stage(folder / "part.usda")
    root = UsdGeom.Xform.Define(part, "/Part")
    part.SetDefaultPrim(root.GetPrim())
    body = _box_of_quads(part, "/Part/Body", 20.0)
    body.AddTranslateOp().Set(Gf.Vec3d(0, 10, 0))
    red = _preview_material(part, "/Part/Looks/Red", **RED)
    blue = _preview_material(part, "/Part/Looks/Blue", **BLUE)
    UsdShade.MaterialBindingAPI.Apply(body.GetPrim()).Bind(blue)
    top = UsdGeom.Subset.CreateGeomSubset(body, "top", UsdGeom.Tokens.face, [3], "materialBind")
    UsdShade.MaterialBindingAPI.Apply(top.GetPrim()).Bind(red)
    part.Save()

    loaded = _stage(folder / "loaded.usda")
    loaded.SetDefaultPrim(UsdGeom.Xform.Define(loaded, "/Loaded").GetPrim())
    cone = UsdGeom.Cone.Define(loaded, "/Loaded/Tip")
    cone.CreateRadiusAttr(5.0)
    cone.CreateHeightAttr(30.0)
    cone.CreateAxisAttr("Y")
    cone.CreateDisplayColorPrimvar().Set([(0.1, 0.8, 0.1)])
    loaded.Save()

    stage = _stage(folder / "layout.usda")
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    for i, offset in enumerate(INSTANCES):
        instance = UsdGeom.Xform.Define(stage, f"/World/Parts/P{i}")
        instance.AddTranslateOp().Set(Gf.Vec3d(*offset))
        instance.AddRotateYOp().Set(30.0 * i)
        instance.GetPrim().GetReferences().AddReference("./part.usda")
        instance.GetPrim().SetInstanceable(True)
    holder = UsdGeom.Xform.Define(stage, "/World/Loaded")
    holder.AddTranslateOp().Set(Gf.Vec3d(-50, 0, 0))
    holder.GetPrim().GetPayloads().AddPayload("./loaded.usda")

    scatter = UsdGeom.PointInstancer.Define(stage, "/World/Scatter")
    scatter.AddTranslateOp().Set(Gf.Vec3d(0, 0, 200))
    ball = UsdGeom.Sphere.Define(stage, "/World/Scatter/Prototypes/Ball")
    ball.CreateRadiusAttr(2.0)
    scatter.CreatePrototypesRel().SetTargets([ball.GetPath()])
    scatter.CreateProtoIndicesAttr([0] * len(BALLS))
    scatter.CreatePositionsAttr([Gf.Vec3f(*p) for p in BALLS])

    plate = UsdGeom.Mesh.Define(stage, "/World/Plate")
    plate.AddTranslateOp().Set(Gf.Vec3d(0, 0, -100))
    pentagon = [(np.cos(a) * 10, 0.0, np.sin(a) * 10) for a in np.linspace(0, 2 * np.pi, 6)[:-1]]
    plate.CreatePointsAttr([*pentagon, (0, 0, 0), (1, 0, 0)])
    plate.CreateFaceVertexCountsAttr([5, 3])
    plate.CreateFaceVertexIndicesAttr([4, 3, 2, 1, 0, 5, 6, 6])  # the triangle has no area
    st = UsdGeom.PrimvarsAPI(plate).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                  UsdGeom.Tokens.faceVarying)
    st.Set([(0, 0), (1, 0), (1, 1), (0.5, 1), (0, 1), (0, 0), (1, 0), (1, 0)])
    wood = _preview_material(stage, "/World/Looks/Wood", roughness=0.6)
    texture = UsdShade.Shader.Define(stage, "/World/Looks/Wood/Texture")
    texture.CreateIdAttr("UsdUVTexture")
    texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set("./wood.png")
    reader = UsdShade.Shader.Define(stage, "/World/Looks/Wood/St")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.Token).Set("st")
    texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
    surface = UsdShade.Shader(stage.GetPrimAtPath("/World/Looks/Wood/Surface"))
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(texture.ConnectableAPI(), "rgb")
    UsdShade.MaterialBindingAPI.Apply(plate.GetPrim()).Bind(wood)

    UsdGeom.Cube.Define(stage, "/World/Hidden").CreateVisibilityAttr(UsdGeom.Tokens.invisible)
    UsdGeom.Cube.Define(stage, "/World/Guide").CreatePurposeAttr(UsdGeom.Tokens.guide)
    stage.Save()
    return folder / "layout.usda"


@pytest.fixture(scope="module")
def exported(authored, tmp_path_factory) -> tuple[Usd.Stage, Glb, Path]:
    stage = Usd.Stage.Open(str(authored))
    glb = export_glb(authored, tmp_path_factory.mktemp("glb") / "layout.glb")
    return stage, Glb(glb), glb


# --------------------------------------------------------------------------- the authored stage
def test_every_visible_prim_is_a_node_named_by_its_path(exported):
    stage, glb, _ = exported
    assert glb.json["scenes"][0]["nodes"] == [glb.by_name[STAGE_FRAME]]
    expected = {str(p.GetPath()) for p in Usd.PrimRange(stage.GetPseudoRoot(), Usd.TraverseInstanceProxies())
                if p.IsA(UsdGeom.Xformable) and "/Scatter/" not in str(p.GetPath())
                and p.GetName() not in ("Hidden", "Guide")}
    named = {name for name in glb.by_name if name.startswith("/")}
    assert named == expected
    assert "/World/Parts/P2/Body" in named, "instance proxies are nodes of their own, selectable by path"
    assert "/World/Loaded/Tip" in named, "the payload is loaded"
    instances = [i for i, node in enumerate(glb.nodes) if node["name"].startswith("instance ")]
    assert len(instances) == len(BALLS)
    assert all(glb.nodes[glb.parent[i]]["name"] == "/World/Scatter" for i in instances), "a click selects the instancer"


def test_instances_share_one_mesh(exported):
    _, glb, _ = exported
    bodies = {glb.nodes[glb.by_name[f"/World/Parts/P{i}/Body"]]["mesh"] for i in range(len(INSTANCES))}
    balls = {glb.nodes[child]["mesh"] for i, node in enumerate(glb.nodes) if node["name"].startswith("instance ")
             for child in node["children"]}
    assert len(bodies) == 1 and len(balls) == 1
    assert len(glb.json["meshes"]) == 4, "body, ball, cone and plate: each written once"


def test_positions_are_the_stage_world_in_metres_y_up(exported):
    stage, glb, _ = exported
    for i in range(len(INSTANCES)):
        path = f"/World/Parts/P{i}/Body"
        assert_same_points(glb.world_positions(glb.by_name[path]),
                           usd_world_points(stage.GetPrimAtPath(path), CM_Y_UP_TO_GLTF))
    plate = glb.world_positions(glb.by_name["/World/Plate"])
    assert_same_points(plate, usd_world_points(stage.GetPrimAtPath("/World/Plate"), CM_Y_UP_TO_GLTF)[:5])

    scatter = usd_to_numpy(UsdGeom.XformCache().GetLocalToWorldTransform(stage.GetPrimAtPath("/World/Scatter")))
    centres = [glb.world_positions(child).mean(axis=0) for node in glb.nodes if node["name"].startswith("instance ")
               for child in node["children"]]
    expected = (CM_Y_UP_TO_GLTF @ scatter @ np.c_[BALLS, np.ones(len(BALLS))].T).T[:, :3]
    np.testing.assert_allclose(centres, expected, atol=1e-4)
    cone = glb.world_positions(glb.by_name["/World/Loaded/Tip"])
    np.testing.assert_allclose(cone.min(axis=0), [-0.55, -0.15, -0.05], atol=1e-3)  # r 5 cm, h 30 cm along Y
    np.testing.assert_allclose(cone.max(axis=0), [-0.45, 0.15, 0.05], atol=1e-3)


def test_materials_subsets_and_texture(exported):
    _, glb, _ = exported
    body = glb.json["meshes"][glb.nodes[glb.by_name["/World/Parts/P0/Body"]]["mesh"]]
    assert len(body["primitives"]) == 2, "the faces outside the subset, and the subset"
    rest, top = (glb.json["materials"][p["material"]] for p in body["primitives"])
    assert len(glb.accessor(body["primitives"][1]["indices"])) == 6, "one quad, two triangles"
    assert len(glb.accessor(body["primitives"][0]["indices"])) == 30
    np.testing.assert_allclose(top["pbrMetallicRoughness"]["baseColorFactor"], [0.9, 0.1, 0.05, 1.0], atol=1e-6)
    assert top["pbrMetallicRoughness"]["metallicFactor"] == pytest.approx(0.8)
    assert top["pbrMetallicRoughness"]["roughnessFactor"] == pytest.approx(0.25)
    np.testing.assert_allclose(top["emissiveFactor"], [0.2, 0, 0], atol=1e-6)
    np.testing.assert_allclose(rest["pbrMetallicRoughness"]["baseColorFactor"], [0.1, 0.2, 0.9, 0.5], atol=1e-6)
    assert rest["alphaMode"] == "BLEND"

    plate = glb.json["meshes"][glb.nodes[glb.by_name["/World/Plate"]]["mesh"]]["primitives"]
    assert len(plate) == 1 and len(glb.accessor(plate[0]["indices"])) == 9, "pentagon fanned, zero-area dropped"
    wood = glb.json["materials"][plate[0]["material"]]
    texture = glb.json["textures"][wood["pbrMetallicRoughness"]["baseColorTexture"]["index"]]
    image = glb.json["images"][texture["source"]]
    assert image["mimeType"] == "image/png"
    uvs = glb.accessor(plate[0]["attributes"]["TEXCOORD_0"])
    assert uvs.min() >= 0.0 and uvs.max() <= 1.0
    cone = glb.json["meshes"][glb.nodes[glb.by_name["/World/Loaded/Tip"]]["mesh"]]["primitives"][0]
    np.testing.assert_allclose(glb.json["materials"][cone["material"]]["pbrMetallicRoughness"]["baseColorFactor"],
                               [0.1, 0.8, 0.1, 1.0], atol=1e-6)


def test_unit_normals_and_validator(exported):
    _, glb, path = exported
    for mesh in glb.json["meshes"]:
        normals = glb.accessor(mesh["primitives"][0]["attributes"]["NORMAL"])
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    issues = gltf_issues(path)
    assert issues["numErrors"] == 0, issues["messages"][:10]


# --------------------------------------------------------------------------- a third-party asset
def test_newton_asset_exports_valid_and_in_place(tmp_path):
    spec = importlib.util.find_spec("newton")  # found, not imported: importing newton starts Warp
    if spec is None or spec.origin is None:
        pytest.skip("the newton wheel is not installed")
    asset = Path(spec.origin).parent / "examples" / "assets" / "crazyflie.usd"
    stage = Usd.Stage.Open(str(asset))
    glb_path = export_glb(asset, tmp_path / "crazyflie.glb")
    glb = Glb(glb_path)
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert meshes and all(str(p.GetPath()) in glb.by_name for p in meshes)
    to_gltf = np.diag([UsdGeom.GetStageMetersPerUnit(stage)] * 3 + [1.0])  # the asset is Y-up
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    for prim in meshes:
        ours = glb.world_positions(glb.by_name[str(prim.GetPath())])
        theirs = usd_world_points(prim, to_gltf)
        np.testing.assert_allclose(ours.min(axis=0), theirs.min(axis=0), atol=1e-5)
        np.testing.assert_allclose(ours.max(axis=0), theirs.max(axis=0), atol=1e-5)
    issues = gltf_issues(glb_path)
    assert issues["numErrors"] == 0, issues["messages"][:10]


# --------------------------------------------------------------------------- the cache `twin serve` uses
def test_cache_hits_until_a_composed_file_changes(authored, tmp_path):
    cache = tmp_path / "cache"
    first = layout_glb(authored, cache)
    built_at = first.stat().st_mtime_ns
    os.utime(authored)  # touched, not changed: the key is the content
    again = layout_glb(authored, cache)
    assert again == first and again.stat().st_mtime_ns == built_at, "a hit does not rebuild"

    part = authored.with_name("part.usda")
    part.write_text(part.read_text().replace("(0, 10, 0)", "(0, 12, 0)"))  # a referenced layer, not the root
    changed = layout_glb(authored, cache)
    assert changed != first and changed.is_file()
    body = Glb(changed)
    assert body.world(body.by_name["/World/Parts/P0/Body"])[1, 3] == pytest.approx(0.12)

    write_png(authored.with_name("wood.png"), (10, 10, 10))  # an asset the layout names
    assert layout_glb(authored, cache) not in (first, changed)
    assert len(list(cache.glob("*.glb"))) == 3 and not list(cache.glob("*.part"))


# --------------------------------------------------------------------------- in the API
def test_the_scene_tree_lists_what_instances_hold(authored):
    """/api/scene (scene_tree) holds every prim the GLB draws: the contents of instanceable references are
    instance proxies, which USD's plain children leave out, and each one's details can be asked for."""
    from twin.sim.runtime import Twin
    from twin.sim.scene_info import prim_details, scene_tree

    twin = Twin(authored)
    nodes: dict[str, dict] = {}

    def walk(node: dict) -> None:
        nodes[node["path"]] = node
        for child in node["children"]:
            walk(child)

    walk(scene_tree(twin))
    for i in range(len(INSTANCES)):
        assert nodes[f"/World/Parts/P{i}"].get("instance") is True
        body = nodes[f"/World/Parts/P{i}/Body"]
        assert body["type"] == "Mesh" and body["instance_proxy"] is True, body
        assert {child["name"] for child in body["children"]} == {"top"}  # its GeomSubset
    assert "instance" not in nodes["/World/Plate"] and "instance_proxy" not in nodes["/World/Plate"]
    assert "/World/Loaded/Tip" in nodes and "/World/Scatter/Prototypes/Ball" in nodes
    assert "faceVertexCounts" in prim_details(twin, "/World/Parts/P3/Body")["attributes"]


# --------------------------------------------------------------------------- in the viewer
@pytest.mark.slow
@BROWSER[0]
@BROWSER[1]
def test_viewer_shows_and_selects_prims_of_a_foreign_layout(authored, tmp_path):
    """The served GLB of a layout without twin attributes: an instance proxy is an object of the page at its
    world pose, and selecting it shows its attributes."""
    from tests.helpers import serve_app, viewer_page
    from twin.server.app import create_app
    from twin.sim.runtime import Twin

    stage = Usd.Stage.Open(str(authored))
    body = "/World/Parts/P2/Body"
    expected = CM_Y_UP_TO_GLTF @ usd_to_numpy(UsdGeom.XformCache().GetLocalToWorldTransform(stage.GetPrimAtPath(body)))
    app = create_app(Twin(authored), glb_path=layout_glb(authored, tmp_path / "cache"), tick_hz=10)
    with serve_app(app) as url, viewer_page(url) as page:
        shown = np.array(page.evaluate(f"window.twin.worldMatrix({body!r})")).reshape(4, 4).T  # three.js: by column
        np.testing.assert_allclose(shown, expected, atol=1e-5)
        page.evaluate(f"window.twin.select({body!r})")
        inspector = "document.querySelector('#inspector-body')"
        page.wait_for_function(f"{inspector}.querySelector('.prim-path')?.textContent === {body!r}"
                               f" && !{inspector}.textContent.includes('loading')", timeout=20_000)
        assert "faceVertexCounts" in page.text_content("#inspector-body")
