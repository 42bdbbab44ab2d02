"""Robot trajectories: synchronised joint moves and Cartesian straight lines, sampled on Warp.

A joint move is one time scaling s(t) in [0, 1] shared by every joint, q(t) = q0 + s(t) (q1 - q0),
so all joints start and stop together (what robot controllers call a synchronous PTP move).
The scaling is trapezoidal in velocity (fastest under velocity and acceleration limits) or
quintic (zero acceleration at both ends, smoother). Its duration is the shortest for which
every joint stays within its limits. Many moves are sampled at many times in one launch.

A Cartesian line moves a link's origin along a straight segment and its orientation along
the shortest rotation, with the same kind of time scaling on the path, and turns each
sample into joints with batched IK; a line that leaves the workspace or flips the arm
between samples is reported with the time where it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import warp as wp

from twin.core.errors import KinematicsError
from twin.kinematics.device import default_device
from twin.kinematics.kernels import sample_joint_moves_kernel

if TYPE_CHECKING:
    from twin.kinematics.chain import Chain

TRAPEZOIDAL, QUINTIC = 0, 1
_PROFILES = {"trapezoidal": TRAPEZOIDAL, "quintic": QUINTIC}
_QUINTIC_PEAK_VELOCITY = 15.0 / 8.0  # max ds/dtau of 10t^3 - 15t^4 + 6t^5
_QUINTIC_PEAK_ACCELERATION = 10.0 / np.sqrt(3.0)  # max d2s/dtau2


def unit_timing(velocity_ratio: np.ndarray, acceleration_ratio: np.ndarray, profile: str) -> tuple:
    """Shortest (duration, blend) of a unit move whose speed <= V and acceleration <= A."""
    v, a = velocity_ratio, acceleration_ratio
    if profile == "quintic":
        duration = np.maximum(_QUINTIC_PEAK_VELOCITY / v, np.sqrt(_QUINTIC_PEAK_ACCELERATION / a))
        return duration, np.zeros_like(duration)
    cruise = v * v / a <= 1.0  # reaches full speed before half way
    blend = np.where(cruise, v / a, np.sqrt(1.0 / a))
    duration = np.where(cruise, 1.0 / v + v / a, 2.0 * blend)
    return duration, blend


@dataclass(frozen=True)
class JointMoves:
    """B synchronised joint moves; `sample` evaluates them on the device."""

    start: np.ndarray  # (B, n)
    end: np.ndarray  # (B, n)
    duration: np.ndarray  # (B,) seconds
    blend: np.ndarray  # (B,) acceleration time of the trapezoid (0 for quintic)
    profile: str

    def sample(self, times, *, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities (B, S, n) at `times` (S,) or (B, S) seconds from each move's start."""
        times = np.asarray(times, np.float64)
        count, joints = self.start.shape
        times = np.broadcast_to(times if times.ndim == 2 else times[None], (count, times.shape[-1]))
        device = device or default_device()
        with wp.ScopedDevice(device):
            positions = wp.zeros((count, times.shape[1], joints), dtype=float)
            velocities = wp.zeros((count, times.shape[1], joints), dtype=float)
            wp.launch(
                sample_joint_moves_kernel, dim=(count, times.shape[1], joints),
                inputs=[wp.array(self.start.astype(np.float32), dtype=float),
                        wp.array(self.end.astype(np.float32), dtype=float),
                        wp.array(self.duration.astype(np.float32), dtype=float),
                        wp.array(self.blend.astype(np.float32), dtype=float), _PROFILES[self.profile],
                        wp.array(np.ascontiguousarray(times, np.float32), dtype=float)],
                outputs=[positions, velocities],
            )
            return positions.numpy().astype(np.float64), velocities.numpy().astype(np.float64)


def plan_joint_moves(start, end, max_velocity, max_acceleration, *, profile: str = "trapezoidal") -> JointMoves:
    """Time-optimal synchronised moves from `start` to `end` (B, n) within per-joint limits (n,)."""
    if profile not in _PROFILES:
        raise KinematicsError(f"unknown profile {profile!r}; use 'trapezoidal' or 'quintic'")
    start = np.atleast_2d(np.asarray(start, np.float64))
    end = np.atleast_2d(np.asarray(end, np.float64))
    if start.shape != end.shape:
        raise KinematicsError(f"start {start.shape} and end {end.shape} of the moves differ in shape")
    max_velocity = np.broadcast_to(np.asarray(max_velocity, np.float64), start.shape[-1:])
    max_acceleration = np.broadcast_to(np.asarray(max_acceleration, np.float64), start.shape[-1:])
    if np.any(max_velocity <= 0) or np.any(max_acceleration <= 0):
        raise KinematicsError("velocity and acceleration limits must be positive")
    distance = np.abs(end - start)
    with np.errstate(divide="ignore"):
        v = np.min(np.where(distance > 0, max_velocity / distance, np.inf), axis=1)
        a = np.min(np.where(distance > 0, max_acceleration / distance, np.inf), axis=1)
    still = ~np.isfinite(v)
    duration, blend = unit_timing(np.where(still, 1.0, v), np.where(still, 1.0, a), profile)
    duration = np.where(still, 0.0, duration)
    blend = np.where(still, 0.0, blend)
    return JointMoves(start, end, duration, blend, profile)


