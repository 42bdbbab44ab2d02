"""Sensors read from physics: photo-eyes, part-present switches and belt encoders (docs/physics.md).

Their readings enter the runtime cache as signals with a quality and a source time, as OPC-UA values do, so
alarms, the historian, the stream and the SDK treat them like any other signal. They are written under
`twin:physics:*` attributes: a layout fed by a PLC keeps the PLC's own readings of the same devices beside them.

- a photo-eye (`twin:sensorType = "photoEye"`) is a ray from the sensor's origin along its local +Y, as long as
  the reflector is far (`BEAM_LENGTH`), tested against every part's box; a rising edge between two readings is
  dated back to the instant the part's leading face met the beam (its velocity is constant over a tick);
- a part-present switch is a box over a station's top: on while a part's centre is inside it;
- a belt encoder is the belt's travel in metres, the integral of its speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pxr import Usd, UsdGeom

from twin.core.cache import GOOD, RuntimeCache

BEAM_LENGTH = 0.7  # metres: a photo-eye looks at a reflector across the belt (twin.scenes.sensor)
OCCUPIED, HAS_PART, ENCODER = "twin:physics:occupied", "twin:physics:hasPart", "twin:physics:encoder"


@dataclass(frozen=True)
class PhotoEye:
    path: str
    origin: np.ndarray  # world, metres
    direction: np.ndarray  # unit vector along the beam
    row: int


@dataclass(frozen=True)
class PartSwitch:
    path: str
    centre: np.ndarray
    half_extents: np.ndarray  # world axis-aligned
    row: int


def quaternion_matrices(quaternions: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations of (n, 4) quaternions x, y, z, w."""
    x, y, z, w = np.moveaxis(np.asarray(quaternions, np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def beam_blocked(origin: np.ndarray, direction: np.ndarray, length: float, poses: np.ndarray,
                 half_size: float) -> np.ndarray:
    """Which cubes (poses (n, 7), edge 2 * half_size) the segment origin + s * direction, 0 <= s <= length, meets."""
    if not len(poses):
        return np.zeros(0, bool)
    rotations = quaternion_matrices(poses[:, 3:7])
    local_origin = np.einsum("nji,nj->ni", rotations, origin - poses[:, :3])  # R^T (o - c)
    local_direction = np.einsum("nji,j->ni", rotations, direction)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half_size - local_origin) / local_direction
        t2 = (half_size - local_origin) / local_direction
    parallel = np.abs(local_direction) < 1e-12
    inside = np.abs(local_origin) <= half_size
    near = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
    far = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
    enter, leave = np.max(near, axis=1), np.min(far, axis=1)
    return (enter <= leave) & (leave >= 0.0) & (enter <= length)


class PhysicsSensors:
    """The layout's photo-eyes, a switch on every station and an encoder on every belt, written to `cache`."""

    def __init__(self, stage: Usd.Stage, cache: RuntimeCache, *, part_size: float, belts: tuple[str, ...]):
        self.cache, self.half = cache, part_size / 2
        xforms = UsdGeom.XformCache()
        self.eyes: list[PhotoEye] = []
        self.switches: list[PartSwitch] = []
        for prim in stage.Traverse():
            kind, path = prim.GetAttribute("twin:kind").Get(), str(prim.GetPath())
            if kind == "sensor" and prim.GetAttribute("twin:sensorType").Get() == "photoEye":
                world = np.array(xforms.GetLocalToWorldTransform(prim), np.float64).T
                axis = world[:3, 1] / np.linalg.norm(world[:3, 1])
                self.eyes.append(PhotoEye(path, world[:3, 3].copy(), axis,
                                          cache.add_signal(path, OCCUPIED, kind="bool")))
            elif kind == "station":
                world = np.array(xforms.GetLocalToWorldTransform(prim), np.float64).T
                top = float(prim.GetAttribute("twin:tableHeight").Get() or 0.8)
                centre = world[:3, 3] + np.array([0.0, 0.0, top + self.half])
                self.switches.append(PartSwitch(path, centre, np.array([2.0, 2.0, 1.5]) * self.half,
                                                cache.add_signal(path, HAS_PART, kind="bool")))
        self.belts = belts
        self.encoder_rows = [cache.add_signal(belt, ENCODER, unit="m") for belt in belts]
        self.travel = np.zeros(len(belts))
        self.occupied = np.zeros(len(self.eyes), bool)
        self.rising_edges: list[list[float]] = [[] for _ in self.eyes]  # times of each eye's rising edges

    def update(self, time: float, dt: float, poses: np.ndarray, velocities: np.ndarray, speeds: np.ndarray,
               *, epoch: float = 0.0) -> None:
        """Read every sensor at physics time `time` (`dt` after the last reading) and write what changed.

        `poses` (n, 7) and `velocities` (n, 6) are the parts' (physics and held ones); `speeds` the belts' in
        `belts` order over the last `dt`. Source times are `epoch + time`, or the edge's own instant.
        """
        cache = self.cache
        self.travel += np.asarray(speeds, np.float64) * dt
        for row, travel in zip(self.encoder_rows, self.travel, strict=True):
            cache.write_signal(row, float(travel), status=GOOD, source_time=epoch + time)
        for index, eye in enumerate(self.eyes):
            blocked = beam_blocked(eye.origin, eye.direction, BEAM_LENGTH, poses, self.half)
            occupied = bool(blocked.any())
            if occupied == self.occupied[index] and math.isfinite(cache.signal_values(eye.row)[0]):
                continue
            edge = time
            if occupied:  # when the first part's leading face met the beam, at its current velocity
                edge = max(time - dt, min(self._entry_time(eye, poses[blocked], velocities[blocked], time), time))
                self.rising_edges[index].append(edge)
            self.occupied[index] = occupied
            cache.write_signal(eye.row, occupied, status=GOOD, source_time=epoch + edge)
        for switch in self.switches:
            present = bool(np.any(np.all(np.abs(poses[:, :3] - switch.centre) <= switch.half_extents, axis=1))) \
                if len(poses) else False
            if cache.signal_values(switch.row)[0] != float(present):
                cache.write_signal(switch.row, present, status=GOOD, source_time=epoch + time)

    def _entry_time(self, eye: PhotoEye, poses: np.ndarray, velocities: np.ndarray, time: float) -> float:
        """The instant the first of these parts entered the beam, moving back along its velocity."""
        entries = []
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * self.half
        for pose, velocity in zip(poses, velocities, strict=True):
            speed = float(np.linalg.norm(velocity[:3]))
            if speed < 1e-6:
                entries.append(time)
                continue
            heading = velocity[:3] / speed
            world = pose[:3] + corners @ quaternion_matrices(pose[None, 3:7])[0].T
            depth = float(np.max(world @ heading) - eye.origin @ heading)  # leading face past the beam
            entries.append(time - max(depth, 0.0) / speed)
        return min(entries)
