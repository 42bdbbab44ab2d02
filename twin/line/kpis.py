"""KPIs of simulated variants, and their confidence intervals over replications.

Per variant: throughput (good parts into the sinks per hour), work in progress (time average of
parts released and not yet out or scrapped), lead time (mean release-to-sink time), and for every
station and robot the share of time in each state, utilisation (working share), and OEE as
availability x performance x quality. The bottleneck is the station or robot with the largest
active share (working, down or in setup): the one whose stoppages the line cannot absorb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .model import COLUMN, ROBOT, STATION, LineModel
from .simulation import STATES

WORKING, DOWN, SETUP = STATES.index("working"), STATES.index("down"), STATES.index("setup")


@dataclass(frozen=True)
class Interval:
    """Mean over replications with the two-sided 95 % Student-t interval (None with one replication)."""

    mean: float
    low: float | None
    high: float | None

    def as_dict(self) -> dict:
        return {"mean": _finite(self.mean), "low": _finite(self.low), "high": _finite(self.high)}

    def contains(self, value: float) -> bool:
        return self.low is not None and self.low <= value <= self.high


def interval(samples: np.ndarray, confidence: float = 0.95) -> Interval:
    samples = np.asarray(samples, np.float64)
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return Interval(math.nan, None, None)
    mean = float(samples.mean())
    if len(samples) < 2:
        return Interval(mean, None, None)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(samples) - 1) * samples.std(ddof=1) / math.sqrt(len(samples)))
    return Interval(mean, mean - half, mean + half)


def variant_kpis(model: LineModel, parameters: np.ndarray, totals: dict[str, np.ndarray],
                 window: float) -> dict[str, np.ndarray]:
    """Per-variant KPI arrays; station arrays are (variants, elements) and NaN where not a station/robot."""
    hours = window / 3600.0
    out = totals["out"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        kpis: dict[str, np.ndarray] = {
            "throughput_per_hour": out / hours,
            "parts_out": out,
            "wip": totals["wip_time"] / window,
            "lead_time_s": np.where(out > 0, totals["lead_time"] / out, np.nan),
        }
        shares = totals["state_time"] / window  # (variants, elements, states)
        machines = np.array([el.kind in (STATION, ROBOT) for el in model.elements])
        shares[:, ~machines] = np.nan
        for index, state in enumerate(STATES):
            kpis[f"{state}_share"] = shares[..., index]
        kpis["utilisation"] = shares[..., WORKING]
        ideal = np.where([el.kind == ROBOT for el in model.elements],
                         parameters[..., COLUMN["twin:pickTime"]] + parameters[..., COLUMN["twin:placeTime"]]
                         + parameters[..., COLUMN["twin:returnTime"]], parameters[..., COLUMN["twin:cycleTime"]])
        finished = totals["finished"].astype(np.float64)
        good = finished - totals["scrapped"]
        run_time = window - totals["state_time"][..., DOWN] - totals["state_time"][..., SETUP]
        availability = run_time / window
        performance = np.where(run_time > 0, ideal * finished / run_time, 0.0)
        quality = np.where(finished > 0, good / finished, 1.0)
        for name, value in (("availability", availability), ("performance", performance), ("quality", quality),
                            ("oee", availability * performance * quality)):
            kpis[name] = np.where(machines, value, np.nan)
        active = np.where(machines, shares[..., WORKING] + shares[..., DOWN] + shares[..., SETUP], -1.0)
        kpis["bottleneck"] = np.argmax(active, axis=1)
        rows = np.arange(len(out))
        bottleneck = kpis["bottleneck"]
        scrapped_all = totals["scrapped"].sum(axis=1)
        line_quality = np.where(out + scrapped_all > 0, out / (out + scrapped_all), 1.0)
        line_oee = out * ideal[rows, bottleneck] / window
        kpis["line_availability"] = availability[rows, bottleneck]
        kpis["line_quality"] = line_quality
        kpis["line_oee"] = line_oee
        kpis["line_performance"] = line_oee / np.maximum(kpis["line_availability"] * line_quality, 1e-12)
    return kpis


LINE_KPIS = ("throughput_per_hour", "parts_out", "wip", "lead_time_s", "line_oee", "line_availability",
             "line_performance", "line_quality")
MACHINE_KPIS = ("utilisation", *(f"{state}_share" for state in STATES), "availability", "performance",
                "quality", "oee")


def summarize(model: LineModel, kpis: dict[str, np.ndarray], members: np.ndarray) -> dict:
    """KPIs with confidence intervals over the replications `members` (variant indices) of one point."""
    summary = {name: interval(kpis[name][members]).as_dict() for name in LINE_KPIS}
    machines = {}
    for e, element in enumerate(model.elements):
        if element.kind in (STATION, ROBOT):
            machines[element.path] = {name: interval(kpis[name][members, e]).as_dict() for name in MACHINE_KPIS}
    summary["stations"] = machines
    if machines:
        votes = np.bincount(kpis["bottleneck"][members], minlength=len(model))
        winner = int(np.argmax(votes))
        summary["bottleneck"] = {"prim": model.elements[winner].path, "share_of_replications":
                                 float(votes[winner] / max(1, len(members)))}
    else:  # a line of belts and buffers only: no machine to blame
        summary["bottleneck"] = {"prim": None, "share_of_replications": 0.0}
    summary["replications"] = int(len(members))
    return summary


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
