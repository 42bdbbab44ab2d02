"""The sample line on physics, as the simulated PLC runs it with `--physics` (plc.py).

`PhysicsPlant` hosts the layout's line on Newton physics (twin.sim.physics_runtime.PhysicsLine, the flow that
`twin serve --physics` runs) on a simulated clock, and reads it as the line model's PLC publishes its line: the
same variables, names and types as `LineModel.values()` (so the sample bindings, their alarms, the KPIs and the
viewer work unchanged), derived from the physics run:

- part counts from the physics source and sink; belt speeds as physics runs them (the setpoint an operator
  writes is the belt's speed); part positions along each belt: the physics parts' centres projected on it;
- photo-eyes from the physics sensors (`twin:physics:occupied`), or a part at the belt's end;
- stations' State (the line model's codes: a physics station's setup and cycle are WORKING, a finished part
  waiting to leave BLOCKED, an empty station STARVED when nothing waits upstream), PartsDone, Progress, HasPart;
- robots' JointPositions (the joints physics poses its grippers with), Holding, Cycles and Phase (the step of
  the taught route, as the line model names it);
- Conveyor1's motor current and Machining's spindle temperature, synthetic as the line model makes them;

and one more: `Line.Parts.Poses`, every physics part's pose (capacity x 7: x, y, z, qx, qy, qz, qw; NaN where
no part is), so a twin can draw the parts where physics has them (bindings_physics.yaml binds it).
"""

from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path

import numpy as np

from twin.core.cache import GOOD, RuntimeCache
from twin.core.stage import TwinStage
from twin.kinematics.device import default_device
from twin.sim import physics_runtime as physics

from . import layout
from .line_model import BLOCKED, DOWN, IDLE, STARVED, WORKING, Analog, Conveyor

POSES_NODE = "Line.Parts.Poses"
STATE_CODES = {physics.SETUP: WORKING, physics.WORKING: WORKING, physics.DOWN: DOWN, physics.DONE: BLOCKED}
PHOTO_EYE = "twin:physics:occupied"


