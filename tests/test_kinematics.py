"""Forward kinematics on Warp against Pinocchio, an independent implementation."""

import numpy as np
import pinocchio as pin
import pytest

from twin.core.errors import KinematicsError
from twin.kinematics.batch import KinematicsBatch
from twin.kinematics.chain import Chain
from twin.kinematics.urdf import rtb_urdf

RTB_ROBOTS = [
    "kuka_description/kuka_kr16/urdf/kr16_2.urdf",
    "kuka_description/kuka_kr120/urdf/kr120r2500pro.urdf",
    "kuka_description/kuka_kr210/urdf/kr210l150.urdf",
    "kuka_description/kuka_lbr_iiwa/urdf/lbr_iiwa_14_r820.urdf",
    "abb_irb140_description/urdf/irb140.urdf",
    "unimation_puma560_description/urdf/puma560_robot.urdf",
    "lynxmotion_al5d_description/urdf/al5d_robot.urdf",
]


def random_q(chain: Chain, count: int, seed: int = 0) -> np.ndarray:
    lower = np.where(np.isfinite(chain.lower), chain.lower, -np.pi)
    upper = np.where(np.isfinite(chain.upper), chain.upper, np.pi)
    return np.random.default_rng(seed).uniform(lower, upper, (count, chain.n_joints))


@pytest.mark.parametrize("relative", RTB_ROBOTS)
def test_fk_matches_pinocchio(relative):
    path = str(rtb_urdf(relative))
    chain = Chain.from_urdf(path)
    model = pin.buildModelFromUrdf(path)
    data = model.createData()
    assert chain.joint_names == tuple(model.names[1:])
    q = random_q(chain, 64)
    poses = chain.fk(q)
    assert poses.shape == (64, chain.n_links, 4, 4)
    worst_position = worst_rotation = 0.0
    for b in range(len(q)):
        pin.framesForwardKinematics(model, data, q[b])
        for i, link in enumerate(chain.link_names):
            frame = data.oMf[model.getFrameId(link)]
            worst_position = max(worst_position, np.abs(frame.translation - poses[b, i, :3, 3]).max())
            worst_rotation = max(worst_rotation, np.abs(frame.rotation - poses[b, i, :3, :3]).max())
    assert worst_position < 1e-5 and worst_rotation < 1e-5


def test_one_launch_poses_different_robots_and_bases():
    kr16 = Chain.from_urdf(rtb_urdf(RTB_ROBOTS[0]))
    iiwa = Chain.from_urdf(rtb_urdf(RTB_ROBOTS[3]))
    batch = KinematicsBatch([kr16, iiwa], [0, 1, 0])
    bases = np.tile(np.eye(4), (3, 1, 1))
    bases[:, 0, 3] = [0.0, 5.0, 10.0]
    batch.set_base(bases)
    qs = [random_q(kr16, 1, 1)[0], random_q(iiwa, 1, 2)[0], random_q(kr16, 1, 3)[0]]
    out = batch.forward(np.concatenate(qs))
    for i, (chain, q) in enumerate(zip([kr16, iiwa, kr16], qs, strict=True)):
        expected = chain.fk(q[None], base=bases[i])[0]
        np.testing.assert_allclose(out[batch.link_slices[i]], expected, atol=1e-5)


def test_bad_input_is_named():
    chain = Chain.from_urdf(rtb_urdf(RTB_ROBOTS[0]))
    with pytest.raises(KinematicsError, match=r"q must have shape \(B, 6\), got \(2, 5\)"):
        chain.fk(np.zeros((2, 5)))
    q = np.zeros((3, 6))
    q[2, 4] = np.nan
    with pytest.raises(KinematicsError, match=r"q\[2, 4\] is not finite"):
        chain.fk(q)
    with pytest.raises(KinematicsError, match="has no link 'gripper'"):
        chain.link_index("gripper")


def test_mimic_joint_follows_its_leader(tmp_path):
    urdf = tmp_path / "gripper.urdf"
    urdf.write_text("""<robot name="gripper">
      <link name="palm"/><link name="left"/><link name="right"/>
      <joint name="left_slide" type="prismatic"><parent link="palm"/><child link="left"/>
        <axis xyz="0 1 0"/><limit lower="0" upper="0.05" effort="1" velocity="1"/></joint>
      <joint name="right_slide" type="prismatic"><parent link="palm"/><child link="right"/>
        <axis xyz="0 1 0"/><limit lower="-0.05" upper="0" effort="1" velocity="1"/>
        <mimic joint="left_slide" multiplier="-1" offset="0.01"/></joint>
    </robot>""")
    chain = Chain.from_urdf(urdf)
    assert chain.joint_names == ("left_slide",)
    poses = chain.fk(np.array([[0.03]]))[0]
    assert poses[chain.link_index("left"), 1, 3] == pytest.approx(0.03, abs=1e-6)
    assert poses[chain.link_index("right"), 1, 3] == pytest.approx(-0.02, abs=1e-6)


