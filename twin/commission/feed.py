"""The simulated plant into a twin's runtime cache, so that `twin commission` shows the line it simulates.

The same signals a real line's bindings give the twin (sample_factory/bindings.yaml): part positions on belts,
parts in stations and grippers, robot joints, station states and counters. The scene, the KPIs and the
alarms then follow the simulated line exactly as they would follow the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from twin.core.cache import RuntimeCache

from .plant import Conveyor, Plant, Station

# the station state codes of the sample's bindings, which the live KPIs read (4: down)
STATE_LABELS = {0: "idle", 1: "working", 2: "blocked", 3: "starved", 4: "down"}


def station_state(station: Station) -> int:
    if station.fault:
        return 4
    if station.working:
        return 1
    if station.done:
        return 2  # processed, waiting to leave
    return 3 if station.part is None else 0


class PlantFeed:
    """Writes the plant's state into `cache` whenever the plant has moved (`write()`, or `run()` as a task)."""

    def __init__(self, plant: Plant, cache: RuntimeCache, *, period_s: float = 0.05):
        self.plant, self.cache, self.period_s = plant, cache, period_s
        self._written_cycle = -1
        self._task: asyncio.Task | None = None
        self.rows: list[tuple[int, Callable[..., Any]]] = []  # (row, its value now)
        for conveyor in plant.conveyors.values():
            path, capacity = conveyor.element.path, conveyor.capacity
            self._add(path, "twin:partPositions", lambda c=conveyor, n=capacity: _positions(c, n), width=capacity,
                      unit="m")
            self._add(path, "twin:speed", lambda c=conveyor: c.speed, unit="m/s")
            self._add(path, "twin:speedSetpoint", lambda c=conveyor: c.speed_setpoint, unit="m/s")
            self._add(path, "twin:running", lambda c=conveyor: c.speed > 0, kind="bool")
        for station in plant.stations.values():
            path = station.element.path
            self._add(path, "twin:hasPart", lambda s=station: s.part is not None, kind="bool")
            self._add(path, "twin:state", lambda s=station: station_state(s), kind="int", labels=STATE_LABELS)
            self._add(path, "twin:partsDone", lambda s=station: s.parts_done, unit="parts", kind="int")
        for robot in plant.robots.values():
            path = robot.element.path
            if robot.axes:
                self._add(path, "twin:jointPositions", lambda r=robot: r.q, width=len(robot.axes), unit="rad")
            self._add(path, "twin:holding", lambda r=robot: r.holding is not None, kind="bool")
            self._add(path, "twin:cycles", lambda r=robot: r.cycles, unit="cycles", kind="int")
        for source in plant.sources.values():
            self._add(source.element.path, "twin:partsOut", lambda s=source: s.parts_out, unit="parts", kind="int")
        for sink in plant.sinks.values():
            self._add(sink.element.path, "twin:partsIn", lambda s=sink: s.parts_in, unit="parts", kind="int")

    def _add(self, prim: str, attr: str, read: Callable[..., Any], *, width: int = 1, unit: str = "",
             kind: str = "float", labels: dict[int, str] | None = None) -> None:
        self.rows.append((self.cache.add_signal(prim, attr, width=width, unit=unit, kind=kind, labels=labels), read))

    def write(self) -> None:
        """Every signal, unless the plant has not moved since the last write."""
        if self.plant.cycles == self._written_cycle:
            return
        self._written_cycle = self.plant.cycles
        for row, read in self.rows:
            value = read()
            label = STATE_LABELS.get(value) if self.cache.signals[row].labels else None
            self.cache.write_signal(row, float(value) if isinstance(value, bool | int) else value, label=label)

    async def run(self) -> None:
        while True:
            self.write()
            await asyncio.sleep(self.period_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _positions(conveyor: Conveyor, capacity: int) -> np.ndarray:
    """Part centres along the belt, NaN in the free slots."""
    positions = np.full(capacity, math.nan)
    for slot, part in enumerate(conveyor.parts[:capacity]):
        positions[slot] = part.position
    return positions
