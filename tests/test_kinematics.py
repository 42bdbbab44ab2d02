"""Forward kinematics on Warp against Pinocchio, an independent implementation."""

import numpy as np
import pinocchio as pin
import pytest

from twin.errors import KinematicsError
from twin.kinematics import Chain, KinematicsBatch
from twin.urdf import rtb_urdf

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
