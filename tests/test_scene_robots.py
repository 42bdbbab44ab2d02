"""The runtime's live link poses for robots the twin did not author: nested links, pivot links, scaled units.

Newton's USD assets are placed in a twin layout by reference; the link poses the runtime writes to the live
layer, read back through USD, must equal Newton's own forward kinematics (`eval_fk`) of the same layout.
"""

from pathlib import Path

import newton
import numpy as np
import pytest
from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics

from twin.core.transforms import matrix_to_pose
from twin.kinematics.joints import PRISMATIC
from twin.kinematics.usd import read_robot
from twin.sim.runtime import Twin

NEWTON_ASSETS = Path(newton.__file__).parent
CARTPOLE = NEWTON_ASSETS / "examples/assets/cartpole.usda"  # a revolute pivot off the child's origin: pivot links
CARTPOLE_MJC = NEWTON_ASSETS / "tests/assets/cartpole_mjc.usda"  # the pole's body nested under the cart's body
ROBOTS = {"/Factory/Line/CartPole": CARTPOLE, "/Factory/Line/Nested/test_cartpole/Geometry/cart": CARTPOLE_MJC}


def _layout(folder: Path, meters: float) -> Path:
    """Both robots referenced into a twin layout, moved and turned, at `meters` per unit."""
    units = 1.0 / meters
    layout = folder / "robots.usda"
    stage = Usd.Stage.CreateNew(str(layout))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, meters)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/Factory").GetPrim())
    cartpole = stage.DefinePrim("/Factory/Line/CartPole")
    cartpole.GetReferences().AddReference(CARTPOLE.as_posix(), "/cartPole")
    UsdGeom.Xformable(cartpole).AddTranslateOp().Set((2.0 * units, -1.0 * units, 0.0))
    UsdGeom.Xformable(cartpole).AddRotateZOp().Set(30.0)
    anchor = UsdPhysics.FixedJoint(stage.GetPrimAtPath("/Factory/Line/CartPole/rootJoint"))  # rail to world
    anchor.CreateLocalPos0Attr().Set(Gf.Vec3f(2.0 * units, -1.0 * units, 0.0))
    anchor.CreateLocalRot0Attr().Set(Gf.Quatf(Gf.Rotation(Gf.Vec3d(0, 0, 1), 30.0).GetQuat()))
    nested = stage.DefinePrim("/Factory/Line/Nested/test_cartpole")
    nested.GetReferences().AddReference(CARTPOLE_MJC.as_posix(), "/test_cartpole")
    UsdGeom.Xformable(stage.GetPrimAtPath("/Factory/Line/Nested")).AddTranslateOp().Set((0.0, 3.0 * units, 0.0))
    for path in ROBOTS:
        stage.OverridePrim(path).CreateAttribute("twin:kind", Sdf.ValueTypeNames.String).Set("robot")
    stage.GetRootLayer().Save()
    return layout


@pytest.mark.parametrize("meters", [1.0, 0.01])
def test_live_link_poses_equal_newton_fk(tmp_path, meters):
    layout = _layout(tmp_path, meters)
    twin = Twin(layout, device="cpu")
    robots = twin.robots
    assert {robot.path for robot in robots.robots} == set(ROBOTS)
    assert any("@" in name for robot in robots.robots for name in robot.chain.link_names)  # pivot links present

    builder = newton.ModelBuilder()
    imported = builder.add_usd(str(layout))
    model = builder.finalize(device="cpu")
    joint_q, q_start = model.joint_q.numpy(), model.joint_q_start.numpy()
    rng = np.random.default_rng(7)
    articulations = {}
    for robot in robots.robots:
        q = rng.uniform(np.maximum(robot.chain.lower, -1.0), np.minimum(robot.chain.upper, 1.0))
        twin.cache.write_signal(robot.joint_row, q)
        articulation = articulations[robot.path] = read_robot(twin.stage.authored_stage, robot.path)
        slides = np.flatnonzero(robot.chain.joint_type == PRISMATIC)
        prismatic = {int(robot.chain.joint_q_index[link]) for link in slides}
        for index, name in enumerate(robot.chain.joint_names):  # Newton's slides are in stage units, the twin's metres
            value = q[index] / meters if index in prismatic else q[index]
            joint_q[q_start[imported["path_joint_map"][articulation.joint_paths[name]]]] = value
    model.joint_q.assign(joint_q)
    state = model.state()
    newton.eval_fk(model, model.joint_q, model.joint_qd, state)
    expected_poses = state.body_q.numpy()

    twin.step()
    twin.live_writer.flush()
    checked = 0
    for articulation in articulations.values():
        for path in articulation.links.values():
            world = np.array(UsdGeom.Xformable(twin.stage.stage.GetPrimAtPath(path)).ComputeLocalToWorldTransform(0)).T
            world[:3, :3] /= np.linalg.norm(world[:3, :3], axis=0)
            world[:3, 3] *= meters
            got, expected = matrix_to_pose(world), expected_poses[imported["path_body_map"][path]]
            np.testing.assert_allclose(got[:3], expected[:3] * meters, atol=1e-5, err_msg=path)  # Newton: stage units
            same_sign = np.sign(got[3:] @ expected[3:]) or 1.0
            np.testing.assert_allclose(got[3:], same_sign * expected[3:], atol=1e-5, err_msg=path)
            checked += 1
    assert checked == 6
