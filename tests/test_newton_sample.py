"""Newton imports the sample layout's robots as the layout means them: anchored to the world at their root links.

Each robot's root link has a fixed joint to the world (`joints/world_anchor`, empty body0), so Newton's
`add_usd` must find one articulation per robot, rooted at that link by a fixed joint (not a free-floating
base or a middle link), and physics steps under gravity must leave every base where the layout puts it.
"""

import newton
import numpy as np
import pytest
import warp as wp
from pxr import Usd, UsdGeom

from twin.core.transforms import matrix_to_pose
from twin.kinematics.usd import read_robot

NOMINAL_MASS = 5.0  # kg: the layout's links carry no mass, which a solver needs for moving bodies


@pytest.mark.slow
def test_newton_finds_the_robot_roots_and_keeps_the_bases_in_place(sample_layout):
    stage = Usd.Stage.Open(str(sample_layout))
    robots = [str(prim.GetPath()) for prim in stage.Traverse() if prim.GetAttribute("twin:kind").Get() == "robot"]
    roots = {path: read_robot(stage, path).links[read_robot(stage, path).root] for path in robots}
    assert len(roots) == 2

    builder = newton.ModelBuilder()
    imported = builder.add_usd(str(sample_layout))
    for body, mass in enumerate(builder.body_mass):
        if mass == 0.0:
            builder.body_mass[body], builder.body_inv_mass[body] = NOMINAL_MASS, 1.0 / NOMINAL_MASS
            builder.body_inertia[body] = wp.mat33(np.eye(3) * 0.1)
            builder.body_inv_inertia[body] = wp.mat33(np.eye(3) * 10.0)
    model = builder.finalize(device="cpu")
    assert model.articulation_count == len(robots)
    joint_type, parent, child = model.joint_type.numpy(), model.joint_parent.numpy(), model.joint_child.numpy()
    assert not np.any(joint_type == newton.JointType.FREE)
    body_path = {index: path for path, index in imported["path_body_map"].items()}
    to_world = {body_path[int(child[j])]: int(joint_type[j]) for j in np.flatnonzero(parent == -1)}
    assert to_world == {root: int(newton.JointType.FIXED) for root in roots.values()}

    state, next_state, control = model.state(), model.state(), model.control()
    newton.eval_fk(model, model.joint_q, model.joint_qd, state)
    authored = {root: matrix_to_pose(np.array(UsdGeom.Xformable(stage.GetPrimAtPath(root))
                                              .ComputeLocalToWorldTransform(0)).T) for root in roots.values()}
    solver = newton.solvers.SolverMuJoCo(model, use_mujoco_cpu=True)
    start = state.body_q.numpy().copy()
    for _ in range(50):
        state.clear_forces()
        solver.step(state, next_state, control, None, 1.0 / 240.0)
        state, next_state = next_state, state
    end = state.body_q.numpy()
    assert np.isfinite(end).all()
    assert np.abs(end[:, 2] - start[:, 2]).max() > 1e-3  # gravity acts: the unactuated arms sag
    for root, pose in authored.items():
        body = imported["path_body_map"][root]
        np.testing.assert_allclose(end[body, :3], pose[:3], atol=1e-6, err_msg=root)
        same_sign = np.sign(end[body, 3:] @ pose[3:]) or 1.0
        np.testing.assert_allclose(end[body, 3:], same_sign * pose[3:], atol=1e-6, err_msg=root)
