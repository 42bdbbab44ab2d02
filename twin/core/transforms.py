"""Rigid transforms as numpy: 4x4 matrices and Warp's pose layout (position, quaternion x y z w).

Numpy only, so the stream, the SDK and the connectors convert poses without importing Warp.
"""

from __future__ import annotations

import numpy as np


def matrix_to_pose(matrix: np.ndarray) -> np.ndarray:
    """4x4 rigid transforms (..., 4, 4) -> Warp pose layout (..., 7): position, quaternion x y z w.

    Shepperd's method, vectorised: each rotation takes the branch with the largest pivot, so it is
    robust for every rotation (the stream converts thousands of transforms per frame with it).
    """
    matrix = np.asarray(matrix, np.float64)
    r = matrix[..., :3, :3].reshape(-1, 3, 3)
    r00, r11, r22 = r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]
    trace = r00 + r11 + r22
    first = trace > 0
    second = ~first & (r00 > r11) & (r00 > r22)
    third = ~first & ~second & (r11 > r22)
    fourth = ~(first | second | third)
    quats = np.empty((r.shape[0], 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        branches = (
            (first, 2.0 * np.sqrt(np.maximum(trace + 1.0, 0.0)),
             lambda s: ((r[:, 2, 1] - r[:, 1, 2]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s,
                        (r[:, 1, 0] - r[:, 0, 1]) / s, 0.25 * s)),
            (second, 2.0 * np.sqrt(np.maximum(1.0 + r00 - r11 - r22, 0.0)),
             lambda s: (0.25 * s, (r[:, 0, 1] + r[:, 1, 0]) / s, (r[:, 0, 2] + r[:, 2, 0]) / s,
                        (r[:, 2, 1] - r[:, 1, 2]) / s)),
            (third, 2.0 * np.sqrt(np.maximum(1.0 + r11 - r00 - r22, 0.0)),
             lambda s: ((r[:, 0, 1] + r[:, 1, 0]) / s, 0.25 * s, (r[:, 1, 2] + r[:, 2, 1]) / s,
                        (r[:, 0, 2] - r[:, 2, 0]) / s)),
            (fourth, 2.0 * np.sqrt(np.maximum(1.0 + r22 - r00 - r11, 0.0)),
             lambda s: ((r[:, 0, 2] + r[:, 2, 0]) / s, (r[:, 1, 2] + r[:, 2, 1]) / s, 0.25 * s,
                        (r[:, 1, 0] - r[:, 0, 1]) / s)),
        )
        for mask, pivot, components in branches:
            if mask.any():
                quats[mask] = np.stack(components(pivot), axis=1)[mask]
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    return np.concatenate([matrix[..., :3, 3].reshape(-1, 3), quats], axis=1).reshape(*matrix.shape[:-2], 7)


def pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """Warp pose layout (..., 7) -> 4x4 rigid transforms (..., 4, 4)."""
    pose = np.asarray(pose, np.float64)
    x, y, z, w = (pose[..., i] for i in range(3, 7))
    matrix = np.zeros((*pose.shape[:-1], 4, 4))
    matrix[..., 0, 0] = 1 - 2 * (y * y + z * z)
    matrix[..., 0, 1] = 2 * (x * y - z * w)
    matrix[..., 0, 2] = 2 * (x * z + y * w)
    matrix[..., 1, 0] = 2 * (x * y + z * w)
    matrix[..., 1, 1] = 1 - 2 * (x * x + z * z)
    matrix[..., 1, 2] = 2 * (y * z - x * w)
    matrix[..., 2, 0] = 2 * (x * z - y * w)
    matrix[..., 2, 1] = 2 * (y * z + x * w)
    matrix[..., 2, 2] = 1 - 2 * (x * x + y * y)
    matrix[..., :3, 3] = pose[..., :3]
    matrix[..., 3, 3] = 1.0
    return matrix