class PhysicsPlant:
    """The sample line on physics; `step()` advances it by `dt` of plant time, `values()` reads it."""

    def __init__(self, layout_path: str | Path, seed: int = 1, dt: float = 0.05, device: str | None = None):
        self.dt = dt
        self.steps = 0
        self.stage = TwinStage(layout_path)
        self.cache = RuntimeCache()
        self.line = physics.PhysicsLine(self.stage, self.cache, device=device or default_device(), seed=seed)
        self.noise = random.Random(seed + 1000)
        self.conveyors = {spec.name: Conveyor(spec) for spec in layout.CONVEYORS}
        missing = [spec.path for spec in layout.CONVEYORS if spec.path not in self.line.belts]
        if missing:
            raise ValueError(f"{layout_path}: the physics line has no belt {', '.join(missing)}")
        self.speed_rows = {name: self.line.belts[c.spec.path].speed_row for name, c in self.conveyors.items()}
        self.speeds: dict[str, float] = {}
        self.stations = {path.rsplit("/", 1)[1]: station for path, station in self.line.stations.items()}
        feeders = {**{belt.next: belt.path for belt in self.line.belts.values()},
                   **{robot.next: robot.source for robot in self.line.robots}}
        self.upstream = {name: feeders.get(station.path, "") for name, station in self.stations.items()}
        self.robots = {robot.path.rsplit("/", 1)[1]: robot for robot in self.line.robots}
        self.cycles = dict.fromkeys(self.robots, 0)
        self._counted = dict.fromkeys(self.robots, -1.0)  # start time of the last cycle counted
        self.eyes: dict[str, int] = {}
        for name in ("Conveyor1", "Conveyor2", "Conveyor4"):
            prim = f"{layout.LINE}/{name}/PhotoEye"
            with contextlib.suppress(KeyError):  # a layout without the photo-eye: a part at the belt's end
                self.eyes[name] = self.cache.signal_row(prim, PHOTO_EYE)
        self.analog = Analog()
        self._write_speeds()

    @property
    def time(self) -> float:
        return self.steps * self.dt

    def _write_speeds(self) -> None:
        for name, conveyor in self.conveyors.items():
            if self.speeds.get(name) != conveyor.speed:
                self.speeds[name] = conveyor.speed
                self.cache.write_signal(self.speed_rows[name], conveyor.speed, status=GOOD)

    def step(self) -> None:
        self._write_speeds()  # setpoints written since the last step
        self.steps += 1
        self.line.advance(self.time)
        now = self.line.state.time
        for name, robot in self.robots.items():
            if robot.free_at > 0 and now >= robot.free_at and robot.started != self._counted[name]:
                self._counted[name] = robot.started
                self.cycles[name] += 1
        machining = self.stations["Machining"]
        self.analog.step(self.dt, machining.phase in (physics.SETUP, physics.WORKING),
                         len(self.line.belt_positions(layout.CONVEYORS[0].path)))

    def warm_up(self, seconds: float) -> None:
        """Run the line fast for `seconds`, so a client meets it mid-shift with parts on it."""
        for _ in range(int(seconds / self.dt)):
            self.step()

    # ---------------------------------------------------------------- values
    def _state(self, name: str, station: physics.Station) -> int:
        if station.phase != physics.EMPTY:
            return STATE_CODES[station.phase]
        upstream = self.upstream[name]
        waiting = upstream in self.line.belts and len(self.line.belt_positions(upstream)) > 0
        return IDLE if waiting or station.reserved else STARVED

    def values(self) -> dict[str, object]:
        """Every published variable, by node name, as LineModel.values() names and types them, plus the poses."""
        gauss = self.noise.gauss
        line, now = self.line, self.line.state.time
        out: dict[str, object] = {"Line.Source.PartsOut": int(line.parts_out), "Line.Sink.PartsIn": int(line.parts_in)}
        ends: dict[str, bool] = {}
        for name, conveyor in self.conveyors.items():
            spec = conveyor.spec
            along = line.belt_positions(spec.path)
            positions = np.full(spec.capacity, math.nan)
            positions[: min(len(along), spec.capacity)] = along[-spec.capacity:] if len(along) else along
            ends[name] = bool(len(along)) and along[-1] >= spec.length - line.half - physics.END_TOLERANCE
            speed = float(line.state.belt_speed(spec.path))
            out[f"Line.{name}.SpeedSetpoint"] = conveyor.speed
            out[f"Line.{name}.Speed"] = round(speed + gauss(0.0, 0.002), 4) if speed else 0.0
            out[f"Line.{name}.Running"] = speed > 0
            out[f"Line.{name}.PartPositions"] = [round(float(p), 4) if not math.isnan(p) else math.nan
                                                 for p in positions]
        for name in ("Conveyor1", "Conveyor2", "Conveyor4"):
            row = self.eyes.get(name)
            out[f"Line.{name}.PhotoEye"] = bool(self.cache.signal_values(row)[0]) if row is not None else ends[name]
        out["Line.Conveyor1.MotorCurrent"] = self.analog.motor_current(gauss)
        for name, station in self.stations.items():
            out[f"Line.{name}.State"] = self._state(name, station)
            out[f"Line.{name}.PartsDone"] = int(station.done)
            out[f"Line.{name}.Progress"] = round(station.progress(now), 3)
            out[f"Line.{name}.HasPart"] = station.part is not None
        out["Line.Machining.SpindleTemperature"] = self.analog.spindle_temperature(gauss)
        for name, robot in self.robots.items():
            program = robot.program
            q = np.zeros(6)
            if program is not None:
                q = self.cache.signal_values(program.joint_row)
                q = q if np.all(np.isfinite(q)) else program.home
            in_cycle = robot.free_at > robot.started and program is not None
            out[f"Line.{name}.JointPositions"] = [round(float(v), 5) for v in q]
            out[f"Line.{name}.Holding"] = robot.part is not None
            out[f"Line.{name}.Cycles"] = int(self.cycles[name])
            out[f"Line.{name}.Phase"] = program.step_at(now - robot.started) if in_cycle else "waiting"
        poses = self.cache.signal_values(line.poses_row)
        out[POSES_NODE] = [round(float(v), 5) if math.isfinite(v) else math.nan for v in poses]
        return out
