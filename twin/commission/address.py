"""The line's I/O as a list of signals, generated from the plant: what the OPC-UA server serves and documents.

Inputs go to the controller (sensors, states); outputs come from it (drives, stoppers, starts). Each signal
has one node, `ns=<NAMESPACE>;s=<dotted browse path>`, e.g. `Line.Conveyors.Conveyor1.Run`. Robots follow
OPC 40010 (MotionDeviceSystem/MotionDevices/<robot>/Axes/<axis>/ParameterSet/ActualPosition, program control
under Controllers/<robot>/TaskControls), stations OPC 40001 (Identification, MachineryItemState).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

from .plant import ENCODER_COUNTS_PER_M, PROGRAM_PICK_AND_PLACE, Conveyor, Plant, Robot, Station

NAMESPACE = "urn:factory-twin:commission"
INPUT, OUTPUT = "input", "output"


@dataclass(frozen=True)
class Signal:
    path: tuple[str, ...]  # browse names from Objects down
    type: str  # the OPC-UA built-in type (a ua.VariantType name)
    direction: str  # INPUT (to the controller) or OUTPUT (from it)
    description: str
    unit: str = ""
    low: float | None = None  # outputs: writes outside [low, high] are refused
    high: float | None = None
    safe: object = None  # outputs: the value the watchdog falls back to
    read: Callable[[], object] | None = None  # inputs: the plant's current value
    write: Callable[[object], None] | None = None  # outputs: hand a value to the plant

    @cached_property
    def node(self) -> str:
        """The NodeId string; cached, as every cycle looks signals up by it."""
        return ".".join(self.path)

    def value(self) -> object:
        """An input's value in the plant now."""
        assert self.read is not None, f"{self.node} is an output"
        return self.read()

    def apply(self, value: object) -> None:
        """Hand an output's value to the plant."""
        assert self.write is not None, f"{self.node} is an input"
        self.write(value)

    def out_of_range(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return True
        return (self.low is not None and value < self.low) or (self.high is not None and value > self.high)


def _setter(target: object, attribute: str, convert: Callable[[Any], object]) -> Callable[[object], None]:
    return lambda value: setattr(target, attribute, convert(value))


def line_signals(plant: Plant) -> list[Signal]:
    """Every signal of the line, in a stable order: simulation, sources, conveyors, stations, robots, sinks."""
    signals: list[Signal] = []

    def add_input(path: tuple[str, ...], type_: str, read: Callable[[], object], description: str,
                  unit: str = "") -> None:
        signals.append(Signal(("Line", *path), type_, INPUT, description, unit, read=read))

    def add_output(path: tuple[str, ...], type_: str, write: Callable[[object], None], description: str, *,
                   safe: object, unit: str = "", low: float | None = None, high: float | None = None) -> None:
        signals.append(Signal(("Line", *path), type_, OUTPUT, description, unit, low, high, safe, write=write))

    add_input(("Simulation", "CycleCount"), "UInt64", lambda: plant.cycles, "plant cycles simulated so far")
    add_input(("Simulation", "VirtualTime"), "Double", lambda: plant.time, "plant time", "s")
    add_input(("Simulation", "CycleTime"), "Double", lambda: plant.dt, "plant time per cycle", "s")
    add_input(("Simulation", "WatchdogTripped"), "Boolean", lambda: plant.watchdog_tripped,
              "the controller went quiet and the outputs were put to their safe values")
    previous_reset = [False]

    def reset(value: object) -> None:
        if value and not previous_reset[0]:
            plant.reset()
        previous_reset[0] = bool(value)

    add_output(("Reset",), "Boolean", reset, "rising edge: clear latched faults of repaired stations and robots",
               safe=False)
    for name, source in plant.sources.items():
        add_input(("Sources", name, "PartsOut"), "UInt32", partial(getattr, source, "parts_out"), "parts released",
                  "parts")
    for name, conveyor in plant.conveyors.items():
        _conveyor(name, conveyor, add_input, add_output)
    for name, station in plant.stations.items():
        _station(name, station, add_input, add_output)
    for name, robot in plant.robots.items():
        _robot(name, robot, add_input, add_output)
    for name, sink in plant.sinks.items():
        add_input(("Sinks", name, "PartsIn"), "UInt32", partial(getattr, sink, "parts_in"), "parts received", "parts")
    return signals


def _conveyor(name: str, conveyor: Conveyor, add_input, add_output) -> None:
    base = ("Conveyors", name)
    add_output((*base, "Run"), "Boolean", _setter(conveyor, "run", bool), "drive enable", safe=False)
    add_output((*base, "SpeedSetpoint"), "Double", _setter(conveyor, "speed_setpoint", float),
               "belt speed while running", safe=0.0, unit="m/s", low=0.0, high=conveyor.max_speed)
    add_output((*base, "Stopper"), "Boolean", _setter(conveyor, "stopper", bool),
               "true: the stopper at the belt's end is raised and holds the lead part", safe=True)
    add_input((*base, "Speed"), "Double", lambda: conveyor.speed, "actual belt speed", "m/s")
    add_input((*base, "Encoder"), "UInt32", lambda: conveyor.encoder,
              f"belt travel, {ENCODER_COUNTS_PER_M} counts per metre, wraps at 2^32", "counts")
    add_input((*base, "PartAtStart"), "Boolean", conveyor.part_at_start, "part-present switch at the infeed")
    add_input((*base, "PartAtEnd"), "Boolean", conveyor.part_at_end, "part-present switch at the stopper")
    for eye in conveyor.eyes:
        add_input((*base, eye.name), "Boolean", lambda e=eye: e.occupied,
                  f"photo-eye {eye.position:g} m along the belt: true while a part breaks the beam")


def _station(name: str, station: Station, add_input, add_output) -> None:
    base = ("Stations", name)
    add_input((*base, "Identification", "Model"), "String", lambda: station.title, "OPC 40001 identification")
    add_input((*base, "Identification", "ProductInstanceUri"), "String", lambda: station.element.path,
              "OPC 40001 identification: the station's prim path")
    add_input((*base, "MachineryItemState", "CurrentState"), "String", lambda: station.state,
              "OPC 40001 MachineryItemState: Executing, NotExecuting or OutOfService")
    add_input((*base, "PartPresent"), "Boolean", lambda: station.part is not None, "a part is in the station")
    add_input((*base, "Done"), "Boolean", lambda: station.done, "the part is processed and waits to leave")
    add_input((*base, "Fault"), "Boolean", lambda: station.fault, "failed; stays set until repaired and reset")
    add_input((*base, "PartsDone"), "UInt32", lambda: station.parts_done, "parts processed", "parts")
    add_output((*base, "Start"), "Boolean", _setter(station, "start", bool),
               "process the part present (level; a done part is not processed again)", safe=False)
    add_output((*base, "Unload"), "Boolean", _setter(station, "unload", bool),
               "pass the done part downstream when there is room", safe=False)


def _robot(name: str, robot: Robot, add_input, add_output) -> None:
    device = ("MotionDeviceSystem", "MotionDevices", name)
    for index, axis in enumerate(robot.axes):
        add_input((*device, "Axes", axis, "ParameterSet", "ActualPosition"), "Double",
                  lambda i=index: float(robot.q[i]), "OPC 40010 axis position", "rad")
    task = ("MotionDeviceSystem", "Controllers", name, "TaskControls", "Program", "ParameterSet")
    add_output((*task, "ProgramNumber"), "UInt16", _setter(robot, "program", int),
               f"{PROGRAM_PICK_AND_PLACE}: pick and place along the taught route; 0: none", safe=0, low=0,
               high=PROGRAM_PICK_AND_PLACE)
    add_output((*task, "Start"), "Boolean", _setter(robot, "start", bool),
               "rising edge: run the program; set false to acknowledge ProgramDone", safe=False)
    add_input((*task, "Busy"), "Boolean", lambda: robot.busy, "a program is running")
    add_input((*task, "ProgramDone"), "Boolean", lambda: robot.done, "ran to its end (until Start is false)")
    add_input((*task, "AtHome"), "Boolean", lambda: robot.at_home, "idle at the home pose")
    add_input((*task, "Holding"), "Boolean", lambda: robot.holding is not None, "a part is in the gripper")
    add_input((*task, "Fault"), "Boolean", lambda: robot.fault, "gripped where there was no part; clear with Reset")
    add_input((*task, "Cycles"), "UInt32", lambda: robot.cycles, "programs completed", "cycles")


def markdown_table(signals: list[Signal]) -> str:
    """The signals as the Markdown table docs/commissioning.md lists (a test keeps the two equal)."""
    rows = ["| Node (`ns=<urn:factory-twin:commission>;s=...`) | Type | Direction | Unit | Range | Safe | Meaning |",
            "|---|---|---|---|---|---|---|"]
    for signal in signals:
        span = f"{signal.low:g} to {signal.high:g}" if signal.low is not None and signal.high is not None else ""
        safe = "" if signal.direction == INPUT else str(signal.safe).lower()
        rows.append(f"| `{signal.node}` | {signal.type} | {signal.direction} | {signal.unit} | {span} | {safe} | "
                    f"{signal.description} |")
    return "\n".join(rows) + "\n"
