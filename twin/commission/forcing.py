"""Faults on demand: inputs forced, drives and stations failed, as a PLC's force table does on a real line.

A forced input is what the controller reads over OPC-UA, whatever the plant says: a fixed `value`, `stuck`
at the value it had when forced, `flicker` (a Boolean toggling every half `period_s` of plant time, so a
lock-step run flickers the same every time), or `offline` (read answers BadNoCommunication, as a sensor
whose I/O module dropped off the bus). `fail` acts on the plant instead of on a signal: a failed drive
(`Line.Conveyors.<belt>`) stands still though commanded, a failed station (`Line.Stations.<station>`) faults
and stays out of service until released, then the controller's Reset clears it like a repaired machine.
Every force and release is audited with user and time; `release("all")` lifts every force at once.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

from .address import INPUT, Signal
from .plant import Conveyor, Plant, Station

Mode = Literal["value", "stuck", "flicker", "offline", "fail"]
MODES: tuple[str, ...] = ("value", "stuck", "flicker", "offline", "fail")
ALL = "all"
MAX_TEXT = 200  # characters of a forced String value
_UINT_BITS = {"UInt16": 16, "UInt32": 32, "UInt64": 64}


class Offline:
    """The value of an offline input: the server publishes a Bad status instead of a value."""

    def __repr__(self) -> str:
        return "OFFLINE"


OFFLINE = Offline()


class ForceError(ValueError):
    """A force that cannot be applied as asked (the REST API answers 422)."""


class UnknownNodeError(KeyError):
    """No input, drive or station of that name, or nothing forced there (the REST API answers 404)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Force:
    node: str
    mode: str
    value: object  # value and stuck: what is read; flicker: the value it starts with; offline and fail: None
    period_s: float | None  # flicker only
    user: str
    time: float  # wall clock (Unix s) when forced
    plant_time: float  # plant s when forced: flicker's phase

    def json(self) -> dict:
        return {"node": self.node, "mode": self.mode, "value": self.value, "period_s": self.period_s,
                "user": self.user, "time": self.time}


@dataclass(frozen=True)
class ForceRecord:
    """One line of the audit: who forced or released what, and when."""

    time: float
    user: str
    action: str  # "force" or "release"
    node: str
    mode: str
    value: object = None
    period_s: float | None = None