@pytest.mark.parametrize("relative", [RTB_ROBOTS[0], RTB_ROBOTS[3]])
def test_jacobian_matches_pinocchio_and_finite_differences(relative):
    path = str(rtb_urdf(relative))
    chain = Chain.from_urdf(path)
    model = pin.buildModelFromUrdf(path)
    data = model.createData()
    q = random_q(chain, 16, seed=7)
    for link in ("tool0", "link_3"):
        jac = chain.jacobian(q, link)
        assert jac.shape == (16, 6, chain.n_joints)
        for b in range(len(q)):
            expected = pin.computeFrameJacobian(model, data, q[b], model.getFrameId(link), pin.LOCAL_WORLD_ALIGNED)
            np.testing.assert_allclose(jac[b], expected, atol=1e-5)
    # linear rows against central differences of FK positions (float64 steps on float32 FK)
    step = 1e-3
    index = chain.link_index("tool0")
    jac = chain.jacobian(q[:1], "tool0")[0]
    for j in range(chain.n_joints):
        plus, minus = q[:1].copy(), q[:1].copy()
        plus[0, j] += step
        minus[0, j] -= step
        numeric = (chain.fk(plus)[0, index, :3, 3] - chain.fk(minus)[0, index, :3, 3]) / (2 * step)
        np.testing.assert_allclose(jac[:3, j], numeric, atol=2e-3)


@pytest.mark.parametrize("relative", [RTB_ROBOTS[0], RTB_ROBOTS[3]])
def test_ik_solves_random_reachable_targets(relative):
    chain = Chain.from_urdf(rtb_urdf(relative))
    q = random_q(chain, 10_000, seed=11)
    tool = chain.link_index("tool0")
    targets = chain.fk(q)[:, tool]
    result = chain.ik(targets, "tool0")
    reached = chain.fk(result.q)[:, tool]  # verify independently of the solver's own report
    position = np.linalg.norm(reached[:, :3, 3] - targets[:, :3, 3], axis=1)
    rotation = np.abs(reached[:, :3, :3] - targets[:, :3, :3]).max(axis=(1, 2))
    verified = (position < 1e-4) & (rotation < 1e-3)
    assert verified.mean() >= 0.995
    assert np.all(verified[result.success]), "a target reported solved is not reached"
    assert np.all(result.q >= chain.lower - 1e-6) and np.all(result.q <= chain.upper + 1e-6)


def test_ik_reports_unreachable_targets_instead_of_a_wrong_answer():
    chain = Chain.from_urdf(rtb_urdf(RTB_ROBOTS[0]))
    far = np.eye(4)
    far[:3, 3] = (5.0, 0.0, 1.0)  # the KR16 reaches about 1.6 m
    result = chain.ik(np.stack([far, chain.fk(np.zeros((1, 6)))[0, chain.link_index("tool0")]]), "tool0")
    assert result.success.tolist() == [False, True]
    assert result.position_error[0] > 3.0
    with pytest.raises(KinematicsError, match=r"targets must have shape \(B, 4, 4\)"):
        chain.ik(np.zeros((2, 3, 3)), "tool0")
    with pytest.raises(KinematicsError, match="has no link 'hand'"):
        chain.ik(far, "hand")


def test_ik_uploads_the_model_once_per_device():
    chain = Chain.from_urdf(rtb_urdf(RTB_ROBOTS[0]))
    target = chain.fk(np.zeros((1, 6)))[:, chain.link_index("tool0")]
    assert chain._arrays == {}
    first = chain.ik(target, "tool0", device="cpu")
    assert list(chain._arrays) == ["cpu"]  # solve_ik went through the chain's per-device cache
    uploaded = chain._arrays["cpu"]
    links, lower, upper = uploaded.links.ptr, uploaded.lower.ptr, uploaded.upper.ptr
    second = chain.ik(target, "tool0", device="cpu")
    assert chain._arrays["cpu"] is uploaded
    assert (uploaded.links.ptr, uploaded.lower.ptr, uploaded.upper.ptr) == (links, lower, upper)
    assert first.success.all() and second.success.all()
    np.testing.assert_array_equal(first.q, second.q)
