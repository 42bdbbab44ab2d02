"""Plant files (scenes/plant_schema.py, scenes/plant.py) and `twin layout check` (twin/line/check.py).

The tutorial (tests/test_tutorial.py) builds and serves a plant with a KUKA iiwa; these check the errors, a
line with every kind of element, robots without poses and from xacro with arguments, and the check's report.
"""

import shutil
from pathlib import Path

import numpy as np
import pybullet_data
import pytest
from pxr import Usd

from twin.cli import main
from twin.kinematics.chain import Chain
from twin.kinematics.urdf import rtb_urdf
from twin.line.check import check_layout
from twin.line.model import read_line
from twin.scenes.plant import build_plant
from twin.scenes.plant_schema import PlantError
from twin.sim.runtime import Twin

TWO_JOINTS = Path(pybullet_data.getDataPath()) / "TwoJointRobot_wo_fixedJoints.urdf"  # no meshes: quick
LINE = """\
sources:
  - {name: Source, at: [-0.7, 0], interarrival: 10, next: [Belt]}
conveyors:
  - {name: Belt, at: [0, 0], length: 3, speed: 0.4, capacity: 5, next: [Split]}
buffers:
  - {name: Split, at: [3.6, 0], capacity: 3, next: [MillA, MillB], routing: round_robin}
stations:
  - {name: MillA, at: [5, 1], cycle_time: 15, scrap_rate: 0.02, setup_time: 30, setup_every: 20, next: [Arm]}
  - {name: MillB, at: [5, -1], yaw: 180, cycle_time: 15, distribution: lognormal, spread: 0.2, next: [Arm]}
robots:
  - {name: Arm, urdf: two_joints.urdf, at: [6.5, 0], pick_time: 3, place_time: 2.5, next: [Sink]}
sinks:
  - {name: Sink, at: [8, 0]}
sensors:
  - {name: Eye, mounted_on: Belt, type: photoEye, at: [2.8, -0.35, 0.85], signal: twin:occupied}
"""


def _plant(folder: Path, text: str = LINE) -> Path:
    shutil.copy(TWO_JOINTS, folder / "two_joints.urdf")
    path = folder / "plant.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("change", "message"), [
    (("speed: 0.4", "speed: -1"), r"plant.yaml:4: conveyors\[0\] \(Belt\): speed must be > 0, got -1"),
    (("capacity: 3,", "capacity: 3, colour: red,"), r"plant.yaml:6: buffers\[0\] \(Split\): unknown key 'colour'"),
    (("next: [Sink]", "next: [Snik]"), r"plant.yaml:11: robots\[0\] \(Arm\): next names 'Snik', which is no element"),
    (("name: MillB", "name: MillA"), r"plant.yaml:9: stations\[1\] \(MillA\): 'MillA' is already the name of "
                                     r"stations\[0\]"),
    (("mounted_on: Belt", "mounted_on: Bealt"), r"plant.yaml:15: sensors\[0\] \(Eye\): sensor 'Eye' is mounted on "
                                                 r"'Bealt', which is no element"),
    (("routing: round_robin", "routing: random"), r"plant.yaml:6: buffers\[0\] \(Split\): routing must be one of "
                                                   r"first_free or round_robin, got 'random'"),
    (("pick_time: 3, ", ""), r"plant.yaml:11: robots\[0\] \(Arm\): a robot needs taught poses .* or pick_time"),
    (("sinks:\n  - {name: Sink, at: [8, 0]}", "sinks: []"), r"plant.yaml:12: the plant needs at least one entry in "
                                                             r"'sinks'"),
    (("at: [8, 0]", "at: [8, 0"), r"plant.yaml:13: not valid YAML"),
    (("sources:", "source:"), r"plant.yaml:1: unknown section 'source'"),
    # YAML would keep the second speed and drop the first without a word
    (("speed: 0.4,", "speed: 0.4, speed: 0.5,"), r"plant.yaml:4: conveyors\[0\] \(Belt\): key 'speed' appears twice"),
    (("sinks:\n", "conveyors: []\nsinks:\n"), r"plant.yaml:12: key 'conveyors' appears twice"),
])
def test_plant_errors_name_the_line_and_the_field(tmp_path, change, message):
    old, new = change
    assert old in LINE
    with pytest.raises(PlantError, match=message):
        build_plant(_plant(tmp_path, LINE.replace(old, new)))


def test_robot_errors_name_the_robot(tmp_path):
    route = "route: [home, grip, home, release], poses: {home: [0, 0, 0]}, next: [Sink]"
    with pytest.raises(PlantError, match=r"plant.yaml:11: robots\[0\] \(Arm\): pose 'home' has 3 values, but "
                                         r"two_joints.urdf has 2 joints"):
        build_plant(_plant(tmp_path, LINE.replace("pick_time: 3, place_time: 2.5, next: [Sink]", route)))
    with pytest.raises(PlantError, match=r"plant.yaml:11: robots\[0\] \(Arm\): route names pose 'away', which "
                                         r"poses does not teach \(taught: home\)"):
        build_plant(_plant(tmp_path, LINE.replace("pick_time: 3, place_time: 2.5, next: [Sink]",
                                                  route.replace("release", "away, release"))))
    with pytest.raises(PlantError, match=r"plant.yaml:11: robots\[0\] \(Arm\): .*missing.urdf: file not found"):
        build_plant(_plant(tmp_path, LINE.replace("two_joints.urdf", "missing.urdf")))


