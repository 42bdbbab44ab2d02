"""What the twin writes passes the formats' own validators: GLB through Khronos' glTF validator
(tests/interop/validate_gltf.mjs), USD through usd-core's validation registry.

The glTF tests need Node.js and tests/interop/node_modules (./scripts/setup.sh installs both).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh
from pxr import Sdf, Usd, UsdGeom, UsdPhysics, UsdValidation

from twin.core.cache import RuntimeCache
from twin.core.stage import LiveLayerWriter, TwinStage, usd_to_numpy
from twin.scenes.gltf import STAGE_FRAME, export_glb, stage_to_gltf
from twin.scenes.robot import ANCHOR_JOINT, add_robot

INTEROP = Path(__file__).parent / "interop"
Z_UP_TO_Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)


def gltf_issues(glb: Path) -> dict:
    """The Khronos validator's issues for one GLB: numErrors, numWarnings, ..., messages."""
    if shutil.which("node") is None:
        pytest.skip("`node` is not on PATH; the glTF validator needs Node.js 20")
    if not (INTEROP / "node_modules" / "gltf-validator").is_dir():
        pytest.skip("tests/interop/node_modules is missing: run ./scripts/setup.sh")
    result = subprocess.run(["node", str(INTEROP / "validate_gltf.mjs"), str(glb)], capture_output=True, text=True,
                            timeout=120, check=True)
    return json.loads(result.stdout)


def usd_errors(stage: Usd.Stage) -> list[str]:
    """Every validator registered with usd-core, run on the stage; the messages of its errors."""
    registry = UsdValidation.ValidationRegistry()
    validators = registry.GetOrLoadValidatorsByName([meta.name for meta in registry.GetAllValidatorMetadata()])
    assert validators, "usd-core registered no validators"
    found = UsdValidation.ValidationContext(validators).Validate(stage)
    return [f"{error.GetName()}: {error.GetMessage()}" for error in found
            if error.GetType() == UsdValidation.ValidationErrorType.Error]


@pytest.fixture(scope="module")
def panda_layout(tmp_path_factory) -> Path:
    """A layout holding a third-party robot: pybullet_data's Franka Panda (meshes with degenerate triangles)."""
    import pybullet_data

    franka = Path(pybullet_data.getDataPath()) / "franka_panda"
    path = tmp_path_factory.mktemp("panda") / "panda.usda"
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/Factory").GetPrim())
    add_robot(stage, "/Factory/Panda", franka / "panda.urdf", (1.0, 2.0, 0.5),
              package_dirs={"meshes": franka / "meshes"})
    stage.Save()
    return path


# --------------------------------------------------------------------------- glTF
def test_sample_factory_glb_is_valid_gltf(sample_layout):
    issues = gltf_issues(sample_layout.with_suffix(".glb"))
    assert issues["numErrors"] == 0, issues["messages"][:10]


def test_third_party_robot_glb_is_valid_gltf(panda_layout, tmp_path):
    glb = export_glb(panda_layout, tmp_path / "panda.glb")
    issues = gltf_issues(glb)
    assert issues["numErrors"] == 0, issues["messages"][:10]
    normals = np.concatenate([mesh.vertex_normals for mesh in trimesh.load(glb).geometry.values()])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)


def test_glb_is_y_up_in_metres(panda_layout, tmp_path):
    """The stage's Z-up world lands on glTF's +Y; nodes below the top one keep the stage's local transforms."""
    stage = Usd.Stage.Open(str(panda_layout))
    scene = trimesh.load(export_glb(stage, tmp_path / "panda.glb"))
    assert scene.graph.transforms.parents["/Factory"] == STAGE_FRAME
    link = "/Factory/Panda/panda_link7"
    world, _ = scene.graph.get(link)
    usd_world = usd_to_numpy(UsdGeom.Xformable(stage.GetPrimAtPath(link)).ComputeLocalToWorldTransform(
        Usd.TimeCode.Default()))
    np.testing.assert_allclose(world, Z_UP_TO_Y_UP @ usd_world, atol=1e-6)
    assert world[1, 3] > 0.5, "the robot's height is glTF's +Y"


