"""The plant half of a line: what the machines do with the controller's outputs, generic over a layout.

Read from the same USD as the line model (twin.line.model.read_line: `twin:kind`, `twin:next`, process
parameters) plus the photo-eyes authored on conveyors (`twin:sensorType = "photoEye"`). Nothing moves by
itself except parts arriving at sources: belts carry parts only while the controller runs them, a part
passes a belt's end only when its stopper is lowered, stations process only when started, robots run their
taught route only when told to. `step(dt)` advances the plant one cycle; inputs are read from its state.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pxr import Usd, UsdGeom

from twin.line.model import BUFFER, CONVEYOR, ROBOT, SINK, SOURCE, STATION, Element, LineModel, read_line

if TYPE_CHECKING:
    from twin.kinematics.trajectory import JointMoves

ENCODER_COUNTS_PER_M = 1000  # one encoder count per millimetre of belt travel
ENCODER_WRAP = 2**32  # the count is a UInt32 and wraps like a real counter card
PROGRAM_PICK_AND_PLACE = 1  # the one program a robot knows: its taught route (`twin:route`)


def _sample(rng: random.Random, mean: float, spread: float, distribution: str) -> float:
    """A duration with the line model's distributions (spread: coefficient of variation)."""
    if distribution == "constant" or mean <= 0:
        return mean
    if distribution == "exponential":
        return rng.expovariate(1.0 / mean)
    if distribution == "lognormal" and spread > 0:
        sigma = math.sqrt(math.log(1.0 + spread * spread))
        return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)
    return max(0.05 * mean, rng.gauss(mean, mean * spread))


@dataclass
class Part:
    id: int
    position: float = 0.0  # centre, metres from the belt's start


@dataclass
class PhotoEye:
    name: str
    position: float  # along the belt, metres from its start
    occupied: bool = False
    seen: set[int] = field(default_factory=set)  # parts in the beam now
    parts_passed: int = 0  # parts that entered the beam: what a controller's rising-edge count must equal


class PlantElement:
    """An element parts can be handed to; `accepts()` says whether it can take one now."""

    element: Element

    def accepts(self) -> bool:
        return False

    def receive(self, part: Part) -> None:
        raise NotImplementedError


@dataclass
class Conveyor(PlantElement):
    element: Element
    eyes: list[PhotoEye]
    run: bool = False
    speed_setpoint: float = 0.0
    stopper: bool = True  # raised: parts wait at the belt's end
    parts: list[Part] = field(default_factory=list)  # ascending positions
    travel: float = 0.0  # belt metres run so far (the encoder)
    drive_failed: bool = False  # failed on demand (twin.commission.forcing): the belt stands though commanded

    def __post_init__(self) -> None:
        p = self.element.parameters
        self.length, self.pitch, self.nominal = p["twin:length"], p["twin:partPitch"], p["twin:speed"]
        self.part_length = p["twin:partLength"]
        self.capacity = int(p["twin:capacity"])
        self.max_speed = 2.0 * self.nominal
        self.half = self.part_length / 2
        self.beam_half = self.half if self.part_length > 0 else self.pitch / 4  # a point part still breaks a beam

    @property
    def speed(self) -> float:
        return self.speed_setpoint if self.run and not self.drive_failed else 0.0

    @property
    def end(self) -> float:
        return self.length - self.half

    def part_at_end(self) -> bool:
        return bool(self.parts) and self.parts[-1].position >= self.end - 1e-9

    def part_at_start(self) -> bool:
        return bool(self.parts) and self.parts[0].position < self.half + self.pitch - 1e-9

    def accepts(self) -> bool:
        return len(self.parts) < self.capacity and not self.part_at_start()

    def receive(self, part: Part) -> None:
        part.position = self.half
        self.parts.insert(0, part)

    def pop_lead(self) -> Part:
        """Take the lead part off the belt (handed on or picked)."""
        return self.parts.pop()

    def advance(self, dt: float) -> None:
        travel = self.speed * dt
        self.travel += travel
        limit = self.end
        for part in reversed(self.parts):  # the lead part first; the others keep their pitch behind it
            part.position = min(part.position + travel, limit)
            limit = part.position - self.pitch

    def update_eyes(self) -> None:
        for eye in self.eyes:
            inside = {part.id for part in self.parts if abs(part.position - eye.position) <= self.beam_half}
            eye.parts_passed += len(inside - eye.seen)
            eye.seen, eye.occupied = inside, bool(inside)

    @property
    def encoder(self) -> int:
        return int(round(self.travel * ENCODER_COUNTS_PER_M)) % ENCODER_WRAP


