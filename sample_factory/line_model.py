"""The sample line's behaviour, as the simulated PLC runs it: a time-stepped plant model.

Pure Python with no OPC-UA in it, so tests can run simulated hours in seconds. Parts
arrive at the source, ride accumulating conveyors (they queue at the belt end and keep
a gap), wait for stations that work with random cycle times and random failures, and
are carried between the Assembly table and the conveyors by two robots whose joints
follow synchronous quintic moves (twin.kinematics.trajectory) through their taught poses.
`values()` returns what the PLC publishes, keyed by its OPC-UA node names.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from twin.kinematics.chain import Chain
from twin.kinematics.trajectory import chain_joint_move
from twin.kinematics.urdf import rtb_urdf

from . import layout

IDLE, WORKING, BLOCKED, STARVED, DOWN = 0, 1, 2, 3, 4
GAP = layout.PART_SIZE * 1.5  # accumulation gap between part centres
HALF = layout.PART_SIZE / 2
ROBOT_SPEED = 0.7  # fraction of the URDF joint velocity limits
ROBOT_ACCELERATION = 3.0  # rad/s^2
GRIP_SECONDS = 0.4
ROBOT_ROUTE = ("home", "above_pick", "pick", "grip", "above_pick", "above_place", "place", "release",
               "above_place", "home")


MAX_BELT_SPEED = 0.6  # m/s, what the drives allow


@dataclass
class Conveyor:
    spec: layout.ConveyorSpec
    parts: list[float] = field(default_factory=list)  # belt positions, ascending
    speed: float = -1.0  # the setpoint, m/s; operators may change it over OPC-UA

    def __post_init__(self) -> None:
        if self.speed < 0:
            self.speed = self.spec.speed

    def set_speed(self, speed: float) -> None:
        self.speed = min(max(float(speed), 0.0), MAX_BELT_SPEED)

    def advance(self, dt: float) -> None:
        limit = self.spec.length - HALF
        for index in range(len(self.parts) - 1, -1, -1):  # from the lead part backwards
            self.parts[index] = min(self.parts[index] + self.speed * dt, limit)
            limit = self.parts[index] - GAP

    def part_at_end(self) -> bool:
        return bool(self.parts) and self.parts[-1] >= self.spec.length - HALF - 1e-9

    def has_room_at_start(self) -> bool:
        if len(self.parts) >= self.spec.capacity:
            return False
        return not self.parts or self.parts[0] >= HALF + GAP

    def take_from_end(self) -> None:
        self.parts.pop()

    def put_at_start(self) -> None:
        self.parts.insert(0, HALF)


@dataclass
class Station:
    spec: layout.StationSpec
    rng: random.Random
    state: int = IDLE
    has_part: bool = False
    finished: bool = False  # the part is done and waits to leave
    remaining: float = 0.0  # of the cycle
    cycle: float = 0.0
    parts_done: int = 0
    repair_left: float = 0.0
    failure_in: float = 0.0

    def __post_init__(self) -> None:
        self.failure_in = self.rng.expovariate(1.0 / self.spec.mtbf)

    def start(self) -> None:
        self.has_part, self.finished = True, False
        self.cycle = max(0.2, self.rng.gauss(self.spec.cycle_time, self.spec.cycle_time * self.spec.cycle_spread))
        self.remaining = self.cycle
        self.state = WORKING

    def step(self, dt: float) -> None:
        if self.state == DOWN:
            self.repair_left -= dt
            if self.repair_left <= 0:
                self.failure_in = self.rng.expovariate(1.0 / self.spec.mtbf)
                self.state = WORKING if self.has_part and not self.finished else IDLE
            return
        if self.state == WORKING:
            self.failure_in -= dt
            if self.failure_in <= 0:
                self.state = DOWN
                self.repair_left = self.rng.expovariate(1.0 / self.spec.mttr)
                return
            self.remaining -= dt
            if self.remaining <= 0:
                self.finished = True
                self.parts_done += 1
                self.state = BLOCKED  # until the part has left

    def release(self) -> None:
        self.has_part = self.finished = False
        self.state = IDLE

    @property
    def progress(self) -> float:
        if not self.has_part:
            return 0.0
        return 1.0 if self.finished else min(1.0, max(0.0, 1.0 - self.remaining / self.cycle))


@dataclass
class Robot:
    spec: layout.RobotSpec
    chain: Chain
    dt: float
    q: np.ndarray = field(default=None)
    phase: str = "home"
    route_index: int = 0  # where in ROBOT_ROUTE the robot is; 0 = waiting at home
    samples: np.ndarray | None = None  # joint positions of the current move, one row per step
    sample_index: int = 0
    wait: float = 0.0
    holding: bool = False
    cycles: int = 0

    def __post_init__(self) -> None:
        self.q = np.array(self.spec.poses["home"], np.float64)

    def begin_move(self, pose: str) -> None:
        move = chain_joint_move(self.chain, self.q[None], np.array(self.spec.poses[pose])[None],
                                speed=ROBOT_SPEED, acceleration=ROBOT_ACCELERATION, profile="quintic")
        duration = float(move.duration[0])
        times = np.arange(self.dt, duration + self.dt, self.dt)
        self.samples = move.sample(np.minimum(times, duration))[0][0]
        self.sample_index = 0
        self.phase = f"to_{pose}"

    def step(self) -> bool:
        """Advance one step; True when the current move or wait has finished."""
        if self.wait > 0:
            self.wait -= self.dt
            return self.wait <= 0
        if self.samples is None:
            return True
        self.q = self.samples[min(self.sample_index, len(self.samples) - 1)].copy()
        self.sample_index += 1
        return self.sample_index >= len(self.samples)


class Analog:
    """Conveyor1's motor current and Machining's spindle temperature: synthetic signals that every sample plant
    (this model, the physics plant in physics_line.py) makes the same way from its own state."""

    def __init__(self) -> None:
        self.temperature = 31.0
        self.current = 2.0

    def step(self, dt: float, machining_working: bool, parts_on_conveyor1: int) -> None:
        target = 62.0 if machining_working else 30.0
        self.temperature += (target - self.temperature) * (1.0 - math.exp(-dt / 90.0))
        self.current = 1.8 + 0.32 * parts_on_conveyor1

    def motor_current(self, gauss) -> float:
        return round(self.current + gauss(0.0, 0.04), 3)

    def spindle_temperature(self, gauss) -> float:
        return round(self.temperature + gauss(0.0, 0.08), 2)


class LineModel:
    """The whole line; `step(dt)` advances it, `values()` reads it as the PLC publishes it."""

    def __init__(self, seed: int = 1, dt: float = 0.05):
        self.dt = dt
        self.time = 0.0
        self.rng = random.Random(seed)
        self.noise = random.Random(seed + 1000)
        self.conveyors = {spec.name: Conveyor(spec) for spec in layout.CONVEYORS}
        self.stations = {spec.name: Station(spec, random.Random(self.rng.random())) for spec in layout.STATIONS}
        chains: dict[str, Chain] = {}
        self.robots = {}
        for spec in layout.ROBOTS:
            chain = chains.setdefault(spec.urdf, Chain.from_urdf(rtb_urdf(spec.urdf)))
            self.robots[spec.name] = Robot(spec, chain, dt)
        self.parts_out = 0
        self.parts_in = 0
        self.next_arrival = self.rng.expovariate(1.0 / layout.SOURCE_INTERARRIVAL)
        self.analog = Analog()

    # ------------------------------------------------------------------ flow
    def step(self, dt: float | None = None) -> None:
        dt = self.dt if dt is None else dt
        self.time += dt
        c1, c2, c3, c4 = (self.conveyors[name] for name in ("Conveyor1", "Conveyor2", "Conveyor3", "Conveyor4"))
        machining, assembly, inspection = (self.stations[n] for n in ("Machining", "Assembly", "Inspection"))
        if self.time >= self.next_arrival and c1.has_room_at_start():
            c1.put_at_start()
            self.parts_out += 1
            self.next_arrival = self.time + self.rng.expovariate(1.0 / layout.SOURCE_INTERARRIVAL)
        for conveyor in self.conveyors.values():
            conveyor.advance(dt)
        self._machine_flow(c1, machining, c2)
        self._machine_flow(c3, inspection, c4)
        if c4.part_at_end():
            c4.take_from_end()
            self.parts_in += 1
        for station in self.stations.values():
            station.step(dt)
        self._robot(self.robots["Robot1"], pick_ready=c2.part_at_end(),
                    place_ready=not assembly.has_part, pick=c2.take_from_end, place=assembly.start)
        self._robot(self.robots["Robot2"], pick_ready=assembly.finished and assembly.state != DOWN,
                    place_ready=c3.has_room_at_start(), pick=assembly.release, place=c3.put_at_start)
        if not assembly.has_part and assembly.state != DOWN:
            assembly.state = IDLE if c2.parts else STARVED
        self.analog.step(dt, machining.state == WORKING, len(c1.parts))

    def warm_up(self, seconds: float) -> None:
        """Run the line fast for `seconds`, so a demo starts mid-shift with parts everywhere."""
        for _ in range(int(seconds / self.dt)):
            self.step()

    def _machine_flow(self, upstream: Conveyor, station: Station, downstream: Conveyor) -> None:
        if station.finished and station.state != DOWN and downstream.has_room_at_start():
            downstream.put_at_start()
            station.release()
        if not station.has_part and station.state != DOWN:
            if upstream.part_at_end():
                upstream.take_from_end()
                station.start()
            else:
                station.state = IDLE if upstream.parts else STARVED

    def _robot(self, robot: Robot, *, pick_ready: bool, place_ready: bool, pick, place) -> None:
        if robot.route_index == 0:  # waiting at home for a part and a free place
            if not (pick_ready and place_ready):
                robot.phase = "waiting"
                return
            robot.route_index = 1
            robot.begin_move(ROBOT_ROUTE[1])
        if not robot.step():
            return
        step = ROBOT_ROUTE[robot.route_index]
        if step == "grip":
            robot.holding = True
            pick()
        elif step == "release":
            robot.holding = False
            place()
        robot.route_index += 1
        if robot.route_index >= len(ROBOT_ROUTE):
            robot.route_index, robot.samples = 0, None
            robot.cycles += 1
            robot.phase = "waiting"
            return
        following = ROBOT_ROUTE[robot.route_index]
        if following in ("grip", "release"):
            robot.wait, robot.samples = GRIP_SECONDS, None
            robot.phase = following
        else:
            robot.begin_move(following)

    # ---------------------------------------------------------------- values
    def values(self) -> dict[str, object]:
        """Every published variable, by node name (e.g. 'Line.Conveyor1.Speed')."""
        gauss = self.noise.gauss
        out: dict[str, object] = {"Line.Source.PartsOut": self.parts_out, "Line.Sink.PartsIn": self.parts_in}
        for name, conveyor in self.conveyors.items():
            positions = np.full(conveyor.spec.capacity, math.nan)
            positions[: len(conveyor.parts)] = conveyor.parts[: conveyor.spec.capacity]
            out[f"Line.{name}.SpeedSetpoint"] = conveyor.speed
            out[f"Line.{name}.Speed"] = round(conveyor.speed + gauss(0.0, 0.002), 4) if conveyor.speed else 0.0
            out[f"Line.{name}.Running"] = conveyor.speed > 0
            out[f"Line.{name}.PartPositions"] = [round(p, 4) if not math.isnan(p) else math.nan for p in positions]
        for name in ("Conveyor1", "Conveyor2", "Conveyor4"):
            out[f"Line.{name}.PhotoEye"] = self.conveyors[name].part_at_end()
        out["Line.Conveyor1.MotorCurrent"] = self.analog.motor_current(gauss)
        for name, station in self.stations.items():
            out[f"Line.{name}.State"] = station.state
            out[f"Line.{name}.PartsDone"] = station.parts_done
            out[f"Line.{name}.Progress"] = round(station.progress, 3)
            out[f"Line.{name}.HasPart"] = station.has_part
        out["Line.Machining.SpindleTemperature"] = self.analog.spindle_temperature(gauss)
        for name, robot in self.robots.items():
            out[f"Line.{name}.JointPositions"] = [round(float(v), 5) for v in robot.q]
            out[f"Line.{name}.Holding"] = robot.holding
            out[f"Line.{name}.Cycles"] = robot.cycles
            out[f"Line.{name}.Phase"] = robot.phase
        return out