def test_stage_frame_follows_up_axis_and_units():
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, UsdGeom.LinearUnits.centimeters)
    np.testing.assert_allclose(stage_to_gltf(stage), np.diag([0.01, 0.01, 0.01, 1.0]))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    np.testing.assert_allclose(stage_to_gltf(stage) @ [0, 0, 100, 1], [0, 1, 0, 1], atol=1e-12)


# --------------------------------------------------------------------------- USD
def test_layouts_pass_usd_validation(sample_layout, panda_layout):
    for layout in (sample_layout, panda_layout):
        assert usd_errors(Usd.Stage.Open(str(layout))) == [], layout.name


def test_robot_root_is_fixed_to_the_world(panda_layout):
    """usd-core's articulation parser roots the Panda at its anchor, a fixed joint from the world to panda_link0."""
    stage = Usd.Stage.Open(str(panda_layout))
    anchor = UsdPhysics.FixedJoint(stage.GetPrimAtPath(f"/Factory/Panda/joints/{ANCHOR_JOINT}"))
    assert anchor and anchor.GetBody0Rel().GetTargets() == []
    assert anchor.GetBody1Rel().GetTargets() == [Sdf.Path("/Factory/Panda/panda_link0")]
    link_world = usd_to_numpy(UsdGeom.Xformable(stage.GetPrimAtPath("/Factory/Panda/panda_link0"))
                              .ComputeLocalToWorldTransform(Usd.TimeCode.Default()))
    np.testing.assert_allclose(anchor.GetLocalPos0Attr().Get(), link_world[:3, 3], atol=1e-6)
    parsed = UsdPhysics.UsdPhysicsLoadStageFromPrimRange(stage, [Sdf.Path("/")])
    paths, descriptions = parsed[UsdPhysics.ObjectType.Articulation]
    assert [str(path) for path in paths] == ["/Factory/Panda"]
    assert [str(root) for root in descriptions[0].rootPrims] == [str(anchor.GetPath())]


def test_snapshot_opens_on_its_own_from_another_folder_and_validates(sample_layout, tmp_path):
    site = tmp_path / "site"
    (site / "snapshots").mkdir(parents=True)
    shutil.copy(sample_layout, site / "factory.usda")
    twin_stage = TwinStage(site / "factory.usda")
    cache = RuntimeCache()
    row = cache.add_signal("/Factory/Line/Conveyor1", "twin:speed")
    cache.write_signal(row, 0.25)
    LiveLayerWriter(twin_stage, cache).flush()
    twin_stage.save_snapshot(site / "snapshots" / "state.usda")
    moved = shutil.move(site, tmp_path / "elsewhere")  # the pair moves together; the layout path is relative
    snapshot = Sdf.Layer.FindOrOpen(str(Path(moved) / "snapshots" / "state.usda"))
    assert snapshot.subLayerPaths[0] == "../factory.usda"
    stage = Usd.Stage.Open(snapshot)
    assert stage.GetPrimAtPath("/Factory/Line/Conveyor1").GetAttribute("twin:speed").Get() == 0.25
    assert stage.GetRootLayer().defaultPrim == "Factory"
    assert stage.GetRootLayer().pseudoRoot.GetInfo("upAxis") == UsdGeom.Tokens.z
    assert stage.GetRootLayer().pseudoRoot.GetInfo("metersPerUnit") == 1.0
    assert usd_errors(stage) == []


def test_served_snapshot_names_the_layout_absolutely_and_validates(sample_layout, tmp_path):
    """GET /api/snapshot.usda text, saved anywhere on the machine, still finds the layout."""
    text = TwinStage(sample_layout).snapshot_layer().ExportToString()
    saved = tmp_path / "downloads" / "state.usda"
    saved.parent.mkdir()
    saved.write_text(text)
    stage = Usd.Stage.Open(str(saved))
    assert stage.GetPrimAtPath("/Factory/Line/Conveyor1").GetAttribute("twin:length")
    assert usd_errors(stage) == []
