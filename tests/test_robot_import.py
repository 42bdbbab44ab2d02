"""Robots nobody on the project authored: Newton's USD articulations, pybullet's URDFs, rtb-data's xacro files."""

import re
from pathlib import Path

import newton
import numpy as np
import pybullet_data
import pytest
from pxr import Usd, UsdGeom, UsdPhysics

from twin.core.errors import LayoutError, UrdfError
from twin.core.transforms import matrix_to_pose
from twin.kinematics.chain import Chain
from twin.kinematics.urdf import load_urdf, rtb_urdf
from twin.kinematics.usd import read_robot

NEWTON_ASSETS = Path(newton.__file__).parent
FAST_FILES = ("examples/assets/cartpole.usda", "tests/assets/four_link_chain_articulation.usda",
              "examples/assets/sensor_contact_scene.usda", "tests/assets/cartpole_mjc.usda")
# Articulations with joints the chain refuses, and the joint each message names
REFUSED = {
    "/nv_humanoid/torso": "/nv_humanoid/joints/lower_waist: unsupported joint type 'PhysicsJoint'",  # D6, two files
    "/Robot": "/Robot/D6: unsupported joint type 'PhysicsJoint'",
    "/humanoid/Geometry/torso": "right_ankle_x: .* already joins",  # MuJoCo multi-axis joints
}


def _newton_files() -> list[str]:
    files = sorted(p for p in NEWTON_ASSETS.rglob("*.usd*") if p.suffix in (".usd", ".usda", ".usdc"))
    return [str(p.relative_to(NEWTON_ASSETS)) for p in files]


def _compare_with_newton(relative: str) -> tuple[int, list[str], float, float]:
    """(articulations loaded, refusal messages, worst position error m, worst rotation error) for one file."""
    stage = Usd.Stage.Open(str(NEWTON_ASSETS / relative))
    roots = [str(p.GetPath()) for p in stage.Traverse() if p.HasAPI(UsdPhysics.ArticulationRootAPI)]
    robots, refusals = {}, []
    for root in roots:
        try:
            robots[root] = (Chain.from_usd(stage, root), read_robot(stage, root))
        except LayoutError as error:
            refusals.append(f"{root} {error.detail}")
    if not robots:
        return 0, refusals, 0.0, 0.0
    builder = newton.ModelBuilder()
    imported = builder.add_usd(str(NEWTON_ASSETS / relative))
    model = builder.finalize(device="cpu")
    joint_q, q_start = model.joint_q.numpy(), model.joint_q_start.numpy()
    rng = np.random.default_rng(3)
    qs = {}
    for root, (chain, robot) in robots.items():
        qs[root] = rng.uniform(np.maximum(chain.lower, -2.0), np.minimum(chain.upper, 2.0))
        for name, index in zip(chain.joint_names, range(chain.n_joints), strict=True):
            joint_q[q_start[imported["path_joint_map"][robot.joint_paths[name]]]] = qs[root][index]
    model.joint_q.assign(joint_q)
    state = model.state()
    newton.eval_fk(model, model.joint_q, model.joint_qd, state)
    body_q = state.body_q.numpy()
    worst_position = worst_rotation = 0.0
    meters = UsdGeom.GetStageMetersPerUnit(stage)
    for root, (chain, robot) in robots.items():
        matrix = np.array(UsdGeom.Xformable(stage.GetPrimAtPath(root)).ComputeLocalToWorldTransform(0)).T
        base = np.eye(4)
        base[:3, :3] = matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0)
        base[:3, 3] = matrix[:3, 3] * meters
        poses = matrix_to_pose(chain.fk(qs[root][None], base=base)[0])
        for name, path in robot.links.items():
            expected = body_q[imported["path_body_map"][path]]
            got = poses[chain.link_index(name)]
            worst_position = max(worst_position, float(np.abs(got[:3] - expected[:3]).max()))
            same_sign = np.sign(got[3:] @ expected[3:]) or 1.0  # q and -q are one rotation
            worst_rotation = max(worst_rotation, float(np.abs(got[3:] - same_sign * expected[3:]).max()))
    return len(robots), refusals, worst_position, worst_rotation


@pytest.mark.parametrize("relative", FAST_FILES)
def test_usd_articulations_match_newton_fk(relative):
    loaded, refusals, position, rotation = _compare_with_newton(relative)
    assert loaded == 1 and refusals == []
    assert position < 1e-5 and rotation < 1e-5


@pytest.mark.slow
def test_every_newton_articulation_loads_or_is_refused_by_name():
    loaded, refusals, worst_position, worst_rotation = 0, [], 0.0, 0.0
    for relative in _newton_files():
        count, refused, position, rotation = _compare_with_newton(relative)
        loaded, refusals = loaded + count, refusals + refused
        worst_position, worst_rotation = max(worst_position, position), max(worst_rotation, rotation)
    assert loaded + len(refusals) == 81
    assert loaded == 77, refusals
    for message in refusals:
        root = message.split()[0]
        assert root in REFUSED and re.search(REFUSED[root], message), message
    assert worst_position < 1e-5 and worst_rotation < 1e-5
    print(f"{loaded} of 81 Newton articulations load; worst error {worst_position:.2e} m, {worst_rotation:.2e}")


