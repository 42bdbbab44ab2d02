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

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import warp as wp

from twin.core.errors import KinematicsError
from twin.core.transforms import matrix_to_pose
from twin.kinematics.device import default_device
from twin.kinematics.kernels import MAX_DOF, ik_kernel

if TYPE_CHECKING:
    from twin.kinematics.chain import Chain


class IkResult(NamedTuple):
    q: np.ndarray  # (B, n) best solution per target
    success: np.ndarray  # (B,) bool
    position_error: np.ndarray  # (B,) metres
    rotation_error: np.ndarray  # (B,) radians


def solve_ik(
    chain: Chain,
    targets: np.ndarray | wp.array,
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
    targets = _checked_targets(targets)
    target_link = chain.link_index(link)
    seed_q = _seed_configurations(chain, seeds, targets.shape[0], rng_seed)
    device = device or default_device()
    q_all, err = _solve_on_device(chain, targets, seed_q, target_link, max_iterations,
                                  position_tolerance, rotation_tolerance, device)
    score = err[..., 0] / position_tolerance + err[..., 1] / rotation_tolerance
    best = np.argmin(score, axis=1)
    rows = np.arange(targets.shape[0])
    position_error, rotation_error = err[rows, best, 0], err[rows, best, 1]
    success = (position_error <= position_tolerance) & (rotation_error <= rotation_tolerance)
    result = IkResult(q_all[rows, best], success, position_error, rotation_error)
    unsolved = np.flatnonzero(~success)
    if retries > 0 and unsolved.size:
        retry = solve_ik(chain, targets[unsolved], link, seeds=3 * seed_q.shape[1], retries=retries - 1,
                         max_iterations=max_iterations, position_tolerance=position_tolerance,
                         rotation_tolerance=rotation_tolerance, rng_seed=rng_seed + 1, device=device)
        better = retry.position_error / position_tolerance + retry.rotation_error / rotation_tolerance < (
            score[unsolved, best[unsolved]])
        for field, values in zip(result, retry, strict=True):
            field[unsolved[better]] = values[better]
    return result


def _checked_targets(targets: np.ndarray | wp.array) -> np.ndarray:
    if isinstance(targets, wp.array):
        targets = targets.numpy()
    targets = np.asarray(targets, np.float64)
    if targets.ndim == 2:
        targets = targets[None]
    if targets.ndim != 3 or targets.shape[1:] != (4, 4):
        raise KinematicsError(f"IK targets must have shape (B, 4, 4), got {tuple(targets.shape)}")
    if not np.all(np.isfinite(targets)):
        raise KinematicsError(f"IK target {int(np.argwhere(~np.isfinite(targets))[0][0])} is not finite")
    return targets


def _seed_configurations(chain: Chain, seeds: int | np.ndarray, count: int, rng_seed: int) -> np.ndarray:
    """(count, S, n) start configurations: S uniform random ones within the limits, or the given ones."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise KinematicsError("IK needs at least one seed per target")
        low = np.where(np.isfinite(chain.lower), chain.lower, -np.pi)
        high = np.where(np.isfinite(chain.upper), chain.upper, np.pi)
        return np.random.default_rng(rng_seed).uniform(low, high, (count, seeds, chain.n_joints))
    seed_q = np.asarray(seeds, np.float64)
    if seed_q.ndim == 2:
        seed_q = np.broadcast_to(seed_q[None], (count, *seed_q.shape))
    if seed_q.ndim != 3 or seed_q.shape[0] != count or seed_q.shape[2] != chain.n_joints:
        raise KinematicsError(
            f"IK seeds must have shape (S, {chain.n_joints}) or ({count}, S, {chain.n_joints}), "
            f"got {tuple(np.shape(seeds))}"
        )
    return seed_q


def _solve_on_device(chain: Chain, targets: np.ndarray, seed_q: np.ndarray, target_link: int, max_iterations: int,
                     position_tolerance: float, rotation_tolerance: float,
                     device: str) -> tuple[np.ndarray, np.ndarray]:
    """One launch, one thread per (target, seed): solutions (B, S, n) and their errors (B, S, 2)."""
    count, n_seeds, n_joints = seed_q.shape
    threads = count * n_seeds
    padded = np.zeros((threads, MAX_DOF), np.float32)
    padded[:, :n_joints] = seed_q.reshape(threads, n_joints)
    model = chain.device_arrays(device)
    with wp.ScopedDevice(device):
        q_out = wp.zeros((threads, MAX_DOF), dtype=float)
        errors = wp.zeros((threads, 2), dtype=float)
        wp.launch(
            ik_kernel, dim=threads,
            inputs=[
                wp.array(matrix_to_pose(targets).astype(np.float32), dtype=wp.transform),
                wp.array(padded, dtype=float), n_seeds, chain.n_links, n_joints, target_link,
                model.links, model.lower, model.upper,
                max_iterations, float(position_tolerance) * 0.1, float(rotation_tolerance) * 0.1,
                wp.zeros(threads * chain.n_links, dtype=wp.transform),
            ],
            outputs=[q_out, errors],
        )
        q_all = q_out.numpy()[:, :n_joints].reshape(count, n_seeds, n_joints).astype(np.float64)
        return q_all, errors.numpy().reshape(count, n_seeds, 2).astype(np.float64)
