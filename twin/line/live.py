"""Fork from live: the line's simulation state as the plant's signals show it right now.

Read from the runtime cache, never from the PLC directly (data flows connectors -> cache ->
simulation). What the signals cannot tell is filled in plainly, and said so in `assumptions`:
- parts on a belt keep their reported positions (`twin:partPositions`) and move at the belt's live
  `twin:speed` (a stopped or unknown belt keeps its authored speed);
- a station with a part (`twin:hasPart`) resumes at its reported `twin:state` and `twin:progress`,
  the rest of its cycle being the mean cycle time times what is left; a down station's repair
  starts afresh (repair times are memoryless);
- a robot holding a part (`twin:holding`) is half-way through its place move;
- parts already in the line count as released now, so their lead times are too short.
Signals whose quality is not good are ignored: that element starts empty, and `assumptions` says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from twin.core.cache import RuntimeCache, quality_name

from .model import COLUMN, CONVEYOR, ROBOT, SINK, STATION, LineModel
from .simulation import LineSimulation

STATION_STATES = {0: "idle", 1: "working", 2: "blocked", 3: "starved", 4: "down"}  # the PLC's codes


@dataclass
class LiveStart:
    taken_at: float  # wall time of the snapshot
    belts: dict[int, list[float]] = field(default_factory=dict)  # element -> part positions, metres
    stations: dict[int, tuple[int, float]] = field(default_factory=dict)  # element -> (state code, progress)
    holding: list[int] = field(default_factory=list)  # robots with a part in the gripper
    changes: tuple[tuple[str, str, float], ...] = ()  # live parameter values (belt speeds)
    sink_count: float | None = None  # parts out so far, from the sinks' twin:partsIn
    assumptions: list[str] = field(default_factory=list)

    @classmethod
    def from_cache(cls, model: LineModel, cache: RuntimeCache) -> LiveStart:
        start = cls(taken_at=time.time())

        def read(path: str, attribute: str):
            """The signal's values if it exists and is good, else None (noted when it exists but is not good)."""
            try:
                row = cache.signal_row(path, attribute)
            except KeyError:
                return None
            with cache.lock:
                quality = quality_name(int(cache.status[row]))
                values = cache.signal_values(row).copy()
            if quality != "good":
                start.assumptions.append(f"{path}.{attribute} is {quality}: ignored")
                return None
            return values

        changes = []
        for e, element in enumerate(model.elements):
            path = element.path
            if element.kind == CONVEYOR:
                speed = read(path, "twin:speed")
                if speed is not None and math.isfinite(speed[0]) and speed[0] > 1e-3:
                    changes.append((path, "twin:speed", float(speed[0])))
                positions = read(path, "twin:partPositions")
                if positions is not None:
                    start.belts[e] = sorted((float(p) for p in positions if math.isfinite(p)), reverse=True)
            elif element.kind == STATION:
                has_part, state, progress = (read(path, a) for a in ("twin:hasPart", "twin:state", "twin:progress"))
                if has_part is not None and has_part[0] > 0.5:
                    code = int(state[0]) if state is not None and math.isfinite(state[0]) else 1
                    share = float(progress[0]) if progress is not None and math.isfinite(progress[0]) else 0.5
                    start.stations[e] = (code, min(max(share, 0.0), 1.0))
            elif element.kind == ROBOT:
                holding = read(path, "twin:holding")
                if holding is not None and holding[0] > 0.5:
                    start.holding.append(e)
            elif element.kind == SINK:
                count = read(path, "twin:partsIn")
                if count is not None and math.isfinite(count[0]):
                    start.sink_count = (start.sink_count or 0.0) + float(count[0])
        start.changes = tuple(changes)
        return start

    def apply(self, simulation: LineSimulation) -> None:
        """Put the parts and machine states into every variant of a freshly reset simulation at time 0.

        Random draws (a down station's repair) come from (seed, replication, element), so the variants
        of a sweep that share a replication share them too, and a playback repeats them.
        """
        model, parameters = simulation.model, simulation.parameters
        state = simulation.read_state()
        placed: list[tuple[int, int]] = []  # (element, part) of the first variant, for the playback log
        skipped: set[str] = set()
        for v, variant in enumerate(simulation.variants):
            part = 0

            def put(e: int, slot: int, entry: float, v: int = v) -> int:
                nonlocal part
                state["queue_entry"][v, e, slot] = entry
                state["queue_birth"][v, e, slot] = 0.0
                state["queue_part"][v, e, slot] = part
                if v == 0:
                    placed.append((e, part))
                part += 1
                return part - 1

            for e, positions in self.belts.items():
                speed = parameters[v, e, COLUMN["twin:speed"]]
                part_length = parameters[v, e, COLUMN["twin:partLength"]]
                transit = (parameters[v, e, COLUMN["twin:length"]] - part_length) / speed
                kept = positions[: model.capacity(e, parameters[v])]
                for slot, position in enumerate(kept):  # front (furthest along) first
                    # the PLC reports part centres; a part enters with its centre half a part in
                    put(e, slot, -(position - part_length / 2) / speed)
                if kept:
                    state["count"][v, e] = len(kept)
                    state["head"][v, e] = 0
                    state["last_entry"][v, e] = state["queue_entry"][v, e, len(kept) - 1]
                    state["front_ready"][v, e] = state["queue_entry"][v, e, 0] + transit
            for e, (code, progress) in self.stations.items():
                state["count"][v, e] = 1
                state["head"][v, e] = 0
                put(e, 0, 0.0)
                remaining = parameters[v, e, COLUMN["twin:cycleTime"]] * (1.0 - progress)
                if STATION_STATES.get(code) == "blocked" or progress >= 1.0:
                    state["phase"][v, e], state["front_ready"][v, e] = 3, 0.0  # done, waiting to leave
                elif STATION_STATES.get(code) == "down":
                    state["phase"][v, e], state["remaining"][v, e] = 2, remaining
                    draw = np.random.default_rng([simulation.seed, variant.replication, e])
                    state["event_time"][v, e] = draw.exponential(parameters[v, e, COLUMN["twin:mttr"]])
                else:
                    state["phase"][v, e], state["remaining"][v, e] = 1, remaining
                    state["work_start"][v, e] = 0.0
                    state["event_time"][v, e] = min(remaining, state["to_failure"][v, e])
            for e in self.holding:
                target = next((t for t in model.successors(e) if _room(model, parameters[v], state, v, t)), None)
                if target is None:  # signals read a moment apart may disagree: never overfill a place
                    skipped.add(model.elements[e].path)
                    continue
                state["count"][v, e] = 1
                state["head"][v, e] = 0
                put(e, 0, 0.0)
                state["phase"][v, e], state["robot_to"][v, e] = 2, target  # carrying
                state["reserved"][v, target] += 1
                state["event_time"][v, e] = 0.5 * parameters[v, e, COLUMN["twin:placeTime"]]
            state["wip"][v] = part
            state["next_part"][v] = part
        for path in sorted(skipped):
            note = f"{path} holds a part, but no place after it has room: that part is left out"
            if note not in self.assumptions:
                self.assumptions.append(note)
        simulation.write_state(state)
        simulation.log_initial_parts(placed)


def _room(model: LineModel, parameters: np.ndarray, state: dict, v: int, e: int) -> bool:
    """Whether element `e` of variant `v` can take one more part now (a robot placing into it)."""
    held = state["count"][v, e] + state["reserved"][v, e]
    kind = model.elements[e].kind
    if kind == STATION:
        return held == 0
    if kind == SINK:
        return True
    return held < model.capacity(e, parameters)
