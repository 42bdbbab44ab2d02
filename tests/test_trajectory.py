import numpy as np
import pytest

from twin.core.errors import KinematicsError
from twin.kinematics.chain import Chain
from twin.kinematics.trajectory import plan_cartesian_line, plan_joint_moves
from twin.kinematics.urdf import rtb_urdf

KR16 = rtb_urdf("kuka_description/kuka_kr16/urdf/kr16_2.urdf")
VMAX = np.array([2.0, 2.0, 2.0, 4.0, 4.0, 6.0])
AMAX = np.array([4.0, 4.0, 4.0, 8.0, 8.0, 12.0])


@pytest.mark.parametrize("profile", ["trapezoidal", "quintic"])
def test_joint_moves_are_synchronous_and_within_limits(profile):
    rng = np.random.default_rng(3)
    start, end = rng.uniform(-2, 2, (50, 6)), rng.uniform(-2, 2, (50, 6))
    moves = plan_joint_moves(start, end, VMAX, AMAX, profile=profile)
    dt = 1e-3
    times = np.arange(0.0, moves.duration.max() + dt, dt)
    positions, velocities = moves.sample(times)
    np.testing.assert_allclose(positions[:, 0], start, atol=1e-5)
    np.testing.assert_allclose(positions[:, -1], end, atol=1e-4)
    assert np.all(np.abs(velocities) <= VMAX * (1 + 1e-3) + 1e-5)
    acceleration = np.diff(velocities, axis=1) / dt
    assert np.all(np.abs(acceleration) <= AMAX * 1.02 + 1e-2)
    # time-optimal: the limiting joint touches its velocity or acceleration limit
    peak_v = (np.abs(velocities) / VMAX).max(axis=(1, 2))
    peak_a = (np.abs(acceleration) / AMAX).max(axis=(1, 2))
    assert np.all(np.maximum(peak_v, peak_a) > 0.97)
    # synchronous: every joint reaches its end at the move's duration
    last = np.searchsorted(times, moves.duration)
    for move in range(0, 50, 7):
        np.testing.assert_allclose(positions[move, min(last[move], len(times) - 1)], end[move], atol=1e-3)
    if profile == "quintic":
        assert np.abs(velocities[:, 0]).max() < 1e-6


def test_cartesian_line_stays_on_the_segment():
    chain = Chain.from_urdf(KR16)
    q0 = np.array([0.0, -1.2, 1.5, 0.0, 1.3, 0.0])
    tool = chain.link_index("tool0")
    start = chain.fk(q0[None])[0, tool]
    target = start.copy()
    target[:3, 3] += (0.0, 0.4, -0.2)
    times, q = plan_cartesian_line(chain, q0, target, max_speed=0.5)
    points = chain.fk(q)[:, tool, :3, 3]
    direction = (target[:3, 3] - start[:3, 3]) / np.linalg.norm(target[:3, 3] - start[:3, 3])
    off_line = np.linalg.norm(np.cross(points - start[:3, 3], direction), axis=1)
    assert off_line.max() < 1e-4
    np.testing.assert_allclose(points[-1], target[:3, 3], atol=1e-4)
    speed = np.linalg.norm(np.diff(points, axis=0), axis=1) / np.diff(times)
    assert speed.max() <= 0.5 * 1.05


def test_unreachable_line_names_the_time():
    chain = Chain.from_urdf(KR16)
    q0 = np.array([0.0, -1.2, 1.5, 0.0, 1.3, 0.0])
    target = chain.fk(q0[None])[0, chain.link_index("tool0")]
    target[:3, 3] += (3.0, 0.0, 0.0)
    with pytest.raises(KinematicsError, match=r"not reachable at t = \d+\.\d+ s"):
        plan_cartesian_line(chain, q0, target)
    with pytest.raises(KinematicsError, match="unknown profile"):
        plan_joint_moves(np.zeros(6), np.ones(6), VMAX, AMAX, profile="sine")
