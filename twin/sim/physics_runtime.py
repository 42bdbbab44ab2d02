"""The line on physics inside the runtime: part poses from Newton instead of from line signals (docs/physics.md).

`PhysicsLine` runs the line's flow, read from the layout like the line model reads it (`twin:kind`,
`twin:next`, `twin:interarrival`, `twin:cycleTime`, robots' taught routes), over a `PhysicsModel` of its
collision boxes. Parts are created at the source, ride the belts by friction at the belt speeds in the cache,
stop at a belt's end where a station or robot takes them (a stopper, or an end stop added where the layout has
none), are held on the station for its cycle, carried by robots in their pick and place times, put on the next
belt's start, and fall off the last belt into the sink's bin. Held and carried parts are posed kinematically;
everything on a belt or falling is physics. Part poses go to the `parts` instance set (the stream, the viewer)
and to the line's `twin:physics:partPoses` signal (the historian, replay).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from twin.core.cache import GOOD, RuntimeCache, quality_name
from twin.core.errors import LayoutError
from twin.core.stage import TwinStage
from twin.core.transforms import matrix_to_pose, pose_to_matrix
from twin.kinematics.chain import Chain
from twin.kinematics.trajectory import chain_joint_move
from twin.physics.gripper import Gripper, part_in_reach
from twin.physics.model import PhysicsModel
from twin.physics.robots import read_robots
from twin.physics.sensors import PhysicsSensors
from twin.physics.shapes import LayoutShapes, end_stop, read_shapes
from twin.sim.line_random import DISTRIBUTIONS, LineStream, line_order
from twin.sim.physics_robots import RouteProgram

log = logging.getLogger("twin.physics")

PARTS = "parts"  # the instance set the viewer draws parts from (as twin.sim.parts)
POSES = "twin:physics:partPoses"  # on the line prim: (capacity, 7) poses, NaN where no part is
POSES_HISTORY_S = 0.1  # the historian records the poses 10 times a second (the stream sends every tick's)
PARTS_OUT, PARTS_IN = "twin:physics:partsOut", "twin:physics:partsIn"
END_TOLERANCE = 0.02  # metres: a part this close to the belt's end has reached it
MAX_STEPS_PER_TICK = 240  # one simulated second per tick at most: beyond that physics has fallen behind
BIN_KEEP = 6  # finished parts left lying in the sink's bin; older ones are taken out (the bin is emptied)
LIFT = 0.3  # metres a robot lifts a part between pick and place
EMPTY, SETUP, WORKING, DOWN, DONE = range(5)  # a station's phases, as the line model's


@dataclass
class Belt:
    path: str
    world: np.ndarray  # the conveyor's frame: belt start on the floor, +X along the belt
    length: float
    width: float
    height: float
    pitch: float
    nominal_speed: float
    speed_row: int
    next: str
    end_stop: bool  # parts wait at the end for the element after it
    capacity: int  # the line model's: twin:capacity, or what fits at the pitch if fewer
    reserved: int = 0  # places booked by robots bringing a part

    def local(self, points: np.ndarray) -> np.ndarray:
        return (points - self.world[:3, 3]) @ self.world[:3, :3]

    def point(self, along: float, lift: float) -> np.ndarray:
        return self.world[:3, :3] @ np.array([along, 0.0, self.height + lift]) + self.world[:3, 3]


@dataclass
class Held:
    """A station's or a robot's part: off the physics, posed here; or on it as `body` (a gripper has it)."""

    pose: np.ndarray  # (7,)
    body: int | None = None  # the physics part: gripped, or put on a station's table by a gripper


@dataclass
class Station:
    """A machine holding one part, run by the line model's rules (docs/line-model.md, Semantics): an optional
    changeover when a part enters, a random cycle, failures counted in working time, scrap at the end."""

    path: str
    top: np.ndarray  # (7,) pose of a part on it
    next: str
    stream: LineStream
    cycle: float
    spread: float = 0.0
    distribution: str = "normal"
    mtbf: float = 0.0
    mttr: float = 0.0
    scrap_rate: float = 0.0
    setup_time: float = 0.0
    setup_every: int = 0
    part: Held | None = None
    reserved: bool = False  # a robot is bringing a part
    claimed: bool = False  # a robot is picking its finished part
    phase: int = EMPTY
    event_at: float = math.inf  # when the setup, the cycle or the repair ends, or the station fails
    remaining: float = 0.0  # of the cycle
    to_failure: float = math.inf  # working time left until the next failure
    work_start: float = 0.0
    since_setup: int = 0
    scrapped: int = 0
    done: int = 0  # cycles finished (scrapped parts included)
    duration: float = 0.0  # of the current cycle

    def __post_init__(self) -> None:
        if self.mtbf > 0:
            self.to_failure = self.stream.exponential(self.mtbf)

    def accept(self, part: Held, time: float) -> None:
        part.pose = self.top.copy()
        self.part = part
        if self.setup_every > 0 and self.since_setup >= self.setup_every and self.setup_time > 0:
            self.phase, self.event_at = SETUP, time + self.setup_time
        else:
            self._work(time)

    def _work(self, time: float) -> None:
        self.remaining = self.duration = self.stream.duration(self.distribution, self.cycle, self.spread)
        self.phase, self.work_start = WORKING, time
        self.event_at = time + min(self.remaining, self.to_failure)

    def fire(self, time: float) -> None:
        """Run the station's own events due by `time`, each at the instant it falls due."""
        while self.event_at <= time:
            at, self.event_at = self.event_at, math.inf
            if self.phase == SETUP:
                self.since_setup = 0
                self._work(at)
            elif self.phase == DOWN:  # repaired: the cycle resumes
                self.to_failure = self.stream.exponential(self.mtbf)
                self.phase, self.work_start = WORKING, at
                self.event_at = at + min(self.remaining, self.to_failure)
            elif self.phase == WORKING:
                elapsed = at - self.work_start
                self.remaining, self.to_failure, self.work_start = (self.remaining - elapsed,
                                                                    self.to_failure - elapsed, at)
                if self.remaining > 1e-9:  # the failure came first
                    self.phase, self.event_at = DOWN, at + self.stream.exponential(self.mttr)
                    continue
                self.since_setup += 1
                self.done += 1
                if self.stream.uniform() < self.scrap_rate:
                    self.part, self.phase = None, EMPTY
                    self.scrapped += 1
                else:
                    self.phase = DONE

    def progress(self, time: float) -> float:
        """The share of the current cycle done at `time` (0 without a part or in setup, 1 when done)."""
        if self.phase == DONE:
            return 1.0
        if self.phase not in (WORKING, DOWN) or self.duration <= 0:
            return 0.0
        left = self.remaining - (time - self.work_start if self.phase == WORKING else 0.0)
        return min(1.0, max(0.0, 1.0 - left / self.duration))

    def take(self) -> Held:
        """The finished part leaves: the station is empty."""
        assert self.part is not None
        part, self.part, self.phase, self.claimed = self.part, None, EMPTY, False
        return part


