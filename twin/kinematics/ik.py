"""Batched inverse kinematics on Warp: damped least squares, many seeds, limits respected.

One thread solves one (target, seed) pair to the end: forward kinematics, the pose
error, the Jacobian and a 6x6 Levenberg-Marquardt step all stay in registers and a
per-thread scratch of link poses, so a whole batch is a single launch. Damping grows
with the error (Sugihara's rule), which keeps steps safe far from the target and
Gauss-Newton-fast near it. The best seed per target wins; a target is reported as
solved only if its pose errors are within tolerance, so an unreachable target comes
back as a failure with its residual, never as a wrong answer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import warp as wp

from twin.core.errors import KinematicsError
from twin.core.transforms import matrix_to_pose
from twin.kinematics.chain import Chain, jacobian_column, joint_transform, vec6
from twin.kinematics.device import default_device

MAX_DOF = 12
vec_dof = wp.types.vector(length=MAX_DOF, dtype=float)
mat6_dof = wp.types.matrix(shape=(6, MAX_DOF), dtype=float)
mat66 = wp.types.matrix(shape=(6, 6), dtype=float)


class IkResult(NamedTuple):
    q: np.ndarray  # (B, n) best solution per target
    success: np.ndarray  # (B,) bool
    position_error: np.ndarray  # (B,) metres
    rotation_error: np.ndarray  # (B,) radians


@wp.func
def solve_spd6(a: mat66, b: vec6) -> vec6:
    """Cholesky solve of a symmetric positive-definite 6x6 system."""
    lower = mat66()
    for i in range(6):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= lower[i, k] * lower[j, k]
            if i == j:
                lower[i, i] = wp.sqrt(wp.max(s, 1.0e-12))
            else:
                lower[i, j] = s / lower[j, j]
    y = vec6()
    for i in range(6):
        s = b[i]
        for k in range(i):
            s -= lower[i, k] * y[k]
        y[i] = s / lower[i, i]
    x = vec6()
    for step in range(6):
        i = 5 - step
        s = y[i]
        for k in range(i + 1, 6):
            s -= lower[k, i] * x[k]
        x[i] = s / lower[i, i]
    return x


@wp.func
def rotation_error(target: wp.quat, current: wp.quat) -> wp.vec3:
    """Axis times angle of the rotation taking `current` to `target`, in world axes."""
    delta = target * wp.quat_inverse(current)
    if delta[3] < 0.0:
        delta = -delta
    v = wp.vec3(delta[0], delta[1], delta[2])
    s = wp.length(v)
    if s < 1.0e-9:
        return 2.0 * v
    return v * (2.0 * wp.atan2(s, delta[3]) / s)


@wp.kernel
def ik_kernel(
    targets: wp.array(dtype=wp.transform),
    seeds: wp.array2d(dtype=float),
    n_seeds: int,
    n_links: int,
    n_joints: int,
    target_link: int,
    link_parent: wp.array(dtype=wp.int32),
    joint_type: wp.array(dtype=wp.int32),
    joint_origin: wp.array(dtype=wp.transform),
    joint_axis: wp.array(dtype=wp.vec3),
    joint_q_index: wp.array(dtype=wp.int32),
    mimic_multiplier: wp.array(dtype=float),
    mimic_offset: wp.array(dtype=float),
    lower: wp.array(dtype=float),
    upper: wp.array(dtype=float),
    max_iterations: int,
    position_tolerance: float,
    rotation_tolerance: float,
    scratch: wp.array(dtype=wp.transform),
    q_out: wp.array2d(dtype=float),
    errors_out: wp.array2d(dtype=float),
):
    tid = wp.tid()
    goal = targets[tid / n_seeds]
    goal_position = wp.transform_get_translation(goal)
    goal_rotation = wp.transform_get_rotation(goal)
    first = tid * n_links
    q = vec_dof()
    for j in range(n_joints):
        q[j] = seeds[tid, j]
    position_error = float(1.0e9)
    angle_error = float(1.0e9)
    previous = float(1.0e18)
    for iteration in range(max_iterations + 1):
        # forward kinematics into this thread's scratch
        for k in range(n_links):
            value = float(0.0)
            if joint_type[k] != 0:
                value = mimic_multiplier[k] * q[joint_q_index[k]] + mimic_offset[k]
            local = joint_transform(joint_origin[k], joint_type[k], joint_axis[k], value)
            parent = link_parent[k]
            if parent >= 0:
                local = scratch[first + parent] * local
            scratch[first + k] = local
        pose = scratch[first + target_link]
        point = wp.transform_get_translation(pose)
        e_position = goal_position - point
        e_rotation = rotation_error(goal_rotation, wp.transform_get_rotation(pose))
        position_error = wp.length(e_position)
        angle_error = wp.length(e_rotation)
        if (position_error < position_tolerance and angle_error < rotation_tolerance) or iteration == max_iterations:
            break
        total = position_error + angle_error
        if iteration > 8 and total > 0.995 * previous:
            break  # stalled in a local minimum: another seed will do better
        previous = total
        # Jacobian of the target link
        jac = mat6_dof()
        k = target_link
        while k >= 0:
            if joint_type[k] != 0:
                column = jacobian_column(scratch[first + k], joint_type[k], joint_axis[k], mimic_multiplier[k], point)
                index = joint_q_index[k]
                for r in range(6):
                    jac[r, index] = jac[r, index] + column[r]
            k = link_parent[k]
        error = vec6(e_position[0], e_position[1], e_position[2], e_rotation[0], e_rotation[1], e_rotation[2])
        # (J J^T + lambda I) y = e ; dq = J^T y, lambda from the squared error
        damping = wp.dot(error, error) + 1.0e-6
        a = mat66()
        for r in range(6):
            for c in range(6):
                s = float(0.0)
                for j in range(n_joints):
                    s += jac[r, j] * jac[c, j]
                a[r, c] = s
            a[r, r] = a[r, r] + damping
        y = solve_spd6(a, error)
        for j in range(n_joints):
            step = float(0.0)
            for r in range(6):
                step += jac[r, j] * y[r]
            q[j] = wp.clamp(q[j] + step, lower[j], upper[j])
    for j in range(n_joints):
        q_out[tid, j] = q[j]
    errors_out[tid, 0] = position_error
    errors_out[tid, 1] = angle_error


def solve_ik(
    chain: Chain,
    targets,
    link: str,
    *,
    seeds: int | np.ndarray = 8,
    retries: int = 3,
    max_iterations: int = 100,
    position_tolerance: float = 1e-4,
    rotation_tolerance: float = 1e-3,
    rng_seed: int = 0,
    device: str | None = None,
) -> IkResult:
    """Solve `link` to each of the (B, 4, 4) targets in the robot's root frame; see `Chain.ik`.

    `seeds`: a count of random seeds per target, or explicit seeds (S, n) or (B, S, n).
    Targets still unsolved are retried up to `retries` times with three times as many fresh
    random seeds: most targets converge from the first seeds, so the rest pay for the search.
    """
    if chain.n_joints > MAX_DOF:
        raise KinematicsError(f"robot {chain.name!r} has {chain.n_joints} joints; IK supports up to {MAX_DOF}")
    if isinstance(targets, wp.array):
        targets = targets.numpy()
    targets = np.asarray(targets, np.float64)
    if targets.ndim == 2:
        targets = targets[None]
    if targets.ndim != 3 or targets.shape[1:] != (4, 4):
        raise KinematicsError(f"IK targets must have shape (B, 4, 4), got {tuple(targets.shape)}")
    if not np.all(np.isfinite(targets)):
        raise KinematicsError(f"IK target {int(np.argwhere(~np.isfinite(targets))[0][0])} is not finite")
    target_link = chain.link_index(link)
    count = targets.shape[0]
    lower = np.where(np.isfinite(chain.lower), chain.lower, -1e6)
    upper = np.where(np.isfinite(chain.upper), chain.upper, 1e6)
    if isinstance(seeds, int):
        if seeds < 1:
            raise KinematicsError("IK needs at least one seed per target")
        low = np.where(np.isfinite(chain.lower), chain.lower, -np.pi)
        high = np.where(np.isfinite(chain.upper), chain.upper, np.pi)
        seed_q = np.random.default_rng(rng_seed).uniform(low, high, (count, seeds, chain.n_joints))
    else:
        seed_q = np.asarray(seeds, np.float64)
        if seed_q.ndim == 2:
            seed_q = np.broadcast_to(seed_q[None], (count, *seed_q.shape))
        if seed_q.ndim != 3 or seed_q.shape[0] != count or seed_q.shape[2] != chain.n_joints:
            raise KinematicsError(
                f"IK seeds must have shape (S, {chain.n_joints}) or ({count}, S, {chain.n_joints}), "
                f"got {tuple(np.shape(seeds))}"
            )
    n_seeds = seed_q.shape[1]
    threads = count * n_seeds
    device = device or default_device()
    padded = np.zeros((threads, MAX_DOF), np.float32)
    padded[:, : chain.n_joints] = seed_q.reshape(threads, chain.n_joints)
    with wp.ScopedDevice(device):
        q_out = wp.zeros((threads, MAX_DOF), dtype=float)
        errors = wp.zeros((threads, 2), dtype=float)
        wp.launch(
            ik_kernel, dim=threads,
            inputs=[
                wp.array(matrix_to_pose(targets).astype(np.float32), dtype=wp.transform),
                wp.array(padded, dtype=float), n_seeds, chain.n_links, chain.n_joints, target_link,
                wp.array(chain.link_parent, dtype=wp.int32), wp.array(chain.joint_type, dtype=wp.int32),
                wp.array(matrix_to_pose(chain.joint_origin).astype(np.float32), dtype=wp.transform),
                wp.array(chain.joint_axis.astype(np.float32), dtype=wp.vec3),
                wp.array(chain.joint_q_index, dtype=wp.int32),
                wp.array(chain.mimic_multiplier.astype(np.float32), dtype=float),
                wp.array(chain.mimic_offset.astype(np.float32), dtype=float),
                wp.array(lower.astype(np.float32), dtype=float), wp.array(upper.astype(np.float32), dtype=float),
                max_iterations, float(position_tolerance) * 0.1, float(rotation_tolerance) * 0.1,
                wp.zeros(threads * chain.n_links, dtype=wp.transform),
            ],
            outputs=[q_out, errors],
        )
        q_all = q_out.numpy()[:, : chain.n_joints].reshape(count, n_seeds, chain.n_joints).astype(np.float64)
        err = errors.numpy().reshape(count, n_seeds, 2).astype(np.float64)
    score = err[..., 0] / position_tolerance + err[..., 1] / rotation_tolerance
    best = np.argmin(score, axis=1)
    rows = np.arange(count)
    position_error, rotation_error_ = err[rows, best, 0], err[rows, best, 1]
    success = (position_error <= position_tolerance) & (rotation_error_ <= rotation_tolerance)
    result = IkResult(q_all[rows, best], success, position_error, rotation_error_)
    unsolved = np.flatnonzero(~success)
    if retries > 0 and unsolved.size:
        retry = solve_ik(chain, targets[unsolved], link, seeds=3 * n_seeds, retries=retries - 1,
                         max_iterations=max_iterations, position_tolerance=position_tolerance,
                         rotation_tolerance=rotation_tolerance, rng_seed=rng_seed + 1, device=device)
        better = retry.position_error / position_tolerance + retry.rotation_error / rotation_tolerance < (
            score[unsolved, best[unsolved]])
        for field, values in zip(result, retry, strict=True):
            field[unsolved[better]] = values[better]
    return result
