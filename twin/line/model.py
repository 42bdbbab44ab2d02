"""The production line as the simulation sees it: an immutable model read from the layout's USD.

Every element of the line is a prim with a `twin:kind` (source, conveyor, buffer, station, robot,
sink) and a `twin:next` relationship to the elements its parts go to next, in priority order.
Process parameters are `twin:` attributes on the same prims (docs/line-model.md lists them); robot
cycle times come from the robot's taught poses, timed by the same trajectory planner that drives
the robot. `LineModel.parameters()` flattens everything into one table that variants override.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pxr import Usd

from twin.core.errors import LayoutError

KINDS = ("source", "conveyor", "buffer", "station", "robot", "sink")
SOURCE, CONVEYOR, BUFFER, STATION, ROBOT, SINK = range(6)
ROUTING = ("first_free", "round_robin")
DISTRIBUTIONS = ("constant", "normal", "exponential", "lognormal")

# Columns of the parameter table: one row per element, the same for every kind (unused ones stay 0).
PARAMETERS = (
    "twin:interarrival", "twin:arrivalSpread", "twin:capacity", "twin:length", "twin:speed", "twin:partPitch",
    "twin:cycleTime", "twin:cycleSpread", "twin:mtbf", "twin:mttr", "twin:scrapRate", "twin:setupTime",
    "twin:setupEvery", "twin:pickTime", "twin:placeTime", "twin:returnTime", "twin:partLength",
)
COLUMN = {name: index for index, name in enumerate(PARAMETERS)}
DEFAULT_PITCH = 0.3  # metres between part centres on an accumulating belt
MAX_CAPACITY = 10_000  # parts one element may hold: every variant keeps a queue this long per element

# What each kind reads, with defaults (None: required) and the lower bound a value must respect.
_SPECS: dict[int, dict[str, tuple[float | None, float, bool]]] = {
    # name: (default, bound, strict): value > bound when strict, else value >= bound
    SOURCE: {"twin:interarrival": (None, 0.0, True), "twin:arrivalSpread": (0.0, 0.0, False)},
    CONVEYOR: {"twin:length": (None, 0.0, True), "twin:speed": (None, 0.0, True),
               "twin:capacity": (None, 1.0, False), "twin:partPitch": (DEFAULT_PITCH, 0.0, True),
               "twin:partLength": (0.0, 0.0, False)},
    BUFFER: {"twin:capacity": (None, 1.0, False)},
    STATION: {"twin:cycleTime": (None, 0.0, True), "twin:cycleSpread": (0.0, 0.0, False),
              "twin:mtbf": (0.0, 0.0, False), "twin:mttr": (0.0, 0.0, False),
              "twin:scrapRate": (0.0, 0.0, False), "twin:setupTime": (0.0, 0.0, False),
              "twin:setupEvery": (0.0, 0.0, False)},
    ROBOT: {"twin:pickTime": (None, 0.0, True), "twin:placeTime": (None, 0.0, True),
            "twin:returnTime": (0.0, 0.0, False)},
    SINK: {},
}


@dataclass(frozen=True)
class Element:
    path: str
    kind: int
    parameters: dict[str, float]
    next: tuple[str, ...]
    routing: int = 0  # index into ROUTING
    distribution: int = 0  # of the cycle (stations) or of the interarrival time (sources)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def kind_name(self) -> str:
        return KINDS[self.kind]


@dataclass(frozen=True)
class LineModel:
    """The line's elements in a fixed order, and the routing between them as index lists."""

    elements: tuple[Element, ...]
    source_file: str = ""
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {element.path: i for i, element in enumerate(self.elements)})

    def __len__(self) -> int:
        return len(self.elements)

    def of_kind(self, kind: int) -> list[int]:
        return [i for i, element in enumerate(self.elements) if element.kind == kind]

    def successors(self, element: int) -> list[int]:
        return [self.index[path] for path in self.elements[element].next]

    def predecessors(self, element: int) -> list[int]:
        path = self.elements[element].path
        return [i for i, other in enumerate(self.elements) if path in other.next]

    def parameters(self) -> np.ndarray:
        """(n_elements, len(PARAMETERS)) float64: the base values that variants override."""
        table = np.zeros((len(self.elements), len(PARAMETERS)))
        for row, element in enumerate(self.elements):
            for name, value in element.parameters.items():
                table[row, COLUMN[name]] = value
        return table

    def capacity(self, element: int, parameters: np.ndarray | None = None) -> int:
        """Parts the element holds at most: an accumulating belt holds what fits at its pitch."""
        table = self.parameters() if parameters is None else parameters
        return int(_capacity(self.elements[element].kind, table[element]))

    def error(self, path: str, message: str) -> LayoutError:
        return LayoutError(self.source_file or "<line model>", f"{path}: {message}")

    def check_parameters(self, table: np.ndarray) -> None:
        """Refuse values no line can have (a sweep may ask for them): negative times, rates above 1."""
        for row, element in enumerate(self.elements):
            for name, (_, bound, strict) in _SPECS[element.kind].items():
                value = float(table[row, COLUMN[name]])
                if not math.isfinite(value) or (value <= bound if strict else value < bound):
                    relation = ">" if strict else ">="
                    raise self.error(element.path, f"{name} = {value:g} must be {relation} {bound:g}")
            if element.kind == STATION and table[row, COLUMN["twin:scrapRate"]] >= 1.0:
                raise self.error(element.path, "twin:scrapRate must be below 1 (every part would be scrapped)")
            if element.kind == STATION and table[row, COLUMN["twin:mtbf"]] > 0 >= table[row, COLUMN["twin:mttr"]]:
                raise self.error(element.path, "twin:mttr must be > 0 when twin:mtbf is set")
            if element.kind == CONVEYOR and table[row, COLUMN["twin:partLength"]] >= table[row, COLUMN["twin:length"]]:
                raise self.error(element.path, "twin:partLength must be shorter than twin:length")
            if _capacity(element.kind, table[row]) > MAX_CAPACITY:
                raise self.error(element.path, f"holds {_capacity(element.kind, table[row]):g} parts; "
                                               f"at most {MAX_CAPACITY:,} per element can be simulated")


