"""Live KPIs from the line's signals: throughput over the window, WIP, availability, OEE, quality."""

import math

import pytest

from twin.core.cache import UNCERTAIN_LAST_USABLE_VALUE
from twin.sim.runtime import Twin

LINE = "/Factory/Line"


def test_kpis_follow_the_counters_and_states(sample_layout):
    twin = Twin(sample_layout)
    cache, kpis = twin.cache, twin.kpis
    sink = cache.signal_row(f"{LINE}/Sink", "twin:partsIn")
    source = cache.signal_row(f"{LINE}/Source", "twin:partsOut")
    states = [cache.signal_row(f"{LINE}/{name}", "twin:state") for name in ("Machining", "Assembly", "Inspection")]
    kpi = {name: cache.signal_row(LINE, f"twin:kpi:{name}") for name in ("throughputPerHour", "wip", "oee",
                                                                          "availability")}
    kpis.update(now=1000.0)
    assert math.isnan(cache.signal_value(kpi["wip"]))  # no counts yet: nothing is claimed
    for second in range(0, 601):  # ten minutes: 50 parts out (300/h), one station down for the last 60 s
        cache.write_signal(sink, float(second // 12))
        cache.write_signal(source, float(second // 12 + 7))
        for index, row in enumerate(states):
            cache.write_signal(row, 4.0 if index == 0 and second >= 540 else 1.0)
        kpis.update(now=1000.0 + second)
    assert cache.signal_value(kpi["throughputPerHour"]) == pytest.approx(300.0, rel=0.01)
    assert cache.signal_value(kpi["wip"]) == 7.0
    assert cache.signal_value(kpi["availability"]) == pytest.approx(1 - (60 / 601) / 3, rel=0.02)
    assert cache.signal_value(kpi["oee"]) == pytest.approx(300.0 * 7.5 / 3600, rel=0.01)  # Machining, 7.5 s
    assert cache.signals[kpi["throughputPerHour"]].unit == "parts/h"
    cache.mark_status([sink], UNCERTAIN_LAST_USABLE_VALUE)  # the PLC went away
    kpis.update(now=1602.0)
    assert cache.status[kpi["throughputPerHour"]] == UNCERTAIN_LAST_USABLE_VALUE
