"""An independent reference for the line simulation: the sample factory's line written in SimPy.

It shares only parameter values with the Warp simulation (read from the same USD), not code: each
machine is a SimPy process, parts wait on events, and the random numbers come from Python's own
generator. It follows the rules of docs/line-model.md: accumulating belts, stations that fail only
while working, robots that start a cycle when a part is ready and the place is free.
"""

from __future__ import annotations

import random
from collections import deque

import simpy

from twin.line.model import LineModel


class Line:
    """Shared notifications: any change anywhere wakes the processes waiting for a condition."""

    def __init__(self, env: simpy.Environment, horizon: float):
        self.env = env
        self.horizon = horizon
        self.changed = env.event()
        self.wip = 0
        self.wip_area = 0.0
        self.wip_since = 0.0
        self.out = 0

    def notify(self) -> None:
        changed, self.changed = self.changed, self.env.event()
        changed.succeed()

    def add_wip(self, delta: int) -> None:
        now = min(self.env.now, self.horizon)
        self.wip_area += self.wip * (now - self.wip_since)
        self.wip_since = now
        self.wip += delta

    def wait(self, ready_at):
        """Yield until `ready_at()` (the time from which the condition holds, None if never) is reached."""
        while True:
            at = ready_at()
            if at is not None and at <= self.env.now + 1e-9:
                return
            events = [self.changed]
            if at is not None:
                events.append(self.env.timeout(at - self.env.now))
            yield self.env.any_of(events)


class Belt:
    def __init__(self, line: Line, travel: float, speed: float, pitch: float, capacity: int):
        self.line = line
        self.transit, self.headway = travel / speed, pitch / speed
        self.capacity = min(capacity, int(travel / pitch + 1e-9) + 1)
        self.parts: deque[float] = deque()  # entry times
        self.reserved = 0
        self.last_entry = self.last_leave = -1e30
        self.front_at = None

    def room_at(self):
        if len(self.parts) + self.reserved >= self.capacity:
            return None
        return self.line.env.now if not self.parts else max(self.line.env.now, self.last_entry + self.headway)

    def ready_at(self):
        return self.front_at if self.parts else None

    def put(self) -> None:
        now = self.line.env.now
        self.parts.append(now)
        self.last_entry = now
        if len(self.parts) == 1:
            self.front_at = max(now + self.transit, self.last_leave + self.headway)
        self.line.notify()

    def take(self) -> None:
        now = self.line.env.now
        self.parts.popleft()
        self.last_leave = now
        if self.parts:
            self.front_at = max(self.parts[0] + self.transit, now + self.headway)
        self.line.notify()


class Station:
    def __init__(self, line: Line, rng: random.Random, cycle: float, spread: float, mtbf: float, mttr: float):
        self.line, self.rng = line, rng
        self.cycle, self.spread, self.mtbf, self.mttr = cycle, spread, mtbf, mttr
        self.has_part = self.done = False
        self.reserved = 0
        self.working_time = 0.0
        self.arrived = line.env.event()

    def working(self, seconds: float) -> None:
        now = self.line.env.now
        self.working_time += max(0.0, min(now + seconds, self.line.horizon) - min(now, self.line.horizon))

    def process(self):
        """Take a part, work it (failing only while working), then hold it until it is taken away."""
        env = self.line.env
        to_failure = self.rng.expovariate(1.0 / self.mtbf)
        while True:
            yield from self.receive()
            remaining = max(self.rng.gauss(self.cycle, self.cycle * self.spread), 0.1 * self.cycle)
            while remaining > 1e-12:
                if to_failure < remaining:
                    self.working(to_failure)
                    yield env.timeout(to_failure)
                    remaining -= to_failure
                    yield env.timeout(self.rng.expovariate(1.0 / self.mttr))
                    to_failure = self.rng.expovariate(1.0 / self.mtbf)
                else:
                    self.working(remaining)
                    yield env.timeout(remaining)
                    to_failure -= remaining
                    remaining = 0.0
            self.done = True
            self.line.notify()
            yield from self.line.wait(lambda: None if self.has_part else env.now)

    def receive(self):
        yield from self.line.wait(lambda: self.line.env.now if self.has_part else None)

    def room_at(self):
        return self.line.env.now if not self.has_part and self.reserved == 0 else None

    def ready_at(self):
        return self.line.env.now if self.done else None

    def put(self) -> None:
        self.has_part, self.done = True, False
        self.line.notify()

    def take(self) -> None:
        self.has_part = self.done = False
        self.line.notify()


