"""The commissioning plant with its belts on Newton physics (`twin commission --physics`, docs/commissioning.md).

Parts on belts are rigid bodies: they ride the belts by friction at the speed the controller sets, queue
against a stopper body at each belt's end while `Stopper` is raised, and fall off a belt whose stopper is
lowered with nobody taking the part. Photo-eyes are ray casts against the parts' boxes, `PartAtStart` and
`PartAtEnd` come from where the parts are. Stations and robots stay as in twin.commission.plant: a part on a
station table or in a gripper is held kinematically, as in the runtime's physics line (twin.sim.physics_runtime).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from pxr import Usd, UsdGeom

from twin.physics.model import PhysicsModel, PhysicsState
from twin.physics.sensors import BEAM_LENGTH, beam_blocked
from twin.physics.shapes import LayoutShapes, end_stop, read_shapes

from .plant import Conveyor, Part, Plant

log = logging.getLogger("twin.commission")
END_TOLERANCE = 0.02  # metres: a part's centre this close to its place at the stopper is at the belt's end
DROP = 0.5  # metres below the belt's top: a part this low has fallen off the line


@dataclass
class PhysicsConveyor(Conveyor):
    """A belt whose parts are bodies in `state`; `parts` mirrors them, lead part last, after every physics step."""

    state: PhysicsState | None = None
    world: np.ndarray = field(default_factory=lambda: np.eye(4))  # belt start on the floor, +X along it
    height: float = 0.75
    stopper_path: str = ""
    beams: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # per eye: origin, direction
    bodies: dict[int, int] = field(default_factory=dict)  # part id -> physics part
    poses: dict[int, np.ndarray] = field(default_factory=dict)  # physics part -> pose, after the last step
    lost: int = 0  # parts that fell off the belt

    def receive(self, part: Part) -> None:
        assert self.state is not None, "the physics plant wires its belts before the first part"
        start = self.world[:3, :3] @ np.array([self.half + 0.005, 0.0, self.height + self.half + 0.001])
        self.bodies[part.id] = self.state.spawn_part(start + self.world[:3, 3])
        super().receive(part)

    def pop_lead(self) -> Part:
        part = super().pop_lead()
        assert self.state is not None
        self.state.remove_part(self.bodies.pop(part.id))
        return part

    def advance(self, dt: float) -> None:
        self.travel += self.speed * dt  # physics moved the parts; the encoder counts the belt

    def sync(self, poses: dict[int, np.ndarray]) -> None:
        """Parts' places along the belt from their bodies; a part that fell off leaves the line."""
        assert self.state is not None
        self.poses = poses
        kept = []
        for part in self.parts:
            body = self.bodies[part.id]
            local = (poses[body][:3] - self.world[:3, 3]) @ self.world[:3, :3]
            if local[2] < self.height - DROP:
                self.state.remove_part(self.bodies.pop(part.id))
                self.lost += 1
                log.warning("%s: part %d fell off the belt", self.element.path, part.id)
                continue
            part.position = float(local[0])
            kept.append(part)
        self.parts = sorted(kept, key=lambda part: part.position)

    def part_at_end(self) -> bool:
        return bool(self.parts) and self.parts[-1].position >= self.end - END_TOLERANCE

    def update_eyes(self) -> None:
        """Ray casts against the parts still on the belt (one put on it this cycle is seen from the next)."""
        parts = [part for part in self.parts if self.bodies[part.id] in self.poses]
        boxes = np.array([self.poses[self.bodies[part.id]] for part in parts]) if parts else np.zeros((0, 7))
        for eye, (origin, direction) in zip(self.eyes, self.beams, strict=True):
            blocked = beam_blocked(origin, direction, BEAM_LENGTH, boxes, self.part_length / 2)
            inside = {part.id for part, hit in zip(parts, blocked, strict=True) if hit}
            eye.parts_passed += len(inside - eye.seen)
            eye.seen, eye.occupied = inside, bool(inside)


class PhysicsPlant(Plant):
    """Plant whose belts run on physics; `device` as for PhysicsModel ("cpu", or "cuda:0")."""

    conveyor_type = PhysicsConveyor

    def __init__(self, stage: Usd.Stage, *, dt: float = 0.05, seed: int = 1, device: str = "cpu"):
        super().__init__(stage, dt=dt, seed=seed)
        shapes = read_shapes(stage)
        xforms = UsdGeom.XformCache()
        belts = {box.owner: box for box in shapes.belts}
        authored = {box.owner.rsplit("/", 1)[0]: box.owner for box in shapes.stoppers}
        extra = []
        self.belts: dict[str, PhysicsConveyor] = {}
        for conveyor in self.conveyors.values():
            assert isinstance(conveyor, PhysicsConveyor)
            path = conveyor.element.path
            if path not in belts:
                raise self.model.error(path, "the conveyor has no belt collision box (UsdPhysics) to run on physics")
            if path not in authored:
                extra.append(end_stop(belts[path], "Stopper"))
                authored[path] = extra[-1].owner
            prim = stage.GetPrimAtPath(path)
            conveyor.world = np.array(xforms.GetLocalToWorldTransform(prim), np.float64).T
            height = prim.GetAttribute("twin:beltHeight")
            conveyor.height = float(height.Get()) if height and height.Get() is not None else 0.75
            conveyor.stopper_path = authored[path]
            for eye in conveyor.eyes:
                world = np.array(xforms.GetLocalToWorldTransform(prim.GetChild(eye.name)), np.float64).T
                conveyor.beams.append((world[:3, 3].copy(), world[:3, 1] / np.linalg.norm(world[:3, 1])))
            self.belts[path] = conveyor
        shapes = LayoutShapes(shapes.static, shapes.belts, shapes.stoppers + tuple(extra), shapes.part_size)
        parts = sum(conveyor.capacity for conveyor in self.conveyors.values()) + 2
        self.physics = PhysicsModel(shapes, device=device, max_parts=parts, part_size=self._part_size())
        self.state = self.physics.new_state()
        for conveyor in self.belts.values():
            conveyor.state = self.state
        self._driven: dict[str, tuple[float, bool]] = {}

    def _part_size(self) -> float:
        sizes = {conveyor.part_length for conveyor in self.conveyors.values()}
        if len(sizes) != 1 or not min(sizes) > 0:
            raise self.model.error(next(iter(self.conveyors.values())).element.path,
                                   f"physics needs one twin:partLength > 0 on every belt, found {sorted(sizes)}")
        return sizes.pop()

    @property
    def parts_lost(self) -> int:
        return sum(conveyor.lost for conveyor in self.belts.values())

    def step(self) -> None:
        """The belts' speeds and stoppers as the controller set them, physics to the cycle's end, then the rest."""
        for path, conveyor in self.belts.items():
            driven = (conveyor.speed, conveyor.stopper)
            if self._driven.get(path) != driven:
                self.state.set_belt_speed(path, conveyor.speed)
                self.state.set_stopper(conveyor.stopper_path, conveyor.stopper)
                self._driven[path] = driven
        self.physics.advance_to(self.state, (self.cycles + 1) * self.dt)
        poses = dict(zip(self.state.parts().tolist(), self.state.part_poses(), strict=True))
        for conveyor in self.belts.values():
            conveyor.sync(poses)
        super().step()
