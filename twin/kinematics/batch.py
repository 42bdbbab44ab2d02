"""Several chains, with any number of instances each, evaluated by one kernel launch.

Every robot of a scene (or thousands of configurations of one robot) is one thread of the
FK kernel. Joint values and link transforms are the mutable state, kept in separate arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import warp as wp

from twin.core.errors import KinematicsError
from twin.core.transforms import matrix_to_pose, pose_to_matrix
from twin.kinematics.arrays import link_records
from twin.kinematics.device import default_device
from twin.kinematics.kernels import LinkJoint, forward_kinematics_kernel, jacobian_kernel

if TYPE_CHECKING:
    from twin.kinematics.chain import Chain


class KinematicsBatch:
    """Many instances of one or more chains, evaluated together.

    `instance_chains[i]` says which chain instance `i` is; its joints occupy
    `q_slices[i]` of the flat joint vector and its links `link_slices[i]` of the output.
    """

    def __init__(self, chains: Sequence[Chain], instance_chains: Sequence[int], *, device: str | None = None):
        self.device = device or default_device()
        self.chains = tuple(chains)
        self.instance_chains = np.asarray(instance_chains, np.int32)
        if self.instance_chains.size == 0:
            raise KinematicsError("a kinematics batch needs at least one robot instance")
        link_counts = np.array([c.n_links for c in self.chains], np.int32)
        joint_counts = np.array([c.n_joints for c in self.chains], np.int32)
        chain_link_start = np.concatenate([[0], np.cumsum(link_counts)[:-1]]).astype(np.int32)
        per_instance_links = link_counts[self.instance_chains]
        per_instance_joints = joint_counts[self.instance_chains]
        self.out_start = np.concatenate([[0], np.cumsum(per_instance_links)[:-1]]).astype(np.int32)
        self.q_start = np.concatenate([[0], np.cumsum(per_instance_joints)[:-1]]).astype(np.int32)
        self.n_q = int(per_instance_joints.sum())
        self.n_out = int(per_instance_links.sum())
        self.link_slices = [slice(s, s + n) for s, n in zip(self.out_start, per_instance_links, strict=True)]
        self.q_slices = [slice(s, s + n) for s, n in zip(self.q_start, per_instance_joints, strict=True)]
        instances = len(self.instance_chains)
        with wp.ScopedDevice(self.device):
            self._instance_chain: wp.array = wp.array(self.instance_chains, dtype=wp.int32)
            self._instance_q_start: wp.array = wp.array(self.q_start, dtype=wp.int32)
            self._instance_out_start: wp.array = wp.array(self.out_start, dtype=wp.int32)
            identity = matrix_to_pose(np.tile(np.eye(4), (instances, 1, 1)))
            self._instance_base: wp.array = wp.array(identity, dtype=wp.transform)
            self._chain_link_start: wp.array = wp.array(chain_link_start, dtype=wp.int32)
            self._chain_link_count: wp.array = wp.array(link_counts, dtype=wp.int32)
            self._links: wp.array = wp.array(link_records(self.chains), dtype=LinkJoint)
            self.q = wp.zeros(max(self.n_q, 1), dtype=float)
            self.link_world = wp.zeros(self.n_out, dtype=wp.transform)

    def set_base(self, bases: np.ndarray) -> None:
        """World pose (4x4) of each instance's root."""
        self._instance_base.assign(matrix_to_pose(bases).astype(np.float32))

    def forward(self, q: np.ndarray | wp.array) -> np.ndarray:
        """Flat joint vector in, (n_out, 4, 4) link transforms out."""
        if isinstance(q, wp.array):
            wp.copy(self.q, q)
        else:
            q = np.asarray(q, np.float32).reshape(-1)
            if q.size != self.n_q:
                raise KinematicsError(f"expected {self.n_q} joint values, got {q.size}")
            if self.n_q:
                self.q.assign(q)
        self.launch()
        return pose_to_matrix(self.link_world.numpy())

    def jacobian(self, target_link: int) -> np.ndarray:
        """Jacobians (instances, 6, n) of one link, after `forward`; all instances must be one chain."""
        chain = self.chains[0]
        if len(self.chains) != 1:
            raise KinematicsError("Jacobians are computed for batches of a single chain")
        out = wp.zeros((len(self.instance_chains), 6, chain.n_joints), dtype=float, device=self.device)
        wp.launch(jacobian_kernel, dim=len(self.instance_chains),
                  inputs=[self.link_world, self._links, chain.n_links, target_link], outputs=[out],
                  device=self.device)
        return out.numpy().astype(np.float64)

    def launch(self) -> None:
        wp.launch(
            forward_kinematics_kernel, dim=len(self.instance_chains),
            inputs=[self._instance_chain, self._instance_q_start, self._instance_out_start, self._instance_base,
                    self._chain_link_start, self._chain_link_count, self._links, self.q],
            outputs=[self.link_world], device=self.device,
        )

    @cached_property
    def chain_of_instance(self) -> list[Chain]:
        return [self.chains[c] for c in self.instance_chains]