class Forces:
    """The forces on one plant's inputs, drives and stations."""

    def __init__(self, plant: Plant, signals: list[Signal]):
        self.plant = plant
        self.inputs = {s.node: s for s in signals if s.direction == INPUT and s.path[1] != "Simulation"}
        self.outputs = {s.node for s in signals if s.direction != INPUT}
        self.drives = {f"Line.Conveyors.{name}": conveyor for name, conveyor in plant.conveyors.items()}
        self.stations = {f"Line.Stations.{name}": station for name, station in plant.stations.items()}
        self.active: dict[str, Force] = {}
        self.audit: deque[ForceRecord] = deque(maxlen=10_000)

    def value(self, signal: Signal, actual: object) -> object:
        """What the controller reads from an input: the plant's `actual` value unless forced."""
        force = self.active.get(signal.node)
        if force is None:
            return actual
        if force.mode == "offline":
            return OFFLINE
        if force.mode == "flicker":
            assert force.period_s is not None
            toggles = math.floor((self.plant.time - force.plant_time) / (force.period_s / 2) + 1e-9)
            return force.value if toggles % 2 == 0 else not force.value
        return force.value

    def force(self, node: str, mode: str = "value", value: object = None, *, period_s: float | None = None,
              user: str) -> Force:
        """Force `node` (see the module's docstring); replaces a force already on it."""
        if mode not in MODES:
            raise ForceError(f"{node}: mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "fail":
            self._fail(node)
            force = Force(node, mode, None, None, user, time.time(), self.plant.time)
        else:
            signal = self._input(node)
            if (value is None) != (mode != "value"):
                raise ForceError(f"{node}: mode {mode!r} " + ("needs a value" if mode == "value" else "takes no value"))
            if (period_s is not None) != (mode == "flicker"):
                raise ForceError(f"{node}: " + ("flicker needs period_s" if mode == "flicker"
                                                else f"period_s is for flicker, not {mode!r}"))
            current = self.value(signal, signal.value())
            if mode == "value":
                value = _checked(signal, value)
            elif mode == "stuck":
                if current is OFFLINE:
                    raise ForceError(f"{node}: is offline, so there is no value to hold; release it first")
                value = current
            elif mode == "flicker":
                assert period_s is not None
                if signal.type != "Boolean":
                    raise ForceError(f"{node}: only a Boolean input can flicker, this one is {signal.type}")
                if not math.isfinite(period_s) or period_s < 2 * self.plant.dt:
                    raise ForceError(f"{node}: flicker period_s {period_s:g} must be at least two plant cycles "
                                     f"({2 * self.plant.dt:g} s)")
                value = not current if isinstance(current, bool) else True
            force = Force(node, mode, value, period_s, user, time.time(), self.plant.time)
        self.active[node] = force
        self.audit.append(ForceRecord(force.time, user, "force", node, mode, force.value, period_s))
        return force

    def release(self, node: str = ALL, *, user: str) -> list[str]:
        """Lift the force on `node`, or every force with "all"; returns the nodes released."""
        if node != ALL and node not in self.active:
            known = node in self.inputs or node in self.drives or node in self.stations
            raise UnknownNodeError(f"{node} is not forced" if known else f"no input, drive or station named {node}")
        released = list(self.active) if node == ALL else [node]
        for name in released:
            force = self.active.pop(name)
            if force.mode == "fail":
                self._unfail(name)
            self.audit.append(ForceRecord(time.time(), user, "release", name, force.mode))
        return released

    def audit_json(self) -> list[dict]:
        return [asdict(record) for record in self.audit]

    def _input(self, node: str) -> Signal:
        if node in self.inputs:
            return self.inputs[node]
        if node in self.outputs:
            raise ForceError(f"{node} is an output: the controller writes it; force the input it feeds, or fail "
                             "the drive or station")
        if node in self.drives or node in self.stations:
            raise ForceError(f"{node} is a {'drive' if node in self.drives else 'station'}: its only mode is 'fail'")
        if node.startswith("Line.Simulation."):
            raise ForceError(f"{node} is the simulation's own state, not plant I/O, and cannot be forced")
        raise UnknownNodeError(f"no input named {node} (a node is e.g. Line.Conveyors.Conveyor1.PartAtEnd)")

    def _fail(self, node: str) -> None:
        target: Conveyor | Station | None = self.drives.get(node) or self.stations.get(node)
        if target is None:
            if node in self.inputs or node in self.outputs:
                raise ForceError(f"{node} is a signal: 'fail' is for a drive (Line.Conveyors.<belt>) or a station "
                                 "(Line.Stations.<station>)")
            raise UnknownNodeError(f"no drive or station named {node} (e.g. Line.Conveyors.Conveyor1, "
                                   "Line.Stations.<station>)")
        if isinstance(target, Conveyor):
            target.drive_failed = True
        else:
            target.fault, target.repair_left = True, math.inf  # no repair while failed on demand

    def _unfail(self, node: str) -> None:
        if node in self.drives:
            self.drives[node].drive_failed = False
        else:
            self.stations[node].repair_left = 0.0  # repaired: the controller's Reset clears the fault


def _checked(signal: Signal, value: object) -> object:
    """`value` as the input's OPC-UA type, or a ForceError naming the node."""
    kind = signal.type
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
    elif kind in _UINT_BITS:
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < 2 ** _UINT_BITS[kind]:
                return value
            raise ForceError(f"{signal.node}: {_shown(value)} is outside {kind} (0 to 2^{_UINT_BITS[kind]} - 1)")
    elif kind == "Double":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if abs(value) < 1e300:  # finite, and an int that a float can hold
                return float(value)
            raise ForceError(f"{signal.node}: {_shown(value)} is not a finite number a Double holds")
    elif kind == "String" and isinstance(value, str):
        if len(value) <= MAX_TEXT:
            return value
        raise ForceError(f"{signal.node}: a forced text is at most {MAX_TEXT} characters")
    raise ForceError(f"{signal.node} is a {kind} input; {_shown(value)!r} ({type(value).__name__}) is not one")


def _shown(value: object) -> str:
    """A value as an error message quotes it: short, and no 4,300-digit number (Python refuses to print one)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit number"
    return str(value)[:40]
