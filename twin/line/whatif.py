"""What-if studies: a parameter sweep times stochastic replications, run as one batch.

    result = run_whatif(model, sweep=[SweepParameter("/Factory/Line/Machining", "twin:cycleTime",
                                                     [6.0, 7.0, 8.0])], replications=30, hours=8)
    result.points[0]["kpis"]["throughput_per_hour"]  # {"mean": ..., "low": ..., "high": ...}

Every point of the sweep runs the same replications (the same random streams), so differences
between points come from the parameters, not from luck.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from twin.core.errors import TwinError

from .kpis import summarize, variant_kpis
from .model import COLUMN, LineModel
from .simulation import LineSimulation, Variant, variant_parameters
from .sweep import SweepParameter

MAX_VARIANTS = 200_000
MAX_HOURS = 24.0 * 31
SLICE_VARIANT_HOURS = 500.0


@dataclass
class WhatIfResult:
    sweep: list[SweepParameter]
    points: list[dict]  # {"values": {label: value}, "kpis": summary}
    hours: float
    warmup_hours: float
    replications: int
    seed: int
    device: str
    start: str  # "empty" or "live"
    live: dict | None  # with a live start: when, parts out so far, and what was assumed
    variants: list[Variant] = field(repr=False)
    kpis: dict[str, np.ndarray] = field(repr=False)  # per variant

    def variant_index(self, point: int, replication: int) -> int:
        return point * self.replications + replication

    def as_dict(self) -> dict:
        return {
            "sweep": [{"prim": p.prim, "attr": p.attribute, "values": list(p.values)} for p in self.sweep],
            "points": self.points, "hours": self.hours, "warmup_hours": self.warmup_hours,
            "replications": self.replications, "seed": self.seed, "device": self.device, "start": self.start,
            "live": self.live,
        }


def check_horizon(hours: float, warmup_hours: float, *, live: bool) -> None:
    if not math.isfinite(hours) or not 0 < hours <= MAX_HOURS:
        raise TwinError(f"hours must be in (0, {MAX_HOURS:g}], got {hours}")
    if not math.isfinite(warmup_hours) or not 0 <= warmup_hours < hours:
        raise TwinError(f"warmup_hours must be in [0, hours), got {warmup_hours}")
    if live and warmup_hours > 0:
        raise TwinError("a study from the live state has no warm-up: it starts from the plant as it is now")


def variant_count(sweep: Sequence[SweepParameter], replications: int) -> int:
    """How many variants a study has, counted without building any: the product of the value lists' lengths
    times the replications (a request's size is checked before anything is expanded)."""
    return math.prod(len(parameter.values) for parameter in sweep) * replications


def too_many_variants(sweep: Sequence[SweepParameter], replications: int, limit: int) -> str | None:
    """Why a study is over `limit` variants, or None."""
    variants = variant_count(sweep, replications)
    if variants <= limit:
        return None
    return (f"{variants // replications:,} points x {replications:,} replications is {variants:,} variants, "
            f"more than the {limit:,} variants")


def sweep_variants(model: LineModel, sweep: Sequence[SweepParameter], replications: int,
                   base: tuple = ()) -> tuple[list, list]:
    """(points as lists of (prim, attr, value), variants): the cartesian product, replications innermost.

    `base` changes (a live start's belt speeds) apply first; a swept parameter overrides them.
    """
    for parameter in sweep:
        if parameter.prim not in model.index:
            raise TwinError(f"sweep: {parameter.prim} is not an element of the line")
        if parameter.attribute not in COLUMN:
            raise TwinError(f"sweep: {parameter.attribute} is not a simulation parameter "
                            f"(one of {', '.join(COLUMN)})")
        if not parameter.values:
            raise TwinError(f"sweep: {parameter.label} has no values")
    if replications < 1:
        raise TwinError("replications must be at least 1")
    if problem := too_many_variants(sweep, replications, MAX_VARIANTS):
        raise TwinError(problem)
    points = [tuple((p.prim, p.attribute, value) for p, value in zip(sweep, combination, strict=True))
              for combination in itertools.product(*(p.values for p in sweep))]
    variants = [Variant(tuple(base) + point, r) for point in points for r in range(replications)]
    return points, variants


def run_whatif(model: LineModel, *, sweep: Sequence[SweepParameter] = (), replications: int = 30,
               hours: float = 8.0, warmup_hours: float = 0.0, seed: int = 1, device: str | None = None,
               start=None, progress: Callable[[float], None] | None = None, steps: int | None = None,
               executor: str = "local", ray_address: str | None = None) -> WhatIfResult:
    """Simulate every point of `sweep` `replications` times for `hours`, from an empty line or `start`.

    `start` is a `LiveStart` (twin.line.live): the plant as its signals show it now. `progress` gets
    the completed fraction after each of `steps` slices of simulated time; by default a slice is about
    500 variant-hours (well under a second on a 2-core CPU), so progress moves and a caller can stop.
    `executor="ray"` runs batches of points as tasks on the Ray cluster at `ray_address`
    (twin.line.distributed), with the same results; progress then moves as batches finish.
    """
    check_horizon(hours, warmup_hours, live=start is not None)
    if executor not in ("local", "ray"):
        raise TwinError(f"executor must be 'local' or 'ray', got {executor!r}")
    sweep = list(sweep)
    points, variants = sweep_variants(model, sweep, replications, start.changes if start else ())
    horizon, warmup = hours * 3600.0, warmup_hours * 3600.0
    if steps is None:
        steps = int(min(10_000, max(16, math.ceil(len(variants) * hours / SLICE_VARIANT_HOURS))))
    if executor == "ray":
        from .distributed import simulate_on_ray

        variant_parameters(model, variants[::replications])  # bad values are found here, not on a worker
        run = simulate_on_ray(model, variants, replications=replications, horizon=horizon, warmup=warmup,
                              steps=steps, seed=seed, device=device, start=start, address=ray_address,
                              progress=progress)
        kpis, used_device = run.kpis, run.device
        if start is not None:
            start.assumptions.extend(note for note in run.assumptions if note not in start.assumptions)
    else:
        simulation = LineSimulation(model, variants, seed=seed, device=device)
        if start is not None:
            start.apply(simulation)
        for step in range(1, steps + 1):
            simulation.run(horizon * step / steps, warmup=warmup)
            if progress is not None:
                progress(step / steps)
        kpis = variant_kpis(model, simulation.parameters, simulation.totals_numpy(), horizon - warmup)
        used_device = simulation.device
    summaries = []
    for index, point in enumerate(points):
        members = np.arange(index * replications, (index + 1) * replications)
        summaries.append({"values": {f"{prim}.{attr}": value for prim, attr, value in point},
                          "kpis": summarize(model, kpis, members)})
    live = None
    if start is not None:
        live = {"taken_at": start.taken_at, "sink_count": start.sink_count, "assumptions": start.assumptions}
        if start.sink_count is not None:  # the shift's output so far plus what the rest of it adds
            for summary in summaries:
                parts = summary["kpis"]["parts_out"]
                summary["kpis"]["output_at_end"] = {key: None if value is None else value + start.sink_count
                                                    for key, value in parts.items()}
    return WhatIfResult(sweep, summaries, hours, warmup_hours, replications, seed, used_device,
                        "empty" if start is None else "live", live, variants, kpis)
