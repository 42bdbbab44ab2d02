"""Scene builders: USD conventions, robots as UsdPhysics articulations, GLB export, errors."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import trimesh
from pxr import Usd, UsdGeom, UsdPhysics

from twin.core.errors import LayoutError, UrdfError
from twin.core.stage import usd_to_numpy
from twin.kinematics.chain import Chain
from twin.kinematics.urdf import load_urdf, rtb_urdf
from twin.kinematics.usd import link_prim_paths, read_articulation
from twin.scenes import (
    add_conveyor,
    add_machine,
    add_robot,
    add_sensor,
    add_sink,
    add_source,
    add_table,
    export_glb,
    new_layout,
    open_layout,
)
from twin.scenes.gltf import STAGE_FRAME, stage_to_gltf
from twin.scenes.meshes import pose
from twin.scenes.robot import axis_alignment

ROBOTS = {
    "kr16": "kuka_description/kuka_kr16/urdf/kr16_2.urdf",
    "kr120": "kuka_description/kuka_kr120/urdf/kr120r2500pro.urdf",
    "iiwa": "kuka_description/kuka_lbr_iiwa/urdf/lbr_iiwa_14_r820.urdf",
    "puma560": "unimation_puma560_description/urdf/puma560_robot.urdf",
}

# Exercises what the rtb-data robots do not: prismatic, continuous and mimic joints, a tilted axis,
# primitive visuals, and names that are not valid USD identifiers.
TEST_URDF = """<?xml version="1.0"?>
<robot name="gantry-1">
  <material name="blue"><color rgba="0 0 1 1"/></material>
  <link name="world frame"><visual><geometry><box size="1 1 0.1"/></geometry></visual></link>
  <link name="carriage"><visual><origin xyz="0 0 0.1" rpy="0.1 0.2 0.3"/>
    <geometry><cylinder radius="0.1" length="0.3"/></geometry><material name="blue"/></visual></link>
  <link name="spindle"><visual><geometry><sphere radius="0.05"/></geometry></visual></link>
  <link name="finger-a"/>
  <link name="finger_a"/>
  <joint name="slide x" type="prismatic"><parent link="world frame"/><child link="carriage"/>
    <origin xyz="0.1 0.2 0.3" rpy="0 0 1.2"/><axis xyz="1 0 0"/>
    <limit lower="-0.5" upper="1.5" velocity="0.7" effort="10"/></joint>
  <joint name="spin" type="continuous"><parent link="carriage"/><child link="spindle"/>
    <origin xyz="0 0 0.4" rpy="0.3 -0.2 0.1"/><axis xyz="0.3 -0.5 0.8"/><limit velocity="3" effort="1"/></joint>
  <joint name="grip" type="revolute"><parent link="spindle"/><child link="finger-a"/>
    <origin xyz="0.05 0 0"/><axis xyz="0 0 -1"/><limit lower="-0.2" upper="0.4" velocity="1" effort="1"/></joint>
  <joint name="grip_mimic" type="revolute"><parent link="spindle"/><child link="finger_a"/>
    <origin xyz="-0.05 0 0"/><axis xyz="0 -1 0"/><limit lower="-0.4" upper="0.2" velocity="1" effort="1"/>
    <mimic joint="grip" multiplier="-1" offset="0.1"/></joint>