def test_meters_per_unit_and_excluded_joints(tmp_path):
    copy = tmp_path / "pendulum.usda"  # a copy: Newton's importer may have edited the shared layer in memory
    copy.write_bytes((NEWTON_ASSETS / "tests/assets/pendulum_revolute_vs_d6.usda").read_bytes())
    stage = Usd.Stage.Open(str(copy))
    with pytest.raises(LayoutError, match="/Robot/D6: unsupported joint type 'PhysicsJoint': a generic"):
        Chain.from_usd(stage, "/Robot")
    UsdPhysics.Joint(stage.GetPrimAtPath("/Robot/D6")).CreateExcludeFromArticulationAttr(True)
    with pytest.raises(LayoutError, match=r"/Robot: expected one root link .*found \['Base', 'BodyR'\]"):
        Chain.from_usd(stage, "/Robot")  # without the D6 joint, BodyR floats free
    stage.GetPrimAtPath("/Robot/BodyR").RemoveAPI(UsdPhysics.RigidBodyAPI)
    metres = Chain.from_usd(stage, "/Robot")
    UsdGeom.SetStageMetersPerUnit(stage, 0.01)
    centimetres = Chain.from_usd(stage, "/Robot")
    q = np.full((1, metres.n_joints), 0.7)
    assert metres.n_joints == 1
    np.testing.assert_allclose(centimetres.fk(q)[..., :3, 3], 0.01 * metres.fk(q)[..., :3, 3], atol=1e-7)
    np.testing.assert_allclose(centimetres.fk(q)[..., :3, :3], metres.fk(q)[..., :3, :3], atol=1e-6)


# --------------------------------------------------------------------------- URDF and xacro
@pytest.mark.parametrize("relative", ["franka_panda/panda.urdf", "kuka_iiwa/model.urdf"])
def test_pybullet_urdfs_load_with_their_meshes(relative):
    robot = load_urdf(Path(pybullet_data.getDataPath()) / relative)
    assert all(v.mesh_path.is_file() for link in robot.links for v in link.visuals if v.kind == "mesh")
    chain = Chain.from_description(robot)
    assert chain.n_joints >= 7
    assert np.isfinite(chain.fk(np.zeros(chain.n_joints))).all()


def _package_robot(folder: Path) -> Path:
    """A URDF in folder/robot_description/urdf whose mesh lives in another package, folder/grip_parts."""
    (folder / "grip_parts" / "meshes").mkdir(parents=True)
    (folder / "grip_parts" / "meshes" / "finger.stl").write_bytes(
        (Path(pybullet_data.getDataPath()) / "l_finger.stl").read_bytes())
    (folder / "robot_description" / "urdf").mkdir(parents=True)
    urdf = folder / "robot_description" / "urdf" / "robot.urdf"
    urdf.write_text("""<robot name="r"><link name="base"><visual><geometry>
      <mesh filename="package://grip_parts/meshes/finger.stl"/></geometry></visual></link></robot>""")
    return urdf


def test_package_uris_resolve_from_package_dirs_ros_package_path_and_the_folder_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("ROS_PACKAGE_PATH", raising=False)
    urdf = _package_robot(tmp_path / "ws")
    expected = tmp_path / "ws" / "grip_parts" / "meshes" / "finger.stl"
    assert load_urdf(urdf).links[0].visuals[0].mesh_path == expected  # <folder>/<package> above the URDF
    moved = tmp_path / "other_ws" / "grip_parts"
    moved.parent.mkdir()
    (tmp_path / "ws" / "grip_parts").rename(moved)
    with pytest.raises(UrdfError, match=r"package 'grip_parts' not found .*looked in \[.*robot_description"):
        load_urdf(urdf)
    assert load_urdf(urdf, package_dirs={"grip_parts": moved}).links[0].visuals[0].mesh_path.is_file()
    monkeypatch.setenv("ROS_PACKAGE_PATH", str(moved.parent))
    assert load_urdf(urdf).links[0].visuals[0].mesh_path == moved / "meshes" / "finger.stl"


def test_xacro_files_expand_with_arguments(tmp_path):
    path = rtb_urdf("trossen_descriptions/urdf/px100.urdf.xacro")
    default = Chain.from_description(load_urdf(path))
    assert default.n_joints == 6 and default.link_names[0] != "world"
    in_world = Chain.from_description(load_urdf(path, xacro_args={"use_world_frame": "true"}))
    assert in_world.link_names[0] == "world" and in_world.joint_names == default.joint_names
    q = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 6))
    tip = default.link_names[-1]
    np.testing.assert_allclose(in_world.fk(q)[:, in_world.link_index(tip)], default.fk(q)[:, -1], atol=1e-6)
    broken = tmp_path / "broken.urdf.xacro"
    broken.write_text('<robot xmlns:xacro="http://www.ros.org/wiki/xacro" name="b">'
                      '<xacro:include filename="missing.xacro"/></robot>')
    with pytest.raises(UrdfError, match="broken.urdf.xacro: xacro failed: .*missing.xacro"):
        load_urdf(broken)
