"""Part tracking: where every part is, from the signals a line reports.

PLCs do not report part poses. They report belt positions of tracked parts, whether a
station holds a part, whether a gripper is closed. This module turns those signals
into world transforms of the parts, which the viewer draws as instances:
- parts on conveyors: `twin:partPositions` (metres along the belt, NaN for empty
  places), placed by a Warp kernel along each conveyor's +X at its belt height;
- parts in stations: `twin:hasPart`, on the station's table or machine top;
- parts in grippers: `twin:holding`, under the robot's tool flange.
"""

from __future__ import annotations

import numpy as np
import warp as wp

from twin.core.cache import RuntimeCache, quality_name
from twin.core.stage import TwinStage
from twin.core.transforms import matrix_to_pose, pose_to_matrix
from twin.kinematics.device import default_device
from twin.sim.robots import SceneRobots

PARTS = "parts"
PART_HALF = 0.1  # parts are 0.2 m cubes; their origin is their centre


@wp.kernel
def conveyor_parts_kernel(
    belt_pose: wp.array(dtype=wp.transform),  # per conveyor: world pose of the belt start, at belt height
    slot_conveyor: wp.array(dtype=wp.int32),  # per slot: which conveyor
    position: wp.array(dtype=float),  # per slot: metres along the belt, NaN when empty
    half_size: float,
    part_pose: wp.array(dtype=wp.transform),
    active: wp.array(dtype=wp.int32),
):
    slot = wp.tid()
    s = position[slot]
    if wp.isnan(s):
        active[slot] = 0
        return
    along = wp.transform(wp.vec3(s, 0.0, half_size), wp.quat_identity())
    part_pose[slot] = belt_pose[slot_conveyor[slot]] * along
    active[slot] = 1


class PartTracker:
    """Derives the `parts` instance set of the cache from line signals each tick."""

    def __init__(self, twin_stage: TwinStage, cache: RuntimeCache, robots: SceneRobots,
                 *, device: str | None = None):
        self.cache = cache
        self.robots = robots
        self.device = device or default_device()
        conveyors = twin_stage.prims_of_kind("conveyor")
        self.position_rows: list[int] = []
        belt_poses, slot_conveyor = [], []
        for index, prim in enumerate(conveyors):
            path = str(prim.GetPath())
            capacity = int(twin_stage.attribute(path, "twin:capacity", 8))
            self.position_rows.append(cache.add_signal(path, "twin:partPositions", width=capacity, unit="m"))
            belt = twin_stage.world_transform(path)
            belt = belt @ _translation(0.0, 0.0, float(twin_stage.attribute(path, "twin:beltHeight", 0.75)))
            belt_poses.append(belt)
            slot_conveyor += [index] * capacity
        self.n_slots = len(slot_conveyor)
        self.stations = []  # (hasPart row, world pose of a part sitting on it)
        for prim in twin_stage.prims_of_kind("station"):
            path = str(prim.GetPath())
            top = float(twin_stage.attribute(path, "twin:tableHeight", 0.8))
            pose = twin_stage.world_transform(path) @ _translation(0.0, 0.0, top + PART_HALF)
            self.stations.append((cache.add_signal(path, "twin:hasPart", kind="bool"), pose))
        self.grippers = []  # (holding row, robot index)
        for index, robot in enumerate(robots.robots):
            if "tool0" in robot.chain.link_names:
                self.grippers.append((cache.add_signal(robot.path, "twin:holding", kind="bool"), index))
        capacity = self.n_slots + len(self.stations) + len(self.grippers)
        cache.add_instance_set(PARTS, capacity)
        self.transforms = np.tile(np.eye(4), (capacity, 1, 1))
        self.active = np.zeros(capacity, bool)
        with wp.ScopedDevice(self.device):
            self._belt_pose = wp.array(matrix_to_pose(np.array(belt_poses).reshape(-1, 4, 4)), dtype=wp.transform)
            self._slot_conveyor = wp.array(np.array(slot_conveyor, np.int32), dtype=wp.int32)
            self._position = wp.zeros(max(self.n_slots, 1), dtype=float)
            self._part_pose = wp.zeros(max(self.n_slots, 1), dtype=wp.transform)
            self._slot_active = wp.zeros(max(self.n_slots, 1), dtype=wp.int32)

    def update(self) -> None:
        cache = self.cache
        if self.n_slots:
            positions = np.concatenate([self._usable(row, nan_if_bad=True) for row in self.position_rows])
            self._position.assign(positions.astype(np.float32))
            wp.launch(conveyor_parts_kernel, dim=self.n_slots,
                      inputs=[self._belt_pose, self._slot_conveyor, self._position, PART_HALF],
                      outputs=[self._part_pose, self._slot_active], device=self.device)
            self.transforms[: self.n_slots] = pose_to_matrix(self._part_pose.numpy())
            self.active[: self.n_slots] = self._slot_active.numpy() > 0
        slot = self.n_slots
        for row, pose in self.stations:
            self.active[slot] = self._usable(row)[0] > 0.5
            self.transforms[slot] = pose
            slot += 1
        for row, robot_index in self.grippers:
            holding = self._usable(row)[0] > 0.5
            self.active[slot] = holding
            if holding:
                flange = self.robots.link_world(robot_index, "tool0")
                self.transforms[slot] = flange @ _translation(0.0, 0.0, PART_HALF)
            slot += 1
        cache.write_instances(PARTS, self.transforms, self.active)

    def _usable(self, row: int, nan_if_bad: bool = False) -> np.ndarray:
        values = self.cache.signal_values(row)
        if quality_name(self.cache.status[row]) == "bad":
            return np.full(values.shape, np.nan if nan_if_bad else 0.0)
        return np.nan_to_num(values, nan=np.nan if nan_if_bad else 0.0)


def _translation(x: float, y: float, z: float) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = (x, y, z)
    return matrix