</robot>
"""


def _stage(tmp_path, name: str = "scene.usda") -> Usd.Stage:
    return new_layout(tmp_path / name)


def _local(prim: Usd.Prim) -> np.ndarray:
    return usd_to_numpy(UsdGeom.Xformable(prim).GetLocalTransformation(Usd.TimeCode.Default()))


def _kind(stage: Usd.Stage, path: str) -> str:
    return stage.GetPrimAtPath(path).GetAttribute("twin:kind").Get()


def _assert_triangle_meshes(prim: Usd.Prim) -> None:
    meshes = [p for p in Usd.PrimRange(prim) if p.IsA(UsdGeom.Mesh)]
    assert meshes, f"{prim.GetPath()} has no geometry"
    for mesh_prim in meshes:
        mesh = UsdGeom.Mesh(mesh_prim)
        assert set(mesh.GetFaceVertexCountsAttr().Get()) == {3}
        assert len(mesh.GetDisplayColorPrimvar().Get()) >= 1


# --------------------------------------------------------------------------- layout and builders
def test_new_layout_follows_the_conventions(tmp_path):
    stage = _stage(tmp_path)
    stage.GetRootLayer().Save()
    reopened = open_layout(tmp_path / "scene.usda")
    assert UsdGeom.GetStageUpAxis(reopened) == UsdGeom.Tokens.z
    assert UsdGeom.GetStageMetersPerUnit(reopened) == 1.0
    assert reopened.GetDefaultPrim().GetPath() == "/Factory"
    assert reopened.GetDefaultPrim().IsA(UsdGeom.Xform)
    again = new_layout(tmp_path / "scene.usda")  # rebuilding an open file starts it over
    assert again.GetDefaultPrim().GetPath() == "/Factory" and not again.GetPrimAtPath("/Factory").GetChildren()


def test_builders_author_the_documented_attributes(tmp_path):
    stage = _stage(tmp_path)
    conveyor = add_conveyor(stage, "/Factory/C", pose(1.0, 2.0, yaw=0.5), length=3.0, width=0.5,
                            belt_height=0.75, capacity=6, speed=0.3)
    assert _kind(stage, "/Factory/C") == "conveyor"
    assert conveyor.GetAttribute("twin:length").Get() == 3.0
    assert conveyor.GetAttribute("twin:width").Get() == 0.5
    assert conveyor.GetAttribute("twin:beltHeight").Get() == 0.75
    assert conveyor.GetAttribute("twin:capacity").Get() == 6
    assert conveyor.GetAttribute("twin:speed").Get() == 0.3
    assert np.allclose(_local(conveyor), pose(1.0, 2.0, yaw=0.5))
    belt = UsdGeom.Mesh(stage.GetPrimAtPath("/Factory/C/Belt"))
    top = np.asarray(belt.GetPointsAttr().Get())[:, 2].max()
    assert top == pytest.approx(0.75, abs=1e-6), "the belt top is at twin:beltHeight"

    machine = add_machine(stage, "/Factory/M", pose(5.0, 0.0), title="CNC", size=(1.4, 1.4, 2.0), cycle_time=7.5,
                          table_height=0.8, color=(0.1, 0.3, 0.6))
    table = add_table(stage, "/Factory/T", pose(8.0, 0.0), title="Table", size=(0.9, 0.9, 0.8), cycle_time=6.0,
                      table_height=0.8)
    for station in (machine, table):
        assert station.GetAttribute("twin:kind").Get() == "station"
        assert station.GetAttribute("twin:tableHeight").Get() == 0.8
    assert machine.GetAttribute("twin:title").Get() == "CNC"
    assert table.GetAttribute("twin:cycleTime").Get() == 6.0
    table_top = np.asarray(UsdGeom.Mesh(stage.GetPrimAtPath("/Factory/T/Top")).GetPointsAttr().Get())[:, 2].max()
    assert table_top == pytest.approx(0.8, abs=1e-6)
    add_source(stage, "/Factory/Src", pose(-1.0, 0.0), height=0.75)
    add_sink(stage, "/Factory/Snk", pose(10.0, 0.0), height=0.75)
    assert (_kind(stage, "/Factory/Src"), _kind(stage, "/Factory/Snk")) == ("source", "sink")

    for sensor_type in ("photoEye", "temperature", "motorCurrent"):
        sensor = add_sensor(stage, f"/Factory/C/{sensor_type}", (2.9, -0.35, 0.85), sensor_type=sensor_type,
                            signal="twin:value", unit="A")
        assert sensor.GetAttribute("twin:kind").Get() == "sensor"
        assert sensor.GetAttribute("twin:sensorType").Get() == sensor_type
        assert sensor.GetAttribute("twin:unit").Get() == "A"
        assert np.allclose(_local(sensor)[:3, 3], (2.9, -0.35, 0.85))
    with pytest.raises(ValueError, match="lidar"):
        add_sensor(stage, "/Factory/C/X", (0, 0, 0), sensor_type="lidar")
    for path in ("/Factory/C", "/Factory/M", "/Factory/T", "/Factory/Src", "/Factory/Snk", "/Factory/C/photoEye"):
        _assert_triangle_meshes(stage.GetPrimAtPath(path))


# --------------------------------------------------------------------------- robots
@pytest.fixture(scope="module")
def robot_stages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("robots")
    stages = {}
    for key, relative in ROBOTS.items():
        stage = new_layout(folder / f"{key}.usda")
        add_robot(stage, "/Factory/Robot", rtb_urdf(relative), (1.0, -2.0, 0.7))
        stages[key] = stage
    return stages


@pytest.mark.parametrize("key", ROBOTS)
def test_robot_round_trips_through_usd(robot_stages, key):
    stage = robot_stages[key]
    expected = Chain.from_urdf(rtb_urdf(ROBOTS[key]))
    chain = Chain.from_usd(stage, "/Factory/Robot")
    assert chain.name == expected.name
    assert chain.link_names == expected.link_names
    assert chain.joint_names == expected.joint_names
    assert np.allclose(chain.lower, expected.lower, atol=1e-6)
    assert np.allclose(chain.upper, expected.upper, atol=1e-6)
    assert np.allclose(chain.velocity_limit, expected.velocity_limit, atol=1e-6)
    q = np.random.default_rng(7).uniform(expected.lower, expected.upper, (32, expected.n_joints))
    np.testing.assert_allclose(chain.fk(q), expected.fk(q), atol=1e-6)


@pytest.mark.parametrize("key", ROBOTS)
def test_robot_prims_follow_the_conventions(robot_stages, key):
    stage = robot_stages[key]
    description = load_urdf(rtb_urdf(ROBOTS[key]))
    chain = Chain.from_description(description)
    robot = stage.GetPrimAtPath("/Factory/Robot")
    assert robot.HasAPI(UsdPhysics.ArticulationRootAPI)
    assert robot.GetAttribute("twin:kind").Get() == "robot"
    assert robot.GetAttribute("twin:urdf").Get() == str(rtb_urdf(ROBOTS[key]).resolve())
    assert tuple(robot.GetAttribute("twin:jointNames").Get()) == chain.joint_names
    assert np.allclose(_local(robot), pose(1.0, -2.0, yaw=0.7))

    links = link_prim_paths(stage, "/Factory/Robot")
    assert set(links) == set(chain.link_names)
    rest = chain.fk(np.zeros(chain.n_joints))[0]
    for index, name in enumerate(chain.link_names):
        link = stage.GetPrimAtPath(links[name])
        assert link.GetParent() == robot, "links are flat children of the robot"
        assert link.GetAttribute("twin:kind").Get() == "link"
        assert link.HasAPI(UsdPhysics.RigidBodyAPI)
        assert UsdGeom.Xformable(link).GetXformOpOrderAttr().Get() == ["xformOp:transform"]
        assert np.allclose(_local(link), rest[index], atol=1e-6)
        visuals = description.link(name).visuals
        for number, visual in enumerate(visuals):
            mesh = stage.GetPrimAtPath(f"{links[name]}/visual_{number}")
            assert mesh.IsA(UsdGeom.Mesh)
            assert np.allclose(_local(mesh), visual.origin)
            assert len(UsdGeom.Mesh(mesh).GetFaceVertexCountsAttr().Get()) > 10
            assert UsdGeom.Mesh(mesh).GetDisplayColorPrimvar().Get()

    for joint in description.joints:
        prim = stage.GetPrimAtPath(f"/Factory/Robot/joints/{joint.name.replace('-', '_')}")
        assert prim.GetAttribute("twin:name").Get() == joint.name
        physics = UsdPhysics.Joint(prim)
        assert physics.GetBody0Rel().GetTargets() == [links[joint.parent]]
        assert physics.GetBody1Rel().GetTargets() == [links[joint.child]]
        if joint.type == "fixed":
            assert prim.IsA(UsdPhysics.FixedJoint)
            continue
        revolute = UsdPhysics.RevoluteJoint(prim)
        assert prim.IsA(UsdPhysics.RevoluteJoint)
        assert revolute.GetLowerLimitAttr().Get() == pytest.approx(math.degrees(joint.lower), abs=1e-4)
        assert revolute.GetUpperLimitAttr().Get() == pytest.approx(math.degrees(joint.upper), abs=1e-4)
        token = revolute.GetAxisAttr().Get()
        assert abs(joint.axis["XYZ".index(token)]) == pytest.approx(1.0)


def test_robot_colours_come_from_the_mesh_files(robot_stages):
    stage = robot_stages["kr16"]
    motors_and_body = UsdGeom.Mesh(stage.GetPrimAtPath("/Factory/Robot/link_1/visual_0")).GetDisplayColorPrimvar()
    assert motors_and_body.GetInterpolation() == UsdGeom.Tokens.vertex
    assert len({tuple(c) for c in motors_and_body.Get()}) == 2
    puma = UsdGeom.Mesh(robot_stages["puma560"].GetPrimAtPath("/Factory/Robot/link2/visual_0"))
    assert np.allclose(puma.GetDisplayColorPrimvar().Get()[0], (0.8, 0.0, 0.0)), "URDF material colour"


def test_unusual_joints_and_names_round_trip(tmp_path):
    urdf = tmp_path / "gantry.urdf"
    urdf.write_text(TEST_URDF)
    description = load_urdf(urdf)
    stage = _stage(tmp_path)
    add_robot(stage, "/Factory/Gantry", urdf, np.eye(4))
    name, root, joints = read_articulation(stage, "/Factory/Gantry")
    assert (name, root) == ("gantry-1", "world frame")
    assert [j["name"] for j in joints] == [j.name for j in description.joints]
    for read, joint in zip(joints, description.joints, strict=True):
        assert read["type"] == joint.type
        assert (read["parent"], read["child"]) == (joint.parent, joint.child)
        np.testing.assert_allclose(read["origin"], joint.origin, atol=1e-6)
        np.testing.assert_allclose(read["axis"], joint.axis, atol=1e-6)
        assert read["lower"] == pytest.approx(joint.lower, abs=1e-6)
        assert read["upper"] == pytest.approx(joint.upper, abs=1e-6)
        assert read["velocity"] == pytest.approx(joint.velocity)
        assert read["mimic_joint"] == (joint.mimic.joint if joint.mimic else None)
    assert (joints[3]["mimic_multiplier"], joints[3]["mimic_offset"]) == (-1.0, pytest.approx(0.1))
    assert stage.GetPrimAtPath("/Factory/Gantry/joints/spin").IsA(UsdPhysics.RevoluteJoint)
    assert stage.GetPrimAtPath("/Factory/Gantry/joints/slide_x").IsA(UsdPhysics.PrismaticJoint)
    assert set(link_prim_paths(stage, "/Factory/Gantry").values()) == {
        "/Factory/Gantry/world_frame", "/Factory/Gantry/carriage", "/Factory/Gantry/spindle",
        "/Factory/Gantry/finger_a", "/Factory/Gantry/finger_a_1",
    }
    expected, chain = Chain.from_description(description), Chain.from_usd(stage, "/Factory/Gantry")
    q = np.random.default_rng(1).uniform(-0.2, 0.4, (8, expected.n_joints))
    np.testing.assert_allclose(chain.fk(q), expected.fk(q), atol=1e-6)
    carriage = UsdGeom.Mesh(stage.GetPrimAtPath("/Factory/Gantry/carriage/visual_0"))
    assert np.allclose(carriage.GetDisplayColorPrimvar().Get()[0], (0.0, 0.0, 1.0))


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, -1, 0), (0, 0, -1), (0.3, -0.5, 0.8), (-0.9, 0.1, 0.1)])
def test_axis_alignment_turns_the_token_onto_the_axis(axis):
    axis = np.array(axis, float) / np.linalg.norm(axis)
    token, align = axis_alignment(axis)
    np.testing.assert_allclose(align @ np.eye(3)["XYZ".index(token)], axis, atol=1e-12)
    np.testing.assert_allclose(align @ align.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(align) == pytest.approx(1.0)


# --------------------------------------------------------------------------- GLB
def test_glb_nodes_are_prim_paths_with_local_transforms(tmp_path, robot_stages):
    stage = _stage(tmp_path)
    add_conveyor(stage, "/Factory/Line/C", pose(1.0, 0.0, yaw=0.3), length=2.0, width=0.5, belt_height=0.75,
                 capacity=4)
    add_robot(stage, "/Factory/Line/R", rtb_urdf(ROBOTS["kr16"]), (3.0, 1.0, 1.0))
    cube = UsdGeom.Cube.Define(stage, "/Factory/Line/Marker")
    cube.CreateDisplayColorPrimvar().Set([(1.0, 0.0, 0.0)])
    out = export_glb(stage, tmp_path / "out" / "scene.glb")

    scene = trimesh.load(out)
    shown = [p for p in stage.Traverse()  # invisible prims (physics collision boxes) are never exported
             if p.IsA(UsdGeom.Xformable) and UsdGeom.Imageable(p).ComputeVisibility() != UsdGeom.Tokens.invisible]
    xformables = {str(p.GetPath()) for p in shown}
    gprims = {str(p.GetPath()) for p in shown if p.IsA(UsdGeom.Gprim)}
    assert set(scene.graph.nodes) - {scene.graph.base_frame, STAGE_FRAME} == xformables
    assert set(scene.geometry) == gprims
    parents = scene.graph.transforms.parents
    assert parents["/Factory/Line/R/link_2"] == "/Factory/Line/R", "hierarchy mirrors the prims"
    assert parents["/Factory/Line/R/link_2/visual_0"] == "/Factory/Line/R/link_2"
    assert "/Factory/Line/R/joints" not in scene.graph.nodes
    for path in ("/Factory/Line/R", "/Factory/Line/R/link_3", "/Factory/Line/C"):
        local, _ = scene.graph.get(path, parents[path])
        np.testing.assert_allclose(local, _local(stage.GetPrimAtPath(path)), atol=1e-6)
    world, _ = scene.graph.get("/Factory/Line/R/link_6")
    expected = usd_to_numpy(UsdGeom.Xformable(stage.GetPrimAtPath("/Factory/Line/R/link_6"))
                            .ComputeLocalToWorldTransform(Usd.TimeCode.Default()))
    np.testing.assert_allclose(world, stage_to_gltf(stage) @ expected, atol=1e-6)  # glTF is Y-up

    belt = scene.geometry["/Factory/Line/C/Belt"]
    assert np.allclose(belt.visual.material.baseColorFactor[:3] / 255.0,
                       UsdGeom.Mesh(stage.GetPrimAtPath("/Factory/Line/C/Belt")).GetDisplayColorPrimvar().Get()[0],
                       atol=0.01)
    usd_link = UsdGeom.Mesh(stage.GetPrimAtPath("/Factory/Line/R/link_1/visual_0"))
    assert len(scene.geometry["/Factory/Line/R/link_1/visual_0"].faces) == len(usd_link.GetFaceVertexCountsAttr().Get())
    assert scene.geometry["/Factory/Line/R/link_1/visual_0"].visual.vertex_attributes["color"].shape[1] == 4
    assert len(scene.geometry["/Factory/Line/Marker"].faces) == 12


def test_glb_from_a_layout_file(tmp_path):
    stage = _stage(tmp_path)
    add_table(stage, "/Factory/T", pose(0.0, 0.0), title="T", size=(1, 1, 0.8), cycle_time=1.0, table_height=0.8)
    stage.GetRootLayer().Save()
    scene = trimesh.load(export_glb(tmp_path / "scene.usda", tmp_path / "scene.glb"))
    assert set(scene.geometry) == {"/Factory/T/Top", "/Factory/T/Legs"}


# --------------------------------------------------------------------------- errors
def test_missing_mesh_is_a_urdf_error_naming_file_and_mesh(tmp_path):
    source = rtb_urdf(ROBOTS["puma560"])
    folder = tmp_path / "puma"
    shutil.copytree(source.parents[1], folder)
    (folder / "meshes" / "puma_link3.stl").unlink()
    urdf = folder / "urdf" / source.name
    with pytest.raises(UrdfError) as error:
        add_robot(_stage(tmp_path), "/Factory/Puma", urdf, np.eye(4))
    assert str(urdf) in str(error.value)
    assert "puma_link3.stl" in str(error.value)


def test_unreadable_mesh_is_a_urdf_error(tmp_path):
    (tmp_path / "broken.stl").write_text("solid nothing\nthis is not an STL\n")
    urdf = tmp_path / "one.urdf"
    urdf.write_text('<robot name="one"><link name="base"><visual><geometry><mesh filename="broken.stl"/>'
                    "</geometry></visual></link></robot>")
    with pytest.raises(UrdfError, match=r"one\.urdf.*broken\.stl"):
        add_robot(_stage(tmp_path), "/Factory/One", urdf, np.eye(4))


def test_malformed_layout_is_a_layout_error_naming_the_file(tmp_path):
    broken = tmp_path / "broken.usda"
    broken.write_text('#usda 1.0\n(\n    defaultPrim = "Factory"\n)\n\ndef Xform "Factory" {\n    double x = \n')
    with pytest.raises(LayoutError) as error:
        open_layout(broken)
    assert str(broken) in str(error.value)
    with pytest.raises(LayoutError, match="broken.usda"):
        export_glb(broken, tmp_path / "broken.glb")
    with pytest.raises(LayoutError, match="not found"):
        open_layout(tmp_path / "missing.usda")


def _robot_file(tmp_path) -> tuple[Usd.Stage, str]:
    stage = _stage(tmp_path, "robot.usda")
    add_robot(stage, "/Factory/R", rtb_urdf(ROBOTS["puma560"]), np.eye(4))
    stage.GetRootLayer().Save()
    return stage, str(tmp_path / "robot.usda")


def test_read_articulation_errors_name_the_file_and_prim(tmp_path):
    stage, file = _robot_file(tmp_path)
    with pytest.raises(LayoutError, match=f"{file}.*/Factory/Nope"):
        read_articulation(stage, "/Factory/Nope")
    UsdGeom.Xform.Define(stage, "/Factory/Plain")
    with pytest.raises(LayoutError, match=f"{file}.*/Factory/Plain is not a robot"):
        read_articulation(stage, "/Factory/Plain")

    joint = UsdPhysics.Joint(stage.GetPrimAtPath("/Factory/R/joints/j3"))
    before = Chain.from_usd(stage, "/Factory/R")
    joint.GetLocalPos1Attr().Set((0.0, 0.1, 0.0))  # a joint frame off the child's origin is read, not refused
    after = Chain.from_usd(stage, "/Factory/R")
    child = stage.GetPrimAtPath(joint.GetBody1Rel().GetTargets()[0]).GetAttribute("twin:name").Get()
    shift = after.fk(np.zeros(6))[0, after.link_index(child)] - before.fk(np.zeros(6))[0, before.link_index(child)]
    assert np.linalg.norm(shift[:3, 3]) == pytest.approx(0.1, abs=1e-6)
    joint.GetLocalPos1Attr().Set((0.0, 0.0, 0.0))
    joint.GetBody1Rel().ClearTargets(True)
    with pytest.raises(LayoutError, match=f"{file}.*/Factory/R/joints/j3: physics:body1"):
        read_articulation(stage, "/Factory/R")