def test_a_plant_with_every_element_kind_is_a_line_and_a_runtime(tmp_path):
    layout = build_plant(_plant(tmp_path), tmp_path / "out")
    assert layout == tmp_path / "out" / "plant.usda" and layout.with_suffix(".glb").stat().st_size > 1000
    stage = Usd.Stage.Open(str(layout))
    model = read_line(stage)
    assert [element.path.rsplit("/", 1)[1] for element in model.elements] == [
        "Source", "Belt", "Split", "MillA", "MillB", "Arm", "Sink"]
    split = model.elements[model.index["/Factory/Line/Split"]]
    assert split.parameters["twin:capacity"] == 3 and split.routing == 1  # round robin
    mill = model.elements[model.index["/Factory/Line/MillA"]].parameters
    assert (mill["twin:scrapRate"], mill["twin:setupTime"], mill["twin:setupEvery"]) == (0.02, 30.0, 20.0)
    arm = model.elements[model.index["/Factory/Line/Arm"]].parameters
    assert (arm["twin:pickTime"], arm["twin:placeTime"]) == (3.0, 2.5)
    belt = stage.GetPrimAtPath("/Factory/Line/Belt")
    assert belt.GetAttribute("twin:speed").Get() == 0.4 and stage.GetPrimAtPath("/Factory/Line/Belt/Eye")
    turned = np.array(stage.GetPrimAtPath("/Factory/Line/MillB").GetAttribute("xformOp:transform").Get()).T
    np.testing.assert_allclose(turned[:3, 0], [-1, 0, 0], atol=1e-12)  # yaw 180 degrees

    twin = Twin(layout, device="cpu")
    row = next(robot.joint_row for robot in twin.robots.robots if robot.path == "/Factory/Line/Arm")
    twin.cache.write_signal(row, np.array([0.5, -0.3]))
    twin.step()
    assert twin.robots.describe()[0]["joints"] == list(Chain.from_urdf(TWO_JOINTS).joint_names)

    report = check_layout(layout)
    assert report.errors == [] and "1 robot: /Factory/Line/Arm (2 joints, 4 links)" in report.lines
    assert "line model: 7 elements, what-if studies can run" in report.lines


def test_layout_check_reports_bindings_that_reach_no_prim(tmp_path, capsys):
    layout = build_plant(_plant(tmp_path))
    bindings = tmp_path / "bindings.yaml"
    bindings.write_text("servers:\n  plc: {endpoint: 'opc.tcp://127.0.0.1:4840/'}\nbindings:\n"
                        "  - {server: plc, node: 'ns=2;s=Speed', prim: /Factory/Line/Belt, attr: twin:speed}\n"
                        "  - {server: plc, node: 'ns=2;s=Temp', prim: /Factory/Line/Mill, attr: twin:temperature}\n")
    assert main(["layout", "check", str(layout), "--bindings", str(bindings)]) == 1
    out = capsys.readouterr().out
    assert "bindings bindings.yaml: 2 bindings, 1 reach a prim" in out
    assert "error: " in out and "bindings.yaml:5: binding ns=2;s=Temp" in out
    assert "prim /Factory/Line/Mill is not in the layout" in out
    stage = Usd.Stage.Open(str(layout))
    stage.GetPrimAtPath("/Factory/Line/MillA").GetRelationship("twin:next").ClearTargets(True)
    stage.GetRootLayer().Save()
    assert main(["layout", "check", str(layout)]) == 1
    out = capsys.readouterr().out
    assert "error: line model: " in out and "MillA: this station has no way out" in out


def test_xacro_robots_take_their_arguments(tmp_path):
    """Two robots from one xacro file with other arguments are two robots, each with its own chain."""
    xacro = rtb_urdf("trossen_descriptions/urdf/px100.urdf.xacro")
    text = LINE.replace("robots:\n", f"robots:\n  - {{name: Px, urdf: {xacro}, xacro_args: {{use_world_frame: "
                                     "'true'}, at: [6.5, 2], pick_time: 2, place_time: 2, next: [Sink]}\n")
    layout = build_plant(_plant(tmp_path, text.replace("next: [Arm]", "next: [Arm, Px]")))
    stage = Usd.Stage.Open(str(layout))
    assert stage.GetPrimAtPath("/Factory/Line/Px").GetAttribute("twin:urdf").Get().endswith("?use_world_frame=true")
    assert Chain.from_usd(stage, "/Factory/Line/Px").link_names[0] == "world"
