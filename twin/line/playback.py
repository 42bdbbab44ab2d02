"""Playback of one simulated variant: part positions and machine states over time, for the viewer.

The simulation records, for the variant asked for, when each part entered each element and when
each machine changed state. Positions follow from the layout: a part on a belt moves at the belt's
speed until it queues behind the part ahead (one pitch apart), a part in a station sits on its
table, a part in a robot's gripper travels from where it was picked to where it will be put down.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from twin.core.stage import TwinStage

from . import kernels
from .model import BUFFER, COLUMN, CONVEYOR, ROBOT, SINK, SOURCE, STATION, LineModel
from .simulation import STATES, LineSimulation, Variant

PART_HALF = 0.1  # the viewer draws parts as 0.2 m cubes centred on these points
LIFT = 0.35  # how high a robot lifts a part between pick and place


def record_variant(model: LineModel, variant: Variant, seconds: float, *, seed: int, start=None,
                   device: str | None = None) -> LineSimulation:
    """Simulate `variant` alone for `seconds`, keeping its playback log."""
    simulation = LineSimulation(model, [variant], seed=seed, device=device, record_variant=0)
    if start is not None:
        start.apply(simulation)
    simulation.run(seconds)
    return simulation


class PlaybackGeometry:
    """World points of the layout where parts enter, leave and rest."""

    def __init__(self, model: LineModel, stage: TwinStage, parameters: np.ndarray):
        self.model, self.parameters = model, parameters
        self.belt: dict[int, np.ndarray] = {}
        self.rest: dict[int, np.ndarray] = {}
        for e, element in enumerate(model.elements):
            world = stage.world_transform(element.path)
            if element.kind == CONVEYOR:
                height = float(stage.attribute(element.path, "twin:beltHeight", 0.75))
                self.belt[e] = world @ _translation(0.0, 0.0, height + PART_HALF)
            else:
                top = float(stage.attribute(element.path, "twin:tableHeight", 0.75))
                self.rest[e] = (world @ _translation(0.0, 0.0, top + PART_HALF))[:3, 3]

    def on_belt(self, e: int, along: float) -> np.ndarray:
        return (self.belt[e] @ np.array([along, 0.0, 0.0, 1.0]))[:3]

    def entry(self, e: int) -> np.ndarray:
        if e in self.belt:
            return self.on_belt(e, self.parameters[e, COLUMN["twin:partLength"]] / 2)
        return self.rest[e]

    def exit(self, e: int) -> np.ndarray:
        if e in self.belt:
            row = self.parameters[e]
            return self.on_belt(e, row[COLUMN["twin:length"]] - row[COLUMN["twin:partLength"]] / 2)
        return self.rest[e]


def playback_frames(simulation: LineSimulation, geometry: PlaybackGeometry, seconds: float,
                    step: float = 0.5) -> dict:
    """Frames every `step` simulated seconds: part ids and positions, and each machine's state changes.

    `geometry` reads the stage; build it where the stage may be read (the server's loop thread).
    """
    model = simulation.model
    parameters = simulation.parameters[0]
    log = simulation.log_numpy()
    visits: dict[int, list[tuple[float, int]]] = defaultdict(list)  # part -> [(time, element)]
    gone: dict[int, float] = {}
    states: dict[str, list] = {model.elements[e].path: [] for e in range(len(model))
                               if model.elements[e].kind in (STATION, ROBOT)}
    for time, element, what, value in zip(log["time"], log["element"], log["what"], log["value"], strict=True):
        if what == kernels.LOG_ENTER:
            visits[int(value)].append((float(time), int(element)))
            if model.elements[element].kind == SINK:
                gone[int(value)] = float(time)
        elif what == kernels.LOG_SCRAP:
            gone[int(value)] = float(time)
        elif what == kernels.LOG_STATE:
            states[model.elements[element].path].append([round(float(time), 3), STATES[int(value)]])
    times = np.arange(0.0, seconds + 1e-9, step)
    frames = []
    for t in times:
        ids, points = [], []
        on_belts: dict[int, list[tuple[float, int]]] = defaultdict(list)
        located: list[tuple[int, int, float, int]] = []  # part, element, entered, visit index
        for part, route in visits.items():
            if route[0][0] > t or gone.get(part, np.inf) <= t:
                continue
            index = max(i for i, (entered, _) in enumerate(route) if entered <= t)
            entered, element = route[index]
            located.append((part, element, entered, index))
            if model.elements[element].kind == CONVEYOR:
                on_belts[element].append((entered, part))
        rank = {part: k for belt in on_belts.values() for k, (_, part) in enumerate(sorted(belt))}
        for part, element, entered, index in located:
            kind = model.elements[element].kind
            if kind == CONVEYOR:
                row = parameters[element]
                speed, length = row[COLUMN["twin:speed"]], row[COLUMN["twin:length"]]
                half, pitch = row[COLUMN["twin:partLength"]] / 2, row[COLUMN["twin:partPitch"]]
                along = min(half + (t - entered) * speed, length - half - rank[part] * pitch)
                point = geometry.on_belt(element, max(along, half))
            elif kind == ROBOT:
                route = visits[part]
                picked_from = route[index - 1][1] if index > 0 else element
                if index + 1 < len(route):
                    placed_at, target = route[index + 1]
                    share = (t - entered) / max(placed_at - entered, 1e-9)
                    start, end = geometry.exit(picked_from), geometry.entry(target)
                    point = start + (end - start) * share
                    point = point + np.array([0.0, 0.0, LIFT * np.sin(np.pi * share)])
                else:
                    point = geometry.exit(picked_from) + np.array([0.0, 0.0, LIFT])
            elif kind in (STATION, BUFFER, SOURCE):
                point = geometry.rest[element]
            else:
                continue
            ids.append(part)
            points.extend(round(float(c), 3) for c in point)
        frames.append({"t": round(float(t), 3), "ids": ids, "positions": points})
    return {"step": step, "seconds": seconds, "frames": frames,
            "states": [{"prim": prim, "changes": changes} for prim, changes in states.items()],
            "log_complete": int(simulation.log.count.numpy()[0]) <= len(simulation.log.time)}


def _translation(x: float, y: float, z: float) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = (x, y, z)
    return matrix
