"""The built sample factory: every element of layout.py is there with the documented attributes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from pxr import Usd, UsdGeom, UsdPhysics

from twin.core.stage import usd_to_numpy
from twin.kinematics.chain import Chain
from twin.sample_factory import layout
from twin.sample_factory.scene import build_sample_factory


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("factory")
    path = build_sample_factory(out)
    return path, Usd.Stage.Open(str(path))


def _of_kind(stage: Usd.Stage, kind: str) -> list[Usd.Prim]:
    return [p for p in stage.Traverse() if p.GetAttribute("twin:kind").Get() == kind]


def _world(prim: Usd.Prim) -> np.ndarray:
    return usd_to_numpy(UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(Usd.TimeCode.Default()))


def test_files_and_stage_settings(built):
    path, stage = built
    assert path.name == "factory.usda" and path.is_file()
    assert (path.parent / "factory.glb").is_file()
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert str(stage.GetDefaultPrim().GetPath()) == "/Factory"


def test_every_element_of_the_layout(built):
    _, stage = built
    assert len(_of_kind(stage, "robot")) >= 2
    assert len(_of_kind(stage, "conveyor")) == len(layout.CONVEYORS) == 4
    assert len(_of_kind(stage, "station")) == len(layout.STATIONS) == 3
    assert len(_of_kind(stage, "sensor")) == len(layout.SENSORS)
    assert [str(p.GetPath()) for p in _of_kind(stage, "source")] == [f"{layout.LINE}/Source"]
    assert [str(p.GetPath()) for p in _of_kind(stage, "sink")] == [f"{layout.LINE}/Sink"]
    assert np.allclose(_world(stage.GetPrimAtPath(f"{layout.LINE}/Sink"))[:2, 3], layout.SINK)

    for spec in layout.CONVEYORS:
        prim = stage.GetPrimAtPath(spec.path)
        assert prim.GetAttribute("twin:kind").Get() == "conveyor"
        assert prim.GetAttribute("twin:length").Get() == pytest.approx(spec.length)
        assert prim.GetAttribute("twin:width").Get() == pytest.approx(spec.width)
        assert prim.GetAttribute("twin:beltHeight").Get() == pytest.approx(layout.BELT_HEIGHT)
        assert prim.GetAttribute("twin:capacity").Get() == spec.capacity
        assert np.allclose(_world(prim)[:2, 3], spec.start)
        assert any(child.IsA(UsdGeom.Mesh) for child in prim.GetChildren())

    for spec in layout.STATIONS:
        prim = stage.GetPrimAtPath(spec.path)
        assert prim.GetAttribute("twin:title").Get() == spec.title
        assert prim.GetAttribute("twin:cycleTime").Get() == pytest.approx(spec.cycle_time)
        assert prim.GetAttribute("twin:tableHeight").Get() == pytest.approx(layout.TABLE_HEIGHT)
        assert np.allclose(_world(prim)[:2, 3], spec.center)

    for spec in layout.SENSORS:
        prim = stage.GetPrimAtPath(spec.path)
        assert prim.GetAttribute("twin:sensorType").Get() == spec.sensor_type
        assert prim.GetAttribute("twin:signal").Get() == spec.attr
        assert np.allclose(_world(prim)[:3, 3], _world(prim.GetParent())[:3, :3] @ spec.offset
                           + _world(prim.GetParent())[:3, 3])

    for spec in layout.ROBOTS:
        prim = stage.GetPrimAtPath(spec.path)
        assert prim.HasAPI(UsdPhysics.ArticulationRootAPI)
        assert prim.GetAttribute("twin:urdf").Get().endswith(spec.urdf.split("/")[-1])
        assert len(prim.GetAttribute("twin:jointNames").Get()) == 6


@pytest.mark.parametrize("robot", layout.ROBOTS, ids=lambda spec: spec.name)
def test_robots_reach_their_targets(built, robot):
    _, stage = built
    chain = Chain.from_usd(stage, robot.path)
    base = _world(stage.GetPrimAtPath(robot.path))
    tool = chain.link_index("tool0")
    for pose in ("pick", "place"):
        world = chain.fk(np.array(robot.poses[pose]), base=base)[0, tool]
        assert np.linalg.norm(world[:3, 3] - layout.ROBOT_TARGETS[robot.name][pose]) < 0.02, pose
        assert world[:3, 2] @ [0.0, 0.0, -1.0] > 0.95, f"{pose}: tool0 should point down"


def test_glb_mirrors_the_stage(built):
    path, stage = built
    scene = trimesh.load(path.parent / "factory.glb")
    meshes = {str(p.GetPath()) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)}
    assert set(scene.geometry) == meshes
    assert f"{layout.ROBOTS[0].path}/link_2" in scene.graph.nodes
    assert scene.graph.transforms.parents[f"{layout.ROBOTS[0].path}/link_2"] == layout.ROBOTS[0].path
