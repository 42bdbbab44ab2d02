"""A chain's model arrays on a Warp device, packed the way the kernels read them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import warp as wp

from twin.core.transforms import matrix_to_pose
from twin.kinematics.kernels import LinkJoint

if TYPE_CHECKING:
    from twin.kinematics.chain import Chain

_FAR = 1e6  # an infinite joint limit, as the IK kernel clamps to it


def link_records(chains: Sequence[Chain]) -> np.ndarray:
    """One `LinkJoint` record per link of every chain, chains one after the other (a numpy structured array)."""
    def cat(attribute: str) -> np.ndarray:
        return np.concatenate([getattr(chain, attribute) for chain in chains])

    count = sum(chain.n_links for chain in chains)
    records: np.ndarray[Any, np.dtype[np.void]] = np.zeros(count, dtype=np.dtype(LinkJoint.numpy_dtype()))
    records["origin"] = matrix_to_pose(cat("joint_origin"))
    records["axis"] = cat("joint_axis")
    records["parent"] = cat("link_parent")
    records["kind"] = cat("joint_type")
    records["q_index"] = cat("joint_q_index")
    records["multiplier"] = cat("mimic_multiplier")
    records["offset"] = cat("mimic_offset")
    return records


class ChainArrays:
    """One chain uploaded to one device: its links and its joint limits (infinite ones made finite)."""

    def __init__(self, chain: Chain, device: str):
        self.device = device
        with wp.ScopedDevice(device):
            self.links: wp.array = wp.array(link_records([chain]), dtype=LinkJoint)
            self.lower: wp.array = wp.array(np.where(np.isfinite(chain.lower), chain.lower, -_FAR).astype(np.float32),
                                  dtype=float)
            self.upper: wp.array = wp.array(np.where(np.isfinite(chain.upper), chain.upper, _FAR).astype(np.float32),
                                  dtype=float)