def _capacity(kind: int, row: np.ndarray) -> float:
    if kind == CONVEYOR:
        travel = row[COLUMN["twin:length"]] - row[COLUMN["twin:partLength"]]
        fits = math.floor(travel / row[COLUMN["twin:partPitch"]] + 1e-9) + 1
        return min(row[COLUMN["twin:capacity"]], fits)
    if kind == BUFFER:
        return row[COLUMN["twin:capacity"]]
    return 0.0 if kind == SINK else 1.0


def read_line(stage: Usd.Stage) -> LineModel:
    """The line of a layout: its sources and every prim their parts can reach through `twin:next`.

    Raises LayoutError naming the prim for a station with no way out, an element no part can reach,
    a missing or negative parameter, an unknown kind or routing, and a loop that has no buffer.
    """
    layer = stage.GetRootLayer()
    source_file = layer.realPath or layer.identifier

    def fail(path: str, message: str) -> LayoutError:
        return LayoutError(source_file, f"{path}: {message}")

    routed = [prim for prim in stage.Traverse() if prim.GetRelationship("twin:next")
              and prim.GetRelationship("twin:next").GetTargets()]
    sources = [prim for prim in stage.Traverse() if _kind_of(prim) == "source"]
    if not sources:
        raise LayoutError(source_file, "the line has no source (a prim with twin:kind = \"source\")")
    order: list[Usd.Prim] = []
    seen: set[str] = set()
    pending = list(sources)
    while pending:  # breadth-first from the sources: elements in flow order
        prim = pending.pop(0)
        path = str(prim.GetPath())
        if path in seen:
            continue
        seen.add(path)
        order.append(prim)
        for target in _targets(prim):
            target_prim = stage.GetPrimAtPath(target)
            if not target_prim:
                raise fail(path, f"twin:next targets {target}, which does not exist")
            pending.append(target_prim)
    elements = [_element(prim, fail) for prim in order]
    for prim in routed:
        if str(prim.GetPath()) not in seen:
            raise fail(str(prim.GetPath()), "no part can reach it: no source leads here through twin:next")
    if not any(element.kind == SINK for element in elements):
        raise LayoutError(source_file, "the line has no sink reachable from its sources")
    model = LineModel(tuple(elements), source_file)
    for element in elements:
        for target in element.next:
            kind = model.elements[model.index[target]].kind
            if kind == SOURCE:
                raise fail(element.path, f"twin:next leads into the source {target}")
            if kind == ROBOT and element.kind == ROBOT:
                raise fail(element.path, f"a robot cannot hand over to the robot {target}; put a buffer or "
                                         "station between them")
    _check_loops(model, fail)
    model.check_parameters(model.parameters())
    return model


def _kind_of(prim: Usd.Prim) -> str | None:
    attribute = prim.GetAttribute("twin:kind")
    return str(attribute.Get()) if attribute and attribute.HasAuthoredValue() else None


def _targets(prim: Usd.Prim) -> list[str]:
    relationship = prim.GetRelationship("twin:next")
    return [str(target) for target in relationship.GetTargets()] if relationship else []


def _token(prim: Usd.Prim, name: str, choices: tuple[str, ...], default: str, fail) -> int:
    attribute = prim.GetAttribute(name)
    value = str(attribute.Get()) if attribute and attribute.HasAuthoredValue() else default
    if value not in choices:
        raise fail(str(prim.GetPath()), f"{name} = {value!r} is not one of {', '.join(choices)}")
    return choices.index(value)