class BeltStation(Station):
    """A machine fed from one belt and unloading onto another (Machining, Inspection)."""

    def __init__(self, *args, upstream: Belt, downstream: Belt):
        super().__init__(*args)
        self.upstream, self.downstream = upstream, downstream

    def receive(self):
        yield from self.line.wait(self.upstream.ready_at)
        self.upstream.take()
        self.put()

    def process(self):
        unload = self.line.env.process(self.unloader())
        yield from super().process()
        yield unload

    def unloader(self):
        while True:
            yield from self.line.wait(lambda: None if not self.done else self.downstream.room_at())
            self.take()
            self.downstream.put()


class Robot:
    def __init__(self, line: Line, pick: float, place: float, back: float, upstream, downstream):
        self.line, self.pick, self.place, self.back = line, pick, place, back
        self.upstream, self.downstream = upstream, downstream
        self.busy_time = 0.0

    def process(self):
        env = self.line.env
        while True:
            def both_at():
                ready, room = self.upstream.ready_at(), self.downstream.room_at()
                return None if ready is None or room is None else max(ready, room)
            yield from self.line.wait(both_at)
            self.downstream.reserved += 1
            started = env.now
            yield env.timeout(self.pick)
            self.upstream.take()
            yield env.timeout(self.place)
            self.downstream.reserved -= 1
            self.downstream.put()
            yield env.timeout(self.back)
            self.busy_time += min(env.now, self.line.horizon) - min(started, self.line.horizon)


def simulate_sample_line(model: LineModel, hours: float, seed: int) -> dict[str, float]:
    """One replication of the sample line: throughput per hour, WIP, and each machine's working share."""
    horizon = hours * 3600.0
    env = simpy.Environment()
    line = Line(env, horizon)
    rng = random.Random(seed)

    def p(name: str, attribute: str) -> float:
        return model.elements[model.index[f"/Factory/Line/{name}"]].parameters[attribute]

    belts = {name: Belt(line, p(name, "twin:length") - p(name, "twin:partLength"), p(name, "twin:speed"),
                        p(name, "twin:partPitch"), int(p(name, "twin:capacity")))
             for name in ("Conveyor1", "Conveyor2", "Conveyor3", "Conveyor4")}

    def station_args(name: str):
        return (line, random.Random(rng.random()), p(name, "twin:cycleTime"), p(name, "twin:cycleSpread"),
                p(name, "twin:mtbf"), p(name, "twin:mttr"))

    machining = BeltStation(*station_args("Machining"), upstream=belts["Conveyor1"], downstream=belts["Conveyor2"])
    assembly = Station(*station_args("Assembly"))
    inspection = BeltStation(*station_args("Inspection"), upstream=belts["Conveyor3"], downstream=belts["Conveyor4"])
    robots = {name: Robot(line, p(name, "twin:pickTime"), p(name, "twin:placeTime"), p(name, "twin:returnTime"),
                          upstream, downstream)
              for name, upstream, downstream in (("Robot1", belts["Conveyor2"], assembly),
                                                 ("Robot2", assembly, belts["Conveyor3"]))}
    arrivals = random.Random(rng.random())
    interarrival = p("Source", "twin:interarrival")

    def source():
        while True:
            yield env.timeout(arrivals.expovariate(1.0 / interarrival))
            yield from line.wait(belts["Conveyor1"].room_at)
            belts["Conveyor1"].put()
            line.add_wip(+1)

    def sink():
        belt = belts["Conveyor4"]
        while True:
            yield from line.wait(belt.ready_at)
            belt.take()
            line.add_wip(-1)
            if env.now <= horizon:
                line.out += 1

    for process in (source(), sink(), machining.process(), assembly.process(), inspection.process(),
                    *(robot.process() for robot in robots.values())):
        env.process(process)
    env.run(until=horizon)
    line.add_wip(0)
    result = {"throughput_per_hour": line.out / hours, "wip": line.wip_area / horizon}
    for name, station in (("Machining", machining), ("Assembly", assembly), ("Inspection", inspection)):
        result[f"/Factory/Line/{name}"] = station.working_time / horizon
    for name, robot in robots.items():
        result[f"/Factory/Line/{name}"] = robot.busy_time / horizon
    return result
