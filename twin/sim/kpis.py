"""Live KPIs of the line, derived from its signals over a sliding window: throughput, WIP and OEE.

They become signals of the line's prim (`twin:kpi:throughputPerHour`, `twin:kpi:wip`, `twin:kpi:oee`,
`twin:kpi:availability`), so the stream, the REST API and the viewer's KPI bar treat them like any
other value. Quality follows the inputs: a KPI computed from stale or bad signals is marked stale.

- throughput: parts into the sinks (`twin:partsIn`) per hour over the window;
- WIP: parts out of the sources (`twin:partsOut`) minus parts into the sinks, now;
- availability: the share of the window the stations were not down (`twin:state` labelled "down");
- OEE: throughput times the constraint's ideal cycle (the longest `twin:cycleTime` of the line's
  stations), the usual line OEE: 1.0 means the slowest station never waits, stops or makes scrap.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from twin.core.cache import GOOD, UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache, quality_name
from twin.core.stage import TwinStage

WINDOW_S = 600.0  # ten minutes: long enough to smooth single cycles, short enough to show a change
SAMPLE_S = 1.0
KPIS = ("twin:kpi:throughputPerHour", "twin:kpi:wip", "twin:kpi:oee", "twin:kpi:availability")
UNITS = {"twin:kpi:throughputPerHour": "parts/h", "twin:kpi:wip": "parts", "twin:kpi:oee": "",
         "twin:kpi:availability": ""}
DOWN = 4  # the station state code for down (sample PLC and docs/bindings.md)
BAD = 0x80000000  # OPC-UA Bad: a KPI computed from bad inputs


class LiveKpis:
    def __init__(self, stage: TwinStage, cache: RuntimeCache, *, window_s: float = WINDOW_S):
        self.cache = cache
        self.window_s = window_s
        sinks = [str(p.GetPath()) for p in stage.prims_of_kind("sink")]
        sources = [str(p.GetPath()) for p in stage.prims_of_kind("source")]
        stations = [str(p.GetPath()) for p in stage.prims_of_kind("station")]
        self.enabled = bool(sinks)
        if not self.enabled:
            return
        self.line = sinks[0].rsplit("/", 1)[0] or "/"
        self.sink_rows = [cache.add_signal(path, "twin:partsIn", unit="parts", kind="int") for path in sinks]
        self.source_rows = [cache.add_signal(path, "twin:partsOut", unit="parts", kind="int") for path in sources]
        self.state_rows = [cache.add_signal(path, "twin:state", kind="int") for path in stations]
        cycles = [float(stage.attribute(path, "twin:cycleTime", 0.0) or 0.0) for path in stations]
        self.ideal_cycle = max(cycles) if cycles else 0.0
        self.rows = {name: cache.add_signal(self.line, name, unit=UNITS[name]) for name in KPIS}
        self.samples: deque[tuple[float, float, float]] = deque()  # (time, parts in, stations up share)
        self.last_sample = 0.0

    def update(self, now: float | None = None) -> None:
        """Sample the inputs once a second and publish the KPIs; cheap enough for every tick."""
        if not self.enabled:
            return
        now = time.time() if now is None else now
        if now - self.last_sample < SAMPLE_S:
            return
        self.last_sample = now
        cache = self.cache
        with cache.lock:
            inputs = self.sink_rows + self.source_rows + self.state_rows
            qualities = {quality_name(int(cache.status[row])) for row in inputs}
            parts_in = sum(float(cache.values[cache.signal_offset[row]]) for row in self.sink_rows)
            parts_out = sum(float(cache.values[cache.signal_offset[row]]) for row in self.source_rows)
            states = np.array([cache.values[cache.signal_offset[row]] for row in self.state_rows])
        if not math.isfinite(parts_in):
            return  # no count yet: nothing to say
        up = float(np.mean(states != DOWN)) if len(states) and np.all(np.isfinite(states)) else math.nan
        if self.samples and parts_in < self.samples[-1][1]:
            self.samples.clear()  # the counter was reset (a new shift, a PLC restart): start the window again
        self.samples.append((now, parts_in, up))
        while self.samples and now - self.samples[0][0] > self.window_s:
            self.samples.popleft()
        first_time, first_count, _ = self.samples[0]
        span = now - first_time
        throughput = (parts_in - first_count) / span * 3600.0 if span >= 10.0 and parts_in >= first_count else math.nan
        availability = float(np.nanmean([s[2] for s in self.samples])) if any(
            math.isfinite(s[2]) for s in self.samples) else math.nan
        oee = throughput * self.ideal_cycle / 3600.0 if self.ideal_cycle > 0 else math.nan
        wip = parts_out - parts_in if self.source_rows and math.isfinite(parts_out) else math.nan
        status = GOOD if qualities <= {"good"} else BAD if "bad" in qualities else UNCERTAIN_LAST_USABLE_VALUE
        for name, value in zip(KPIS, (throughput, wip, oee, availability), strict=True):
            cache.write_signal(self.rows[name], value, status=status, source_time=now)