@dataclass
class Robot:
    path: str
    pick: float
    place: float
    back: float
    source: str
    next: str
    part: Held | None = None
    picking: int | None = None  # the physics part it is picking off a belt (-1: a station's part)
    started: float = 0.0
    start_pose: np.ndarray = field(default_factory=lambda: np.zeros(7))
    end_pose: np.ndarray = field(default_factory=lambda: np.zeros(7))
    free_at: float = 0.0
    program: RouteProgram | None = None  # a gripper robot runs its route on physics
    gripper: Gripper | None = None  # with a program: its gripper, and its tool pose (4x4) when the grip closes
    grip_tool: np.ndarray | None = None
    out_of_reach: bool = False  # a part waits at its belt's end where the gripper cannot take it (logged once)


class PhysicsLine:
    """The line's flow on physics; `advance(time)` runs it to `time` seconds since it began."""

    def __init__(self, stage: TwinStage, cache: RuntimeCache, *, device: str = "cpu", max_parts: int | None = None,
                 seed: int = 1, epoch: float = 0.0):
        self.cache, self.epoch = cache, epoch
        where = str(stage.path)
        usd = stage.authored_stage
        kinds = {str(p.GetPath()): p.GetAttribute("twin:kind").Get() for p in usd.Traverse()}
        nexts = {path: [str(t) for t in usd.GetPrimAtPath(path).GetRelationship("twin:next").GetTargets()]
                 for path in kinds if usd.GetPrimAtPath(path).GetRelationship("twin:next")}

        def attribute(path: str, name: str, default=None):
            value = stage.attribute(path, name, default)
            if value is None:
                raise LayoutError(where, f"{path}: {name} is required for physics")
            return value

        def following(path: str) -> str:
            targets = nexts.get(path, [])
            if kinds[path] != "sink" and len(targets) != 1:
                raise LayoutError(where, f"{path}: physics runs lines with one twin:next per element, found {targets}")
            return targets[0] if targets else ""

        order = line_order(usd)  # each element draws from its own stream, as in the line model's replication 0

        def stream(path: str) -> LineStream:
            return LineStream(seed, order.index(path) if path in order else len(order))

        def distribution(path: str, name: str, default: str) -> str:
            value = str(attribute(path, name, default))
            if value not in DISTRIBUTIONS:
                raise LayoutError(where, f"{path}: {name} = {value!r} is not one of {', '.join(DISTRIBUTIONS)}")
            return value

        shapes = read_shapes(usd)
        stopped = {box.owner.rsplit("/", 1)[0] for box in shapes.stoppers}
        self.belts: dict[str, Belt] = {}
        for box in shapes.belts:
            path = box.owner
            if kinds.get(path) != "conveyor":  # a takeaway belt outside the flow: it only carries what lands on it
                continue
            after = following(path)
            length, pitch = float(attribute(path, "twin:length")), float(attribute(path, "twin:partPitch", 0.3))
            fits = math.floor((length - float(attribute(path, "twin:partLength", 0.0))) / pitch + 1e-9) + 1
            self.belts[path] = Belt(
                path, stage.world_transform(path), length, float(attribute(path, "twin:width", 0.5)),
                float(attribute(path, "twin:beltHeight", 0.75)), pitch, box.speed,
                cache.add_signal(path, "twin:speed", unit="m/s"), after, kinds.get(after) in ("station", "robot"),
                min(int(attribute(path, "twin:capacity")), fits))
        self.sources = [(path, float(attribute(path, "twin:interarrival")), following(path),
                         distribution(path, "twin:arrivalDistribution", "exponential"),
                         float(attribute(path, "twin:arrivalSpread", 0.0)), stream(path))
                        for path, kind in kinds.items() if kind == "source"]
        extra = tuple(end_stop(box, "EndStop") for box in shapes.belts
                      if box.owner in self.belts and self.belts[box.owner].end_stop and box.owner not in stopped)
        shapes = LayoutShapes(shapes.static, shapes.belts, shapes.stoppers + extra, shapes.part_size)
        if max_parts is None:  # every belt packed with touching parts, and the bin's
            size = shapes.part_size or 0.2
            max_parts = int(sum(belt.length // size for belt in self.belts.values())) + BIN_KEEP + 2 + \
                sum(kind in ("station", "robot") for kind in kinds.values())  # parts gripped or on tables
        grippers = tuple(robot for robot in read_robots(usd) if robot.gripper is not None and robot.path in nexts
                         and usd.GetPrimAtPath(robot.path).GetAttribute("twin:route").HasAuthoredValue())
        self.model = PhysicsModel(shapes, device=device, max_parts=max_parts, robots=grippers)
        self.state = self.model.new_state()
        self.half = self.model.part_size / 2
        self.stations: dict[str, Station] = {}
        for path, kind in kinds.items():
            if kind == "station":
                top = stage.world_transform(path)
                top[:3, 3] += top[:3, :3] @ np.array([0.0, 0.0, float(attribute(path, "twin:tableHeight", 0.8))
                                                       + self.half])
                mtbf, mttr = float(attribute(path, "twin:mtbf", 0.0)), float(attribute(path, "twin:mttr", 0.0))
                if mtbf > 0 >= mttr:
                    raise LayoutError(where, f"{path}: twin:mttr must be > 0 when twin:mtbf is set")
                self.stations[path] = Station(
                    path, matrix_to_pose(top), following(path), stream(path), float(attribute(path, "twin:cycleTime")),
                    float(attribute(path, "twin:cycleSpread", 0.0)),
                    distribution(path, "twin:cycleDistribution", "normal"), mtbf, mttr,
                    float(attribute(path, "twin:scrapRate", 0.0)), float(attribute(path, "twin:setupTime", 0.0)),
                    int(attribute(path, "twin:setupEvery", 0)))
        self.robots = [Robot(path, *_robot_times(usd, path, where), source=self._before(nexts, path),
                             next=following(path))
                       for path, kind in kinds.items() if kind == "robot" and path in nexts]
        for robot in self.robots:
            geometry = next((gripper for gripper in grippers if gripper.path == robot.path), None)
            if geometry is not None:
                robot.program = RouteProgram(usd, robot.path, cache, where)
                self.state.set_robot_joints(robot.path, robot.program.home, jump=True)
                at_grip = robot.program.joints(robot.program.grip_at)
                robot.gripper = geometry.gripper
                robot.grip_tool = geometry.poses(at_grip)[1]
        self.sinks = {path: stage.world_transform(path)[:3, 3] for path, kind in kinds.items() if kind == "sink"}
        line = next(iter(self.sinks), next(iter(self.belts), "/")).rsplit("/", 1)[0] or "/"
        self.sensors = PhysicsSensors(usd, cache, part_size=self.model.part_size, belts=self.model.belts)
        self.capacity = self.model.max_parts + len(self.stations) + len(self.robots)
        cache.add_instance_set(PARTS, self.capacity)
        self.poses_row = cache.add_signal(line, POSES, width=self.capacity * 7, unit="m")
        self.out_rows = [cache.add_signal(path, PARTS_OUT, unit="parts", kind="int") for path, *_ in self.sources]
        self.in_rows = [cache.add_signal(path, PARTS_IN, unit="parts", kind="int") for path in self.sinks]
        self.next_arrival = [chance.duration(shape, mean, spread) for _, mean, _, shape, spread, chance in self.sources]
        self.parts_out, self.parts_in, self.parts_lost = 0, 0, 0
        for row in (*self.out_rows, *self.in_rows):  # counted from the start: none yet is a known, good value
            cache.write_signal(row, 0, status=GOOD, source_time=epoch)
        self.in_bin: list[int] = []  # physics ids of the parts lying in a bin, oldest first
        self.behind_s = 0.0  # simulated seconds dropped because physics could not keep up
        self.behind = False

    # ------------------------------------------------------------------ the tick
    def advance(self, time: float) -> None:
        """Run the flow and physics to `time` (seconds since the line began, minus what was dropped)."""
        time -= self.behind_s
        wanted = int(math.floor(time / self.model.dt + 1e-9)) - self.state.steps
        if wanted > MAX_STEPS_PER_TICK:
            self.behind_s += (wanted - MAX_STEPS_PER_TICK) * self.model.dt
            if not self.behind:
                log.warning("physics is behind real time by %.2f s: dropping it (%.1f s dropped so far)",
                            (wanted - MAX_STEPS_PER_TICK) * self.model.dt, self.behind_s)
            wanted = MAX_STEPS_PER_TICK
        self.behind = bool(self.behind_s) and wanted == MAX_STEPS_PER_TICK
        speeds = np.array([self._belt_speed(belt) for belt in self.model.belts])
        for belt, speed in zip(self.model.belts, speeds, strict=True):
            if np.float32(speed) != self.state.belt_speed(belt):  # belts keep float32: upload only a change
                self.state.set_belt_speed(belt, speed)
        stepped = max(wanted, 0)
        target = self.state.steps + stepped
        while self.state.steps < target:  # stop at each due event, so the flow keeps the line model's times
            due = math.ceil(self._next_due() / self.model.dt - 1e-9)
            steps = min(target, max(due, self.state.steps + 1)) - self.state.steps
            self._pose_robots(self.state.time + steps * self.model.dt)
            self.model.step(self.state, steps)
            now = self.state.time
            ids, poses = self.state.parts(), self.state.part_poses()
            self._source(now, poses)
            self._stations_and_robots(now, ids, poses)
            self._sinks(ids, poses)
        self._publish(self.state.time, stepped * self.model.dt, speeds)

    def _next_due(self) -> float:
        """The earliest timed event after now: an arrival, a station's event, a robot's grip, release or return."""
        now = self.state.time
        times = [*self.next_arrival, *(station.event_at for station in self.stations.values())]
        for robot in self.robots:
            times += [robot.started + robot.pick, robot.started + robot.pick + robot.place, robot.free_at]
            if robot.program is not None:
                times.append(robot.started + robot.program.release_at)
        return min((t for t in times if t > now), default=math.inf)

    def _belt_speed(self, path: str) -> float:
        if path not in self.belts:
            return float(self.model.nominal_speeds[self.model.belts.index(path)])
        row = self.belts[path].speed_row
        value = float(self.cache.signal_values(row)[0])
        if quality_name(self.cache.status[row]) == "good" and math.isfinite(value):
            return value
        return self.belts[path].nominal_speed

    def _source(self, now: float, poses: np.ndarray) -> None:
        """A part arrives and waits at the source until its belt has room; the next arrival is drawn then."""
        for index, (_, mean, belt_path, shape, spread, chance) in enumerate(self.sources):
            belt = self.belts[belt_path]
            if now >= self.next_arrival[index] and self._room(belt, poses):
                self.state.spawn_part(belt.point(self.half + 0.005, self.half + 0.001))
                self.parts_out += 1
                self.next_arrival[index] = now + chance.duration(shape, mean, spread)
                self.cache.write_signal(self.out_rows[index], self.parts_out, status=GOOD,
                                        source_time=self.epoch + now)

    def _on_belt(self, belt: Belt, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which parts lie on `belt` (their centre over it, resting on it), and their belt coordinates."""
        local = belt.local(poses[:, :3]) if len(poses) else np.zeros((0, 3))
        on = (np.abs(local[:, 1]) < belt.width / 2) & (np.abs(local[:, 2] - belt.height - self.half) < self.half)
        return on & (local[:, 0] > -self.half) & (local[:, 0] <= belt.length), local

    def belt_positions(self, path: str) -> np.ndarray:
        """Where the parts lying on the belt `path` are along it: their centres' metres from its start, ascending."""
        on, local = self._on_belt(self.belts[path], self.state.part_poses())
        return np.sort(local[on, 0])

    def _start_clear(self, belt: Belt, poses: np.ndarray) -> bool:
        """No part within a pitch of the belt's start: the last part entered about pitch / speed ago."""
        on, local = self._on_belt(belt, poses)
        return not np.any(on & (local[:, 0] < self.half + belt.pitch))

    def _room(self, belt: Belt, poses: np.ndarray) -> bool:
        """The line model's rule: fewer parts on (or booked for) the belt than its capacity, and the start clear."""
        on, _ = self._on_belt(belt, poses)
        return int(on.sum()) + belt.reserved < belt.capacity and self._start_clear(belt, poses)

    def _part_at_end(self, belt: Belt, ids: np.ndarray, poses: np.ndarray, robot: Robot | None = None) -> int | None:
        """The part waiting at `belt`'s end, ready for what takes it there: a station or a robot without a
        gripper takes any part across the belt's width; a gripper only the part it can hold at its pick pose
        (a part beside the centre line is not ready: the robot waits instead of gripping at nothing)."""
        if not len(ids):
            return None
        local = belt.local(poses[:, :3])
        at_end = np.flatnonzero((np.abs(local[:, 1]) < belt.width / 2) & (local[:, 2] > belt.height) &
                                (local[:, 0] >= belt.length - self.half - END_TOLERANCE) & (local[:, 0] <= belt.length))
        if not len(at_end):
            return None
        if robot is None or robot.gripper is None:
            return int(ids[at_end[0]])
        found = part_in_reach(robot.gripper, robot.grip_tool, poses[at_end], self.model.part_size)
        if (found is None) != robot.out_of_reach:
            robot.out_of_reach = found is None
            if found is None:
                pose = np.round(poses[at_end[0], :3], 3).tolist()
                log.warning("%s: the part at %s's end (at %s) is out of its gripper's reach; the robot waits",
                            robot.path, belt.path, pose)
        return None if found is None else int(ids[at_end[found]])

    def _take(self, part: int, ids: np.ndarray, poses: np.ndarray) -> Held:
        pose = poses[int(np.flatnonzero(ids == part)[0])].copy()
        self.state.remove_part(part)
        return Held(pose)

    def _stations_and_robots(self, now: float, ids: np.ndarray, poses: np.ndarray) -> None:
        """The events due by `now` first (stations' own at their instants, robots' grips and releases), then every
        move that can start now: finished parts onto the next belt, belt parts into free stations, robot cycles."""
        taken: set[int] = set()
        for station in self.stations.values():
            station.fire(now)
        for robot in self.robots:
            if robot.picking is not None and now >= robot.started + robot.pick and robot.program is not None:
                self._grip(robot, now)
            if robot.picking is not None and now >= robot.started + robot.pick:  # gripped: the part leaves its place
                if robot.picking < 0:
                    held = self._off_physics(self.stations[robot.source].take(), ids, poses)
                else:
                    taken.add(robot.picking)
                    held = self._take(robot.picking, ids, poses)
                robot.part, robot.start_pose, robot.picking = held, held.pose.copy(), None
            if robot.program is not None and robot.part is not None and \
                    now >= robot.started + robot.program.release_at and self.state.held(robot.path) is not None:
                self.state.release(robot.path)  # at the place pose: the part falls free onto what is below
            if robot.part is not None and now >= robot.started + robot.pick + robot.place and \
                    self._deliver(robot, now, poses):
                robot.part = None
            if robot.part is not None and robot.program is None:  # carried: from the pick pose, lifted, to the place
                share = min(max((now - robot.started - robot.pick) / robot.place, 0.0), 1.0)
                robot.part.pose = robot.start_pose + share * (robot.end_pose - robot.start_pose)
                robot.part.pose[2] += LIFT * math.sin(math.pi * share)
        for station in self.stations.values():
            if station.phase == DONE and not station.claimed and station.next in self.belts:
                belt = self.belts[station.next]
                if self._room(belt, poses):
                    self.state.spawn_part(belt.point(self.half + 0.005, self.half + 0.001))
                    self._off_physics(station.take(), ids, poses)
            upstream = self._before_station(station.path)
            if station.phase == EMPTY and not station.reserved and upstream in self.belts:
                part = self._part_at_end(self.belts[upstream], ids, poses)
                if part is not None and part not in taken:
                    taken.add(part)
                    station.accept(self._take(part, ids, poses), now)
        for robot in self.robots:  # a cycle starts with a part ready upstream and a place booked downstream
            if robot.picking is not None or robot.part is not None or now < robot.free_at or \
                    not self._accepts(robot.next, poses):
                continue
            if robot.source in self.belts:
                part = self._part_at_end(self.belts[robot.source], ids, poses, robot)
                robot.picking = part if part is not None and part not in taken else None
            elif robot.source in self.stations:
                station = self.stations[robot.source]
                if station.phase == DONE and not station.claimed:
                    station.claimed, robot.picking = True, -1
                    if robot.program is not None:
                        self._on_physics(station)
            if robot.picking is None:
                continue
            taken.add(robot.picking)
            robot.started, robot.free_at = now, now + robot.pick + robot.place + robot.back
            if robot.next in self.stations:
                self.stations[robot.next].reserved = True
                robot.end_pose = self.stations[robot.next].top.copy()
            else:
                self.belts[robot.next].reserved += 1
                robot.end_pose = np.array([*self.belts[robot.next].point(self.half + 0.005, self.half + 0.001),
                                           0.0, 0.0, 0.0, 1.0])

    def _accepts(self, path: str, poses: np.ndarray) -> bool:
        if path in self.stations:
            return self.stations[path].phase == EMPTY and not self.stations[path].reserved
        return path in self.belts and self._room(self.belts[path], poses)

    def _deliver(self, robot: Robot, now: float, poses: np.ndarray) -> bool:
        if robot.next in self.stations:
            station = self.stations[robot.next]
            station.reserved = False
            station.accept(robot.part if robot.program is not None else Held(station.top.copy()), now)
            if robot.program is not None:
                self._locate(station)
            return True
        belt = self.belts[robot.next]
        if robot.program is not None:  # the gripper has set the part down on the belt
            belt.reserved -= 1
            return True
        if not self._start_clear(belt, poses):  # its place on the belt is booked; the start must be clear
            return False
        belt.reserved -= 1
        self.state.spawn_part(belt.point(self.half + 0.005, self.half + 0.001))
        return True

    # ------------------------------------------------------------------ robots with grippers
    def joint_rows(self) -> dict[str, int]:
        """The cache rows of the joint values physics poses its gripper robots with, by robot path."""
        return {robot.path: robot.program.joint_row for robot in self.robots if robot.program is not None}

    def _pose_robots(self, time: float) -> None:
        """Where each robot running its route has its links at `time`: on its cycle's timeline, else at rest."""
        for robot in self.robots:
            if robot.program is not None:
                q = robot.program.joints(time - robot.started if robot.free_at > robot.started else math.inf)
                if robot.program.moved(q):  # a robot at rest keeps its links where they are
                    self.state.set_robot_joints(robot.path, q)
                    robot.program.publish(self.cache, q, self.epoch + time)

    def _grip(self, robot: Robot, now: float) -> None:
        """The gripper closes at the pick pose: the part it finds is carried on physics. Finding none is a fault:
        the part stays where it is, the place booked downstream is freed, and the robot finishes its route empty."""
        result = self.state.grip(robot.path)
        robot.program.report(self.cache, result, self.epoch + now)
        from_station, robot.picking = robot.picking is not None and robot.picking < 0, None
        if result.part is not None:
            if from_station:
                self.stations[robot.source].take()
            robot.part = Held(np.full(7, np.nan), body=result.part)
            return
        if from_station:
            self.stations[robot.source].claimed = False
        if robot.next in self.stations:
            self.stations[robot.next].reserved = False
        else:
            self.belts[robot.next].reserved -= 1

    def _locate(self, station: Station) -> None:
        """The station's fixture locates the part a gripper set down: centred on the table, turned as it was put
        down (docs/physics.md, "Locating on stations"). A part gripped a little off-centre would otherwise lie as
        far off-centre here, and the next gripper (parallel jaws clear a turned part by about a centimetre)
        would miss it."""
        part = station.part
        in_play = np.flatnonzero(self.state.parts() == part.body) if part is not None else []
        if not len(in_play):  # scrapped at once, or the part fell off the table before it was set down
            return
        pose = self.state.part_poses()[int(in_play[0])]
        self.state.remove_part(part.body)
        part.body = self._spawn_on_table(station.top[:3], pose)

    def _on_physics(self, station: Station) -> None:
        """A station's part, off the physics, is put on its table in physics for a gripper to take."""
        part = station.part
        if part is not None and part.body is None:
            part.body = self._spawn_on_table(part.pose[:3], part.pose)

    def _spawn_on_table(self, position: np.ndarray, pose: np.ndarray) -> int:
        """A part put in physics a millimetre above `position` on a table, turned about z as `pose` is (a part
        at rest on a level table turns about z only); its physics id."""
        yaw = 2.0 * math.atan2(pose[5], pose[6])
        return self.state.spawn_part(position + [0.0, 0.0, 0.001], yaw)

    def _off_physics(self, part: Held, ids: np.ndarray, poses: np.ndarray) -> Held:
        """`part` taken off the physics where it lies there (a part a gripper put down)."""
        if part.body is not None:
            part.pose, part.body = self._take(part.body, ids, poses).pose, None
        return part

    def _before_station(self, path: str) -> str:
        for belt in self.belts.values():
            if belt.next == path:
                return belt.path
        return ""

    @staticmethod
    def _before(nexts: dict[str, list[str]], path: str) -> str:
        return next((other for other, targets in nexts.items() if path in targets), "")

    def _sinks(self, ids: np.ndarray, poses: np.ndarray) -> None:
        for part, pose in zip(ids, poses, strict=True):
            part = int(part)
            if part in self.in_bin:
                continue
            sink = next((path for path, centre in self.sinks.items()
                         if np.all(np.abs(pose[:2] - centre[:2]) < 0.4) and pose[2] < self._belt_top() - self.half),
                        None)
            if sink is not None:
                self.in_bin.append(part)
                self.parts_in += 1
                row = self.in_rows[list(self.sinks).index(sink)]
                self.cache.write_signal(row, self.parts_in, status=GOOD, source_time=self.epoch + self.state.time)
            elif pose[2] < self.half:  # on the floor, off the line
                self.state.remove_part(part)
                self.parts_lost += 1
                log.warning("a part fell off the line at (%.2f, %.2f): removed", pose[0], pose[1])
        while len(self.in_bin) > BIN_KEEP:
            self.state.remove_part(self.in_bin.pop(0))

    def _belt_top(self) -> float:
        return max((belt.height for belt in self.belts.values()), default=0.75)

    # ------------------------------------------------------------------ outputs
    def _publish(self, now: float, dt: float, speeds: np.ndarray) -> None:
        ids, poses = self.state.parts(), self.state.part_poses()
        velocities = self.state.part_velocities()
        held = [station.part for station in self.stations.values()] + [robot.part for robot in self.robots]
        all_poses = np.full((self.capacity, 7), np.nan)
        all_poses[ids] = poses
        for index, part in enumerate(held):
            if part is not None and part.body is None:  # a part with a body is posed by physics
                all_poses[self.model.max_parts + index] = part.pose
        active = np.all(np.isfinite(all_poses), axis=1)
        in_play = all_poses[active]
        velocity = np.zeros((len(in_play), 6))
        velocity[: len(ids)] = velocities  # physics parts come first in slot order
        self.sensors.update(now, dt, in_play, velocity, speeds, epoch=self.epoch)
        transforms = np.tile(np.eye(4), (self.capacity, 1, 1))
        transforms[active] = pose_to_matrix(in_play)
        self.cache.write_instances(PARTS, transforms, active)
        self.cache.write_signal(self.poses_row, all_poses.ravel(), status=GOOD, source_time=self.epoch + now)

    def health(self) -> dict:
        return {"time_s": round(self.state.time, 3), "behind": self.behind, "dropped_s": round(self.behind_s, 3),
                "parts": int(len(self.state.parts())), "parts_out": self.parts_out, "parts_in": self.parts_in,
                "parts_lost": self.parts_lost,
                "parts_scrapped": sum(station.scrapped for station in self.stations.values())}


def _robot_times(stage, path: str, where: str) -> tuple[float, float, float]:
    """Pick, place and return seconds of a robot: `twin:pickTime`... or its taught route's quintic moves."""
    prim = stage.GetPrimAtPath(path)
    authored = [prim.GetAttribute(name).Get() for name in ("twin:pickTime", "twin:placeTime", "twin:returnTime")]
    if authored[0] is not None and authored[1] is not None:
        return float(authored[0]), float(authored[1]), float(authored[2] or 0.0)
    route = list(prim.GetAttribute("twin:route").Get() or [])
    if "grip" not in route or "release" not in route:
        raise LayoutError(where, f"{path}: a robot needs twin:pickTime and twin:placeTime or a twin:route")
    chain = Chain.from_usd(stage, path)
    speed = float(prim.GetAttribute("twin:jointSpeed").Get() or 1.0)
    acceleration = float(prim.GetAttribute("twin:jointAcceleration").Get() or 4.0)
    grip = float(prim.GetAttribute("twin:gripTime").Get() or 0.0)
    phases, phase, previous = [0.0, 0.0, 0.0], 0, None
    for step in route:
        if step in ("grip", "release"):
            phases[phase] += grip
            phase += 1
            continue
        pose = np.array(prim.GetAttribute(f"twin:pose:{step}").Get(), np.float64)
        if previous is not None:
            move = chain_joint_move(chain, previous[None], pose[None], speed=speed, acceleration=acceleration,
                                    profile="quintic")
            phases[phase] += float(move.duration[0])
        previous = pose
    return phases[0], phases[1], phases[2]


class RecordedPartPoses:
    """Parts posed from the `twin:physics:partPoses` signal as recorded: how replay shows a physics run."""

    def __init__(self, cache: RuntimeCache, row: int, capacity: int):
        self.cache, self.row, self.capacity = cache, row, capacity
        cache.add_instance_set(PARTS, capacity)

    def update(self) -> None:
        poses = self.cache.signal_values(self.row).reshape(self.capacity, 7)
        active = np.all(np.isfinite(poses), axis=1)
        transforms = np.tile(np.eye(4), (self.capacity, 1, 1))
        transforms[active] = pose_to_matrix(poses[active])
        self.cache.write_instances(PARTS, transforms, active)