@dataclass
class Station(PlantElement):
    element: Element
    rng: random.Random
    distribution: str
    start: bool = False
    unload: bool = False
    part: Part | None = None
    working: bool = False
    done: bool = False
    fault: bool = False
    repair_left: float = 0.0
    remaining: float = 0.0
    failure_in: float = math.inf
    parts_done: int = 0
    title: str = ""  # twin:title, served as its OPC 40001 model name

    def __post_init__(self) -> None:
        self.mtbf, self.mttr = self.element.parameters["twin:mtbf"], self.element.parameters["twin:mttr"]
        self._draw_failure()

    def _draw_failure(self) -> None:
        self.failure_in = self.rng.expovariate(1.0 / self.mtbf) if self.mtbf > 0 else math.inf

    def accepts(self) -> bool:
        return self.part is None and not self.fault

    def receive(self, part: Part) -> None:
        self.part, self.done = part, False

    def take(self) -> Part | None:
        part, self.part, self.done = self.part, None, False
        return part

    @property
    def state(self) -> str:
        """OPC 40001-1 MachineryItemState."""
        if self.fault:
            return "OutOfService"
        return "Executing" if self.working else "NotExecuting"

    def step(self, dt: float) -> None:
        if self.fault:
            self.repair_left = max(0.0, self.repair_left - dt)
            return
        if self.start and self.part is not None and not self.working and not self.done:
            p = self.element.parameters
            self.remaining = _sample(self.rng, p["twin:cycleTime"], p["twin:cycleSpread"], self.distribution)
            self.working = True
        if not self.working:
            return
        self.failure_in -= dt
        if self.failure_in <= 0:
            self.fault, self.repair_left = True, self.rng.expovariate(1.0 / self.mttr)
            return
        self.remaining -= dt
        if self.remaining <= 0:
            self.working, self.done = False, True
            self.parts_done += 1

    def reset(self) -> None:
        """Clear the fault once repaired; the cycle goes on where it stopped."""
        if self.fault and self.repair_left <= 0:
            self.fault = False
            self._draw_failure()


@dataclass(frozen=True)
class ProgramStep:
    kind: str  # "move", "grip", "release" or "wait"
    seconds: float = 0.0  # how long the step takes (a move's duration)
    move: JointMoves | None = None  # a move's synchronised joint trajectory


@dataclass
class Robot(PlantElement):
    """Runs its taught route (`twin:route` through `twin:pose:*`) when started with program 1."""

    element: Element
    dt: float
    axes: tuple[str, ...]
    plan: list[ProgramStep]
    home: np.ndarray
    pick_from: list[PlantElement] = field(default_factory=list)
    place_to: list[PlantElement] = field(default_factory=list)
    program: int = 0
    start: bool = False
    busy: bool = False
    done: bool = False
    fault: bool = False
    holding: Part | None = None
    cycles: int = 0
    step_index: int = 0
    elapsed: float = 0.0  # in the current step
    q: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.q = self.home.copy()
        self._was_started = False
        self._poses = np.zeros((0, len(self.axes)))  # the running move's poses at the cycle ends ahead
        self._pose_index = 0

    @property
    def at_home(self) -> bool:
        return not self.busy and float(np.max(np.abs(self.q - self.home), initial=0.0)) <= 1e-6

    def step(self, dt: float) -> None:
        """Run the program for `dt` in continuous time: a step ending inside the cycle hands the rest of the
        cycle to the next one, so only the handshakes with the controller wait for cycle boundaries."""
        rising = self.start and not self._was_started
        self._was_started = self.start
        if not self.start:
            self.done = False
        if rising and not self.busy and self.program == PROGRAM_PICK_AND_PLACE:
            self.busy, self.done, self.step_index, self.elapsed = True, False, 0, 0.0
        left = dt
        while self.busy and left > 0:
            step = self.plan[self.step_index]
            if step.move is not None and self.elapsed == 0.0:  # entering a move: its poses at this run's cycle ends
                self._poses = step.move.sample(np.arange(left, step.seconds, dt))[0][0]
                self._pose_index = 0
            if self.elapsed + left < step.seconds - 1e-9:  # the step goes on past this cycle
                self.elapsed += left
                if step.move is not None:
                    self.q = self._poses[min(self._pose_index, len(self._poses) - 1)].copy()
                    self._pose_index += 1
                return
            if step.kind == "release" and self.holding is not None:
                target = next((e for e in self.place_to if e.accepts()), None)
                if target is None:  # hold the part above its place until there is room
                    self.elapsed = step.seconds
                    return
                target.receive(self.holding)
                self.holding = None
            left -= step.seconds - self.elapsed
            if step.move is not None:
                self.q = step.move.end[0].copy()
            if step.kind == "grip":
                source = next((e for e in self.pick_from if _ready_to_pick(e)), None)
                if source is None:
                    self.fault = True  # gripped at an empty place
                else:
                    self.holding = _take(source)
            self.step_index, self.elapsed = self.step_index + 1, 0.0
            if self.step_index >= len(self.plan):
                self.busy, self.done, self.cycles = False, True, self.cycles + 1

    def reset(self) -> None:
        self.fault = False