def _element(prim: Usd.Prim, fail) -> Element:
    path = str(prim.GetPath())
    kind_name = _kind_of(prim)
    if kind_name not in KINDS:
        raise fail(path, f"twin:kind = {kind_name!r} cannot be part of a line (one of {', '.join(KINDS)})")
    kind = KINDS.index(kind_name)
    targets = tuple(_targets(prim))
    if kind == SINK and targets:
        raise fail(path, "a sink has no way out, but twin:next is set")
    if kind != SINK and not targets:
        raise fail(path, f"this {kind_name} has no way out: twin:next names no downstream element")
    if len(set(targets)) != len(targets):
        raise fail(path, "twin:next names the same element twice")
    values: dict[str, float] = {}
    if kind == ROBOT:
        values.update(robot_cycle_times(prim, fail))
    for name, (default, _, _) in _SPECS[kind].items():
        attribute = prim.GetAttribute(name)
        value = attribute.Get() if attribute and attribute.HasAuthoredValue() else None
        if value is None:
            value = values.get(name, default)
        if value is None:
            raise fail(path, f"{name} is required for a {kind_name}")
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise fail(path, f"{name} = {value!r} is not a number") from None
    distribution_attribute = "twin:arrivalDistribution" if kind == SOURCE else "twin:cycleDistribution"
    default_distribution = "exponential" if kind == SOURCE else "normal"
    return Element(
        path=path, kind=kind, parameters=values, next=targets,
        routing=_token(prim, "twin:routing", ROUTING, "first_free", fail),
        distribution=_token(prim, distribution_attribute, DISTRIBUTIONS, default_distribution, fail)
        if kind in (SOURCE, STATION) else 0,
    )


def robot_cycle_times(prim: Usd.Prim, fail) -> dict[str, float]:
    """Pick, place and return times of a robot from its taught route (`twin:route`, `twin:pose:*`).

    Each move is the synchronised quintic joint move the robot really makes (twin.kinematics.trajectory), at
    `twin:jointSpeed` of its joint velocity limits and `twin:jointAcceleration`; "grip" and "release"
    take `twin:gripTime`. Without a route the robot must author twin:pickTime and twin:placeTime.
    """
    route_attribute = prim.GetAttribute("twin:route")
    if not route_attribute or not route_attribute.HasAuthoredValue():
        return {}
    from twin.kinematics.chain import Chain
    from twin.kinematics.trajectory import chain_joint_move

    path = str(prim.GetPath())
    route = list(route_attribute.Get())
    if "grip" not in route or "release" not in route or route.index("grip") > route.index("release"):
        raise fail(path, "twin:route must contain 'grip' and then 'release'")
    chain = Chain.from_usd(prim.GetStage(), path)

    def number(attribute: str, default: float) -> float:
        value = prim.GetAttribute(attribute).Get() if prim.GetAttribute(attribute) else None
        return float(default if value is None else value)

    speed, acceleration = number("twin:jointSpeed", 1.0), number("twin:jointAcceleration", 4.0)
    grip = number("twin:gripTime", 0.0)
    durations, previous = [], None
    for step in route:
        if step in ("grip", "release"):
            durations.append((step, grip))
            continue
        attribute = prim.GetAttribute(f"twin:pose:{step}")
        if not attribute or attribute.Get() is None:
            raise fail(path, f"twin:route names pose {step!r}, but twin:pose:{step} is not authored")
        pose = np.array(attribute.Get(), np.float64)
        if len(pose) != chain.n_joints:
            raise fail(path, f"twin:pose:{step} has {len(pose)} values for {chain.n_joints} joints")
        if previous is not None:
            move = chain_joint_move(chain, previous[None], pose[None], speed=speed, acceleration=acceleration,
                                    profile="quintic")
            durations.append((step, float(move.duration[0])))
        previous = pose
    grip_at = next(i for i, (step, _) in enumerate(durations) if step == "grip")
    release_at = next(i for i, (step, _) in enumerate(durations) if step == "release")
    return {
        "twin:pickTime": sum(d for _, d in durations[: grip_at + 1]),
        "twin:placeTime": sum(d for _, d in durations[grip_at + 1: release_at + 1]),
        "twin:returnTime": sum(d for _, d in durations[release_at + 1:]),
    }


def _check_loops(model: LineModel, fail) -> None:
    """A loop of stations, belts and robots with no buffer deadlocks once it fills; refuse it."""
    n = len(model)
    successors = [model.successors(i) for i in range(n)]
    index_of, low, on_stack, stack, counter = [-1] * n, [0] * n, [False] * n, [], [0]

    def strongly_connected(v: int) -> None:  # Tarjan; the line is small, recursion is fine
        index_of[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack[v] = True
        for w in successors[v]:
            if index_of[w] < 0:
                strongly_connected(w)
                low[v] = min(low[v], low[w])
            elif on_stack[w]:
                low[v] = min(low[v], index_of[w])
        if low[v] == index_of[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack[w] = False
                component.append(w)
                if w == v:
                    break
            looped = len(component) > 1 or v in successors[v]
            if looped and not any(model.elements[i].kind == BUFFER for i in component):
                paths = sorted(model.elements[i].path for i in component)
                raise fail(paths[0], f"routing loops through {', '.join(paths)} with no buffer in the loop")

    for v in range(n):
        if index_of[v] < 0:
            strongly_connected(v)
