"""The rules docs/line-model.md states, each checked on a small line built for it.

Merges serve the part that was ready first (element order breaks ties), against analytic results and a
tiny event-by-event reference written here; a changeover starts when the part after `setupEvery` finished
parts enters; a belt holds at most `floor((length - partLength) / pitch) + 1` parts.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_line_sim import author_line
from twin.line import kernels
from twin.line.model import read_line
from twin.line.simulation import LineSimulation, Variant
from twin.line.whatif import run_whatif
from twin.scenes.layout import open_layout

CONSTANT = {"cycleDistribution": "constant"}


def _run(path, hours: float, replications: int = 1, record: int = -1) -> LineSimulation:
    simulation = LineSimulation(read_line(open_layout(path)), [Variant((), r) for r in range(replications)],
                                seed=5, record_variant=record)
    simulation.run(hours * 3600.0)
    return simulation


def _merge_order(simulation: LineSimulation, feeders: list[int], merge: int) -> list[tuple[float, int]]:
    """(ready time, feeder) of every part that entered `merge`, in the order it entered.

    A part is ready when its feeder finished it: the feeder's `blocked` record after the part entered it, or,
    when no such record exists, the moment it left (it left as soon as it was finished)."""
    log = simulation.log_numpy()
    blocked_since: dict[int, float] = {}
    feeder_of: dict[int, int] = {}
    order = []
    for time, element, what, value in zip(log["time"], log["element"], log["what"], log["value"], strict=True):
        if what == kernels.LOG_ENTER and element in feeders:
            feeder_of[int(value)] = int(element)
            blocked_since.pop(int(element), None)
        elif what == kernels.LOG_STATE and element in feeders and value == kernels.S_BLOCKED:
            blocked_since[int(element)] = float(time)
        elif what == kernels.LOG_ENTER and element == merge:
            feeder = feeder_of[int(value)]
            order.append((blocked_since.pop(feeder, float(time)), feeder))
    return order


@pytest.mark.parametrize("carrier", ["direct", "robot"])
def test_two_parallel_stations_share_one_slower_station(tmp_path, carrier):
    """Two 10 s stations feed one 15 s station (directly, or through a robot that pulls): the line runs at the
    slow cell's rate and the two feeders take turns, the part that waited longer going first. The robot picks
    only when the slow station is empty, so its cell cycles in 15 s + pick + place = 17 s."""
    cell_cycle = 17.0 if carrier == "robot" else 15.0
    feed = ["Robot"] if carrier == "robot" else ["Slow"]
    robot = [("Robot", "robot", {"pickTime": 1.0, "placeTime": 1.0, "returnTime": 1.0}, ["Slow"])]
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 1.0, "arrivalDistribution": "constant"}, ["Belt"]),
        ("Belt", "conveyor", {"length": 2.0, "speed": 1.0, "capacity": 6}, ["Left", "Right"]),
        ("Left", "station", {"cycleTime": 10.0, **CONSTANT}, feed),
        ("Right", "station", {"cycleTime": 10.0, **CONSTANT}, feed),
        *(robot if carrier == "robot" else []),
        ("Slow", "station", {"cycleTime": 15.0, **CONSTANT}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    model = read_line(open_layout(path))
    kpis = run_whatif(model, replications=1, hours=4.0, warmup_hours=0.5).points[0]["kpis"]
    assert kpis["throughput_per_hour"]["mean"] == pytest.approx(3600.0 / cell_cycle, rel=2e-3)
    simulation = _run(path, hours=4.0, record=0)
    finished = simulation.totals_numpy()["finished"][0]
    left, right = finished[model.index["/Factory/Left"]], finished[model.index["/Factory/Right"]]
    parts = 4 * 3600.0 / cell_cycle
    assert abs(left - right) <= 1 and left + right >= parts - 5  # shared evenly
    order = _merge_order(simulation, [model.index["/Factory/Left"], model.index["/Factory/Right"]],
                         model.index["/Factory/Robot" if carrier == "robot" else "/Factory/Slow"])
    ready = [time for time, _ in order]
    assert len(order) >= parts - 5 and ready == sorted(ready)


def three_feeder_line(path, cycles: tuple[float, float, float], merge_cycle: float, spread: float = 0.0,
                      interarrival: float = 0.5):
    """Three sources, each feeding its own station; the three stations merge into one station."""
    elements = []
    for i in range(1, len(cycles) + 1):
        elements.append((f"Source{i}", "source", {"interarrival": interarrival, "arrivalDistribution": "constant"},
                         [f"Feed{i}"]))
    for i, cycle in enumerate(cycles, start=1):
        distribution = {"cycleDistribution": "normal", "cycleSpread": spread} if spread else CONSTANT
        elements.append((f"Feed{i}", "station", {"cycleTime": cycle, **distribution}, ["Merge"]))
    elements += [("Merge", "station", {"cycleTime": merge_cycle, **CONSTANT}, ["Sink"]), ("Sink", "sink", {}, [])]
    return author_line(path, elements)


def reference_merge(cycles: tuple[float, ...], merge_cycle: float, interarrival: float, horizon: float) -> list[int]:
    """Parts each feeder hands to the merge station before `horizon`, event by event, written independently of
    the kernels: a feeder gets a part `interarrival` after its last one left and finishes it `cycle` later; the
    merge station, whenever it is free, takes the part that was ready first (the lower feeder on a tie)."""
    ready = [interarrival + cycle for cycle in cycles]
    free_at, handed = 0.0, [0] * len(cycles)
    while True:
        feeder = min(range(len(cycles)), key=lambda i: (ready[i], i))
        start = max(free_at, ready[feeder])
        if start > horizon:
            return handed
        handed[feeder] += 1
        ready[feeder] = start + interarrival + cycles[feeder]
        free_at = start + merge_cycle


@pytest.mark.parametrize("cycles, merge_cycle", [((6.0, 6.0, 6.0), 4.0), ((5.0, 6.5, 8.0), 3.0)])
def test_three_feeders_match_an_event_by_event_reference(tmp_path, cycles, merge_cycle):
    path = three_feeder_line(tmp_path / "line.usda", cycles, merge_cycle)
    model = read_line(open_layout(path))
    hours = 2.0
    simulation = _run(path, hours, record=0)
    finished = simulation.totals_numpy()["finished"][0]
    feeders = [model.index[f"/Factory/Feed{i}"] for i in (1, 2, 3)]
    ours = [int(finished[feeder]) for feeder in feeders]
    expected = reference_merge(cycles, merge_cycle, 0.5, hours * 3600.0)
    # A feeder counts a part when it finishes it, the reference when the merge takes it: at most one apart.
    assert np.abs(np.array(ours) - np.array(expected)).max() <= 1, (ours, expected)
    assert min(expected) > 0.25 * sum(expected)  # every feeder is served, none starved
    if len(set(cycles)) == 1:
        assert max(ours) - min(ours) <= 1
        # All three finish their first part at 6.5 s: the tie goes in element order, then first ready first.
        order = _merge_order(simulation, feeders, model.index["/Factory/Merge"])
        assert [feeder for _, feeder in order[:6]] == feeders * 2


def test_three_random_feeders_are_served_first_ready_first_out(tmp_path):
    """Random cycles, a saturated merge: throughput is the merge's rate, each feeder gets a third of it, and the
    merge station takes parts in the order they became ready."""
    path = three_feeder_line(tmp_path / "line.usda", (6.0, 6.0, 6.0), 4.0, spread=0.2)
    model = read_line(open_layout(path))
    simulation = _run(path, hours=2.0, replications=8, record=3)
    totals = simulation.totals_numpy()
    assert totals["out"] == pytest.approx(np.full(8, 7200 / 4.0), abs=2)
    feeders = [model.index[f"/Factory/Feed{i}"] for i in (1, 2, 3)]
    shares = totals["finished"][:, feeders] / totals["finished"][:, feeders].sum(axis=1, keepdims=True)
    assert shares == pytest.approx(np.full((8, 3), 1 / 3), abs=0.02)
    ready = [time for time, _ in _merge_order(simulation, feeders, model.index["/Factory/Merge"])]
    assert len(ready) >= 1795 and ready == sorted(ready)


def test_a_changeover_starts_when_the_next_part_enters(tmp_path):
    """setupEvery 1, setupTime 5, cycle 5, a part every 20 s: the changeover runs while the part waits in the
    station (lead time 10 s), not in the idle time after the previous part left (which would give 5 s)."""
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 20.0, "arrivalDistribution": "constant"}, ["Press"]),
        ("Press", "station", {"cycleTime": 5.0, **CONSTANT, "setupTime": 5.0, "setupEvery": 1.0}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    kpis = run_whatif(read_line(open_layout(path)), replications=1, hours=2.0, warmup_hours=0.5).points[0]["kpis"]
    assert kpis["lead_time_s"]["mean"] == pytest.approx(10.0, abs=1e-6)
    press = kpis["stations"]["/Factory/Press"]
    assert press["setup_share"]["mean"] == pytest.approx(0.25, abs=2e-3)
    assert press["starved_share"]["mean"] == pytest.approx(0.5, abs=2e-3)


def test_the_line_starts_set_up_and_scrapped_parts_count_towards_a_changeover(tmp_path):
    """setupEvery 2 on a press that scraps half its parts: no changeover before the first two parts, then one
    before every other part, because scrapped parts count as finished."""
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 20.0, "arrivalDistribution": "constant"}, ["Press"]),
        ("Press", "station", {"cycleTime": 5.0, **CONSTANT, "setupTime": 4.0, "setupEvery": 2.0,
                              "scrapRate": 0.5}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    simulation = _run(path, hours=1.0)
    press = read_line(open_layout(path)).index["/Factory/Press"]
    setup_time = simulation.totals_numpy()["state_time"][0, press, kernels.S_SETUP]
    # 180 parts arrive at 20, 40, ... 3600 s; the first two need no changeover, then one before every other part.
    assert setup_time == pytest.approx(4.0 * 89, abs=1e-6)


@pytest.mark.parametrize("length, part_length, pitch, capacity, holds", [
    (2.0, 0.0, 0.5, 100, 5),  # centres 0.5 m apart over 2 m of travel: both ends and three between
    (2.0, 0.5, 0.5, 100, 4),  # a part travels length - partLength: 1.5 m, four centres
    (2.0, 0.0, 0.3, 100, 7),  # floor(2 / 0.3) + 1
    (2.0, 0.0, 0.5, 3, 3),  # twin:capacity caps it
])
def test_a_belt_holds_what_fits_at_its_pitch(tmp_path, length, part_length, pitch, capacity, holds):
    """A blocked belt fills to floor((length - partLength) / pitch) + 1 parts, or twin:capacity if fewer."""
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 0.1, "arrivalDistribution": "constant"}, ["Belt"]),
        ("Belt", "conveyor", {"length": length, "partLength": part_length, "speed": 1.0, "partPitch": pitch,
                              "capacity": capacity}, ["Press"]),
        ("Press", "station", {"cycleTime": 10_000.0, **CONSTANT}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    model = read_line(open_layout(path))
    simulation = _run(path, hours=0.1)
    belt = model.index["/Factory/Belt"]
    assert model.capacity(belt) == holds
    assert simulation.read_state()["count"][0, belt] == holds
    assert simulation.totals_numpy()["released"][0] == holds + 1  # and one part in the press