@dataclass
class Source(PlantElement):
    element: Element
    rng: random.Random
    distribution: str
    next_arrival: float = 0.0
    parts_out: int = 0


@dataclass
class Sink(PlantElement):
    element: Element
    parts_in: int = 0

    def accepts(self) -> bool:
        return True

    def receive(self, part: Part) -> None:
        self.parts_in += 1


def _ready_to_pick(element: PlantElement) -> bool:
    if isinstance(element, Conveyor):
        return element.part_at_end()
    return isinstance(element, Station) and element.done and not element.fault


def _take(element: PlantElement) -> Part | None:
    if isinstance(element, Conveyor):
        return element.pop_lead()
    assert isinstance(element, Station)
    return element.take()


DISTRIBUTION_NAMES = ("constant", "normal", "exponential", "lognormal")


class Plant:
    """The whole line, stepped by the controller's outputs; `seed` makes arrivals and failures repeatable."""

    conveyor_type: type[Conveyor] = Conveyor  # how belts carry parts (twin.commission.physics_plant: on physics)

    def __init__(self, stage: Usd.Stage, *, dt: float = 0.05, seed: int = 1):
        self.dt = dt
        self.time = 0.0
        self.cycles = 0
        self.watchdog_tripped = False  # set by the server when the controller went quiet
        self.model: LineModel = read_line(stage)
        self._next_part_id = 0
        rng = random.Random(seed)
        self.sources: dict[str, Source] = {}
        self.conveyors: dict[str, Conveyor] = {}
        self.stations: dict[str, Station] = {}
        self.robots: dict[str, Robot] = {}
        self.sinks: dict[str, Sink] = {}
        self.elements: dict[str, PlantElement] = {}
        names = [element.name for element in self.model.elements]
        for element in self.model.elements:
            if names.count(element.name) > 1:
                raise self.model.error(element.path, f"another line element is also named {element.name!r}; "
                                                     "OPC-UA nodes are named by element")
            stream = random.Random(rng.random())
            distribution = DISTRIBUTION_NAMES[element.distribution]
            if element.kind == SOURCE:
                source = Source(element, stream, distribution)
                source.next_arrival = _sample(stream, element.parameters["twin:interarrival"],
                                              element.parameters["twin:arrivalSpread"], distribution)
                item: PlantElement = source
                self.sources[element.name] = source
            elif element.kind == CONVEYOR:
                eyes = _photo_eyes(stage, element, self.model)
                item = self.conveyors[element.name] = self.conveyor_type(element, eyes)
                if item.part_length >= item.pitch:
                    raise self.model.error(element.path, f"twin:partLength {item.part_length:g} is not shorter "
                                                         f"than twin:partPitch {item.pitch:g}: parts would touch "
                                                         "and no photo-eye could tell them apart")
            elif element.kind == STATION:
                title = stage.GetPrimAtPath(element.path).GetAttribute("twin:title")
                item = self.stations[element.name] = Station(element, stream, distribution,
                                                             title=str(title.Get()) if title else element.name)
            elif element.kind == ROBOT:
                item = self.robots[element.name] = _robot(stage, element, dt, self.model)
            elif element.kind == SINK:
                item = self.sinks[element.name] = Sink(element)
            else:
                assert element.kind == BUFFER
                raise self.model.error(element.path, "buffers are not simulated for commissioning yet; "
                                                     "model it as a conveyor")
            self.elements[element.path] = item
        for robot in self.robots.values():
            index = self.model.index[robot.element.path]
            robot.pick_from = [self.elements[self.model.elements[i].path] for i in self.model.predecessors(index)]
            robot.place_to = [self.elements[path] for path in robot.element.next]

    def downstream(self, item: PlantElement) -> list[PlantElement]:
        return [self.elements[path] for path in item.element.next]

    def _hand_on(self, item: PlantElement, part: Part) -> bool:
        """Give the part to the first downstream element that takes it (robots pick, nobody hands to them)."""
        target = next((e for e in self.downstream(item) if not isinstance(e, Robot) and e.accepts()), None)
        if target is None:
            return False
        target.receive(part)
        return True

    def step(self) -> None:
        self.cycles += 1
        self.time = self.cycles * self.dt  # not a running sum: virtual time stays exact over long runs
        for source in self.sources.values():
            if self.time >= source.next_arrival and self._hand_on(source, Part(self._next_part_id)):
                self._next_part_id += 1
                source.parts_out += 1
                p = source.element.parameters
                source.next_arrival = self.time + _sample(source.rng, p["twin:interarrival"],
                                                          p["twin:arrivalSpread"], source.distribution)
        for conveyor in self.conveyors.values():
            conveyor.advance(self.dt)
            if not conveyor.stopper and conveyor.part_at_end() and self._hand_on(conveyor, conveyor.parts[-1]):
                conveyor.pop_lead()
        for station in self.stations.values():
            station.step(self.dt)
            part = station.part
            if station.unload and station.done and not station.fault and part and self._hand_on(station, part):
                station.take()
        for robot in self.robots.values():
            robot.step(self.dt)
        for conveyor in self.conveyors.values():
            conveyor.update_eyes()

    def reset(self) -> None:
        for station in self.stations.values():
            station.reset()
        for robot in self.robots.values():
            robot.reset()