def chain_joint_move(chain: Chain, start, end, *, speed: float = 1.0, acceleration: float | np.ndarray = 4.0,
                     profile: str = "trapezoidal") -> JointMoves:
    """A move within the robot's URDF velocity limits scaled by `speed` (0..1]."""
    limits = np.where(np.isfinite(chain.velocity_limit), chain.velocity_limit, 2.0) * speed
    return plan_joint_moves(start, end, limits, acceleration, profile=profile)


def _slerp_matrices(start: np.ndarray, end: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rotations along the shortest path from `start` to `end` (3x3) at fractions s (S,)."""
    relative = start.T @ end
    angle = np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-9:
        return np.broadcast_to(start, (len(s), 3, 3)).copy()
    axis = np.array([relative[2, 1] - relative[1, 2], relative[0, 2] - relative[2, 0], relative[1, 0] - relative[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # a half turn: take the axis from the symmetric part
        axis = np.sqrt(np.clip((np.diag(relative) + 1.0) / 2.0, 0.0, None))
        norm = np.linalg.norm(axis)
    axis = axis / norm
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    theta = (s * angle)[:, None, None]
    rotations = np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)
    return start @ rotations


def plan_cartesian_line(
    chain: Chain,
    q_start,
    target: np.ndarray,
    link: str = "tool0",
    *,
    max_speed: float = 0.5,
    max_acceleration: float = 2.0,
    max_angular_speed: float = 1.5,
    max_angular_acceleration: float = 6.0,
    dt: float = 0.02,
    max_joint_step: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """A straight-line move of `link` to `target` (4x4, robot root frame).

    Returns (times (S,), joint positions (S, n)). Raises KinematicsError naming the time at
    which the line is unreachable or would need a joint jump above `max_joint_step` rad.
    """
    q_start = chain.check_q(q_start)[0]
    target = np.asarray(target, np.float64)
    if target.shape != (4, 4) or not np.all(np.isfinite(target)):
        raise KinematicsError(f"Cartesian target must be a finite 4x4 matrix, got shape {target.shape}")
    begin = chain.fk(q_start[None])[0, chain.link_index(link)]
    length = float(np.linalg.norm(target[:3, 3] - begin[:3, 3]))
    relative = begin[:3, :3].T @ target[:3, :3]
    angle = float(np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0)))
    with np.errstate(divide="ignore"):
        v = min(max_speed / length if length > 0 else np.inf, max_angular_speed / angle if angle > 0 else np.inf)
        a = min(max_acceleration / length if length > 0 else np.inf,
                max_angular_acceleration / angle if angle > 0 else np.inf)
    if not np.isfinite(v):
        return np.zeros(1), q_start[None].copy()
    duration, blend = unit_timing(np.array([v]), np.array([a]), "trapezoidal")
    times = np.append(np.arange(0.0, duration[0], dt), duration[0])
    move = JointMoves(np.zeros((1, 1)), np.ones((1, 1)), duration, blend, "trapezoidal")
    s = move.sample(times)[0][0, :, 0]
    poses = np.tile(np.eye(4), (len(s), 1, 1))
    poses[:, :3, 3] = begin[:3, 3] + s[:, None] * (target[:3, 3] - begin[:3, 3])
    poses[:, :3, :3] = _slerp_matrices(begin[:3, :3], target[:3, :3], s)
    # seed each sample with the start: the arm should keep its configuration along a line
    result = chain.ik(poses, link, seeds=q_start[None], retries=1)
    failed = np.flatnonzero(~result.success)
    if failed.size:
        raise KinematicsError(
            f"robot {chain.name!r}: straight line to {np.round(target[:3, 3], 4).tolist()} is not reachable "
            f"at t = {times[failed[0]]:.3f} s (residual {result.position_error[failed[0]]:.4f} m)"
        )
    steps = np.abs(np.diff(np.vstack([q_start, result.q]), axis=0)).max(axis=1)
    if steps.max() > max_joint_step:
        at = int(np.argmax(steps > max_joint_step))
        raise KinematicsError(
            f"robot {chain.name!r}: straight line needs a joint jump of {steps[at]:.3f} rad at "
            f"t = {times[at]:.3f} s (a singularity or a configuration change)"
        )
    return times, result.q