def _photo_eyes(stage: Usd.Stage, element: Element, model: LineModel) -> list[PhotoEye]:
    """Photo-eyes authored as children of the conveyor; their x in its frame is the beam's place on the belt."""
    eyes = []
    for child in stage.GetPrimAtPath(element.path).GetChildren():
        kind = child.GetAttribute("twin:sensorType")
        if not kind or kind.Get() != "photoEye":
            continue
        position = float(UsdGeom.Xformable(child).GetLocalTransformation().ExtractTranslation()[0])
        if not 0.0 <= position <= element.parameters["twin:length"]:
            raise model.error(child.GetPath().pathString, f"photo-eye at x = {position:g} m is off the belt "
                                                          f"(0 to {element.parameters['twin:length']:g} m)")
        eyes.append(PhotoEye(child.GetName(), position))
    return eyes


def _robot(stage: Usd.Stage, element: Element, dt: float, model: LineModel) -> Robot:
    """A robot's program as timed steps: sampled joint moves along its taught route, or the authored times."""
    prim = stage.GetPrimAtPath(element.path)
    route_attribute = prim.GetAttribute("twin:route")
    p = element.parameters
    if not route_attribute or not route_attribute.HasAuthoredValue():  # a robot known by its times only
        timed = [ProgramStep("wait", p["twin:pickTime"]), ProgramStep("grip"), ProgramStep("wait", p["twin:placeTime"]),
                 ProgramStep("release"), ProgramStep("wait", p["twin:returnTime"])]
        return Robot(element, dt, (), timed, np.zeros(0))
    from twin.kinematics.chain import Chain
    from twin.kinematics.trajectory import chain_joint_move

    chain = Chain.from_usd(stage, element.path)

    def number(name: str, default: float) -> float:
        value = prim.GetAttribute(name).Get() if prim.GetAttribute(name) else None
        return float(default if value is None else value)

    speed, acceleration = number("twin:jointSpeed", 1.0), number("twin:jointAcceleration", 4.0)
    grip = number("twin:gripTime", 0.0)
    plan: list[ProgramStep] = []
    previous: np.ndarray | None = None
    home: np.ndarray | None = None
    for step in route_attribute.Get():  # read_line has checked the route and its poses
        if step in ("grip", "release"):
            plan.append(ProgramStep(step, grip))
            continue
        pose = np.array(prim.GetAttribute(f"twin:pose:{step}").Get(), np.float64)
        if previous is None:
            home = pose
        else:
            move = chain_joint_move(chain, previous[None], pose[None], speed=speed, acceleration=acceleration,
                                    profile="quintic")
            plan.append(ProgramStep("move", float(move.duration[0]), move))
        previous = pose
    assert home is not None
    return Robot(element, dt, chain.joint_names, plan, home)
