"""The line simulation: exact on a deterministic line, in agreement with a SimPy reference on the
sample line, deterministic per seed, and clear about bad models."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from pxr import Sdf, Usd

from tests.line_reference import simulate_sample_line
from twin.connectors.bindings import load_bindings
from twin.core.cache import RuntimeCache
from twin.core.errors import LayoutError
from twin.line.kpis import interval
from twin.line.live import LiveStart
from twin.line.model import read_line
from twin.line.simulation import LineSimulation, Variant
from twin.line.whatif import SweepParameter, run_whatif
from twin.sample_factory.line_model import LineModel as PlantModel
from twin.scenes.layout import new_layout, open_layout

SAMPLE_BINDINGS = Path(__file__).parents[1] / "sample_factory" / "bindings.yaml"


def author_line(path: Path, elements: list[tuple[str, str, dict, list[str]]]) -> Path:
    """A layout holding only a line: (name, kind, twin: attributes, names of the next elements)."""
    stage = new_layout(path)
    for name, kind, attributes, _ in elements:
        prim = stage.DefinePrim(f"/Factory/{name}", "Xform")
        prim.CreateAttribute("twin:kind", Sdf.ValueTypeNames.String).Set(kind)
        for attribute, value in attributes.items():
            type_name = Sdf.ValueTypeNames.String if isinstance(value, str) else Sdf.ValueTypeNames.Double
            prim.CreateAttribute(f"twin:{attribute}", type_name).Set(value)
    for name, _, _, targets in elements:
        if targets:
            stage.GetPrimAtPath(f"/Factory/{name}").CreateRelationship("twin:next").SetTargets(
                [f"/Factory/{target}" for target in targets])
    stage.GetRootLayer().Save()
    return path


def deterministic_line(path: Path) -> Path:
    constant = {"cycleDistribution": "constant"}
    return author_line(path, [
        ("Source", "source", {"interarrival": 1.0, "arrivalDistribution": "constant"}, ["Belt"]),
        ("Belt", "conveyor", {"length": 3.0, "speed": 0.5, "capacity": 8}, ["Cut"]),
        ("Cut", "station", {"cycleTime": 4.0, **constant}, ["Buffer"]),
        ("Buffer", "buffer", {"capacity": 3}, ["Weld"]),
        ("Weld", "station", {"cycleTime": 6.0, **constant}, ["Belt2"]),
        ("Belt2", "conveyor", {"length": 2.0, "speed": 0.4, "capacity": 5}, ["Pack"]),
        ("Pack", "station", {"cycleTime": 5.0, **constant}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])


def test_deterministic_line_runs_at_its_slowest_cycle(tmp_path):
    model = read_line(open_layout(deterministic_line(tmp_path / "line.usda")))
    result = run_whatif(model, replications=1, hours=8.0, warmup_hours=0.5)
    throughput = result.points[0]["kpis"]["throughput_per_hour"]["mean"]
    assert throughput == pytest.approx(3600.0 / 6.0, rel=1e-3)
    kpis = result.points[0]["kpis"]
    assert kpis["bottleneck"]["prim"] == "/Factory/Weld"
    assert kpis["stations"]["/Factory/Weld"]["utilisation"]["mean"] == pytest.approx(1.0, abs=1e-3)
    assert kpis["stations"]["/Factory/Cut"]["blocked_share"]["mean"] == pytest.approx(2 / 6, abs=2e-3)
    assert kpis["stations"]["/Factory/Pack"]["utilisation"]["mean"] == pytest.approx(5 / 6, abs=2e-3)


def test_warp_simulation_agrees_with_simpy(sample_layout):
    """30 replications of 8 h with failures and random cycles: every KPI's 95 % intervals overlap."""
    model = read_line(open_layout(sample_layout))
    replications, hours = 30, 8.0
    result = run_whatif(model, replications=replications, hours=hours, seed=7)
    # SimPy is pure Python on one core: the reference runs on both of CI's cores, each run as it would alone
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        reference = list(pool.map(partial(simulate_sample_line, model, hours), range(replications)))
    compared = {"throughput_per_hour": result.kpis["throughput_per_hour"], "wip": result.kpis["wip"]}
    for e, element in enumerate(model.elements):
        if element.kind_name in ("station", "robot"):
            compared[element.path] = result.kpis["utilisation"][:, e]
    for name, warp_samples in compared.items():
        ours, theirs = interval(warp_samples), interval([run[name] for run in reference])
        assert ours.low <= theirs.high and theirs.low <= ours.high, (name, ours, theirs)
        # Also not trivially wide: the intervals are narrow next to the value.
        assert (ours.high - ours.low) < 0.1 * abs(ours.mean), (name, ours)
    throughput = result.kpis["throughput_per_hour"]
    assert throughput.std() > 0  # replications really differ


def test_same_seed_same_result_other_seed_differs(sample_layout):
    model = read_line(open_layout(sample_layout))
    runs = [LineSimulation(model, [Variant((), r) for r in range(4)], seed=seed) for seed in (3, 3, 4)]
    for simulation in runs:
        simulation.run(3600.0)
    a, b, c = (simulation.totals_numpy() for simulation in runs)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["state_time"], c["state_time"])


def test_running_in_slices_equals_one_run(sample_layout):
    model = read_line(open_layout(sample_layout))
    whole, sliced = (LineSimulation(model, [Variant((), 0)], seed=2) for _ in range(2))
    whole.run(7200.0)
    for until in (100.0, 2000.0, 2000.0, 7200.0):
        sliced.run(until)
    for name, values in whole.totals_numpy().items():
        np.testing.assert_allclose(values, sliced.totals_numpy()[name], rtol=1e-12)


def test_sweep_shares_random_streams_and_moves_the_bottleneck(sample_layout):
    model = read_line(open_layout(sample_layout))
    robot = "/Factory/Line/Robot1"
    result = run_whatif(model, sweep=[SweepParameter(robot, "twin:placeTime", [2.0, 4.6, 8.0])],
                        replications=8, hours=4.0)
    means = [point["kpis"]["throughput_per_hour"]["mean"] for point in result.points]
    assert means[0] > means[1] > means[2]  # a slower robot move slows the cell it feeds
    assert result.points[2]["kpis"]["bottleneck"]["prim"] == robot
    assert result.points[1]["values"] == {f"{robot}.twin:placeTime": 4.6}


def _edit(path: Path, edit) -> Path:
    stage = Usd.Stage.Open(str(path))
    edit(stage)
    stage.GetRootLayer().Save()
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.GetPrimAtPath("/Factory/Weld").GetRelationship("twin:next").ClearTargets(True),
     "/Factory/Weld: this station has no way out"),
    (lambda s: s.GetPrimAtPath("/Factory/Cut").GetAttribute("twin:cycleTime").Set(-2.0),
     "/Factory/Cut: twin:cycleTime = -2 must be > 0"),
    (lambda s: s.GetPrimAtPath("/Factory/Belt").GetAttribute("twin:speed").Set(0.0),
     "/Factory/Belt: twin:speed = 0 must be > 0"),
    (lambda s: s.GetPrimAtPath("/Factory/Pack").GetRelationship("twin:next").SetTargets(
        ["/Factory/Sink", "/Factory/Belt2"]),
     "routing loops through /Factory/Belt2, /Factory/Pack with no buffer"),
    (lambda s: s.GetPrimAtPath("/Factory/Cut").GetAttribute("twin:kind").Set("oven"),
     "/Factory/Cut: twin:kind = 'oven' cannot be part of a line"),
    (lambda s: s.GetPrimAtPath("/Factory/Cut").GetAttribute("twin:cycleTime").Clear(),
     "/Factory/Cut: twin:cycleTime is required for a station"),
    (lambda s: s.GetPrimAtPath("/Factory/Belt").GetRelationship("twin:next").SetTargets(["/Factory/Nowhere"]),
     "/Factory/Belt: twin:next targets /Factory/Nowhere, which does not exist"),
])
def test_bad_models_name_the_prim(tmp_path, edit, message):
    path = _edit(deterministic_line(tmp_path / "line.usda"), edit)
    with pytest.raises(LayoutError) as error:
        read_line(open_layout(path))
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_loop_through_a_buffer_is_allowed(tmp_path):
    path = _edit(deterministic_line(tmp_path / "line.usda"),
                 lambda s: s.GetPrimAtPath("/Factory/Weld").GetRelationship("twin:next").SetTargets(
                     ["/Factory/Belt2", "/Factory/Buffer"]))
    assert len(read_line(open_layout(path))) == 8


def test_sweep_values_are_checked(tmp_path):
    model = read_line(open_layout(deterministic_line(tmp_path / "line.usda")))
    with pytest.raises(LayoutError, match="/Factory/Cut: twin:scrapRate must be below 1"):
        run_whatif(model, sweep=[SweepParameter("/Factory/Cut", "twin:scrapRate", [0.5, 1.0])], replications=2)


def _plant_into_cache(plant, bindings) -> RuntimeCache:
    """What the connector would hold after the PLC's latest publish: each bound value, quality good."""
    cache = RuntimeCache()
    values = plant.values()
    for binding in bindings.bindings:
        name = binding.node.rpartition("s=")[2]
        row = cache.add_signal(binding.prim, binding.attr, width=binding.width, kind=binding.kind
                               if binding.kind in ("float", "int", "bool", "text") else "float")
        value = values[name]
        cache.write_signal(row, value if isinstance(value, str) else np.asarray(value, np.float64))
    return cache


def test_fork_from_live_predicts_the_plants_next_hour(sample_layout):
    """Take the sample PLC's plant mid-shift, fork the simulation from its signals, and check that the
    plant's real output over the next hour lies inside the spread the forked replications predict."""
    model = read_line(open_layout(sample_layout))
    bindings = load_bindings(SAMPLE_BINDINGS)
    hits = 0
    for seed in range(4):
        plant = PlantModel(seed=seed, dt=0.05)
        plant.warm_up(1800.0)
        plant.conveyors["Conveyor1"].set_speed(0.5)  # an operator sped a belt up: the fork must use it
        for _ in range(200):
            plant.step()
        start = LiveStart.from_cache(model, _plant_into_cache(plant, bindings))
        in_line = sum(len(c.parts) for c in plant.conveyors.values()) + sum(
            s.has_part for s in plant.stations.values()) + sum(r.holding for r in plant.robots.values())
        simulation = LineSimulation(model, [Variant(start.changes, r) for r in range(40)], seed=seed)
        start.apply(simulation)
        assert simulation.read_state()["wip"][0] == in_line
        assert ("/Factory/Line/Conveyor1", "twin:speed", pytest.approx(0.5, abs=0.01)) in start.changes
        result = run_whatif(model, replications=40, hours=1.0, start=start, seed=seed)
        predicted = result.kpis["parts_out"]
        before = plant.parts_in
        for _ in range(int(3600 / plant.dt)):
            plant.step()
        actual = plant.parts_in - before
        low, high = np.percentile(predicted, [2.5, 97.5])
        hits += low - 3 <= actual <= high + 3
        output = result.points[0]["kpis"]["output_at_end"]["mean"]
        assert output == pytest.approx(start.sink_count + predicted.mean())
    assert hits >= 3  # a 95 % prediction band may miss once in four


def test_fork_from_live_starts_with_the_parts_in_the_line(sample_layout):
    """Parts already on belts come out sooner than from an empty line; bad signals are ignored and said so."""
    model = read_line(open_layout(sample_layout))
    plant = PlantModel(seed=3, dt=0.05)
    plant.warm_up(1800.0)
    cache = _plant_into_cache(plant, load_bindings(SAMPLE_BINDINGS))
    cache.mark_status([cache.signal_row("/Factory/Line/Conveyor3", "twin:partPositions")], 0x80000000)
    start = LiveStart.from_cache(model, cache)
    assert any("Conveyor3.twin:partPositions is bad" in note for note in start.assumptions)
    forked = run_whatif(model, replications=10, hours=0.1, start=start)
    empty = run_whatif(model, replications=10, hours=0.1)
    assert forked.points[0]["kpis"]["parts_out"]["mean"] > empty.points[0]["kpis"]["parts_out"]["mean"] + 5
    assert forked.live["sink_count"] == plant.parts_in


@pytest.mark.parametrize("routing", ["first_free", "round_robin"])
def test_branch_to_parallel_stations_and_merge(tmp_path, routing):
    """Two 10 s machines in parallel behind one belt, merging into a buffer: 720 parts/h, shared as the rule says."""
    constant = {"cycleDistribution": "constant", "cycleTime": 10.0}
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 1.0, "arrivalDistribution": "constant"}, ["Belt"]),
        ("Belt", "conveyor", {"length": 2.0, "speed": 1.0, "capacity": 6, "routing": routing}, ["Left", "Right"]),
        ("Left", "station", constant, ["Merge"]),
        ("Right", "station", constant, ["Merge"]),
        ("Merge", "buffer", {"capacity": 4}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    model = read_line(open_layout(path))
    result = run_whatif(model, replications=1, hours=4.0, warmup_hours=0.5)
    kpis = result.points[0]["kpis"]
    assert kpis["throughput_per_hour"]["mean"] == pytest.approx(720.0, rel=2e-3)
    left, right = (kpis["stations"][f"/Factory/{side}"]["utilisation"]["mean"] for side in ("Left", "Right"))
    assert left == pytest.approx(1.0, abs=2e-3) and right == pytest.approx(1.0, abs=2e-3)  # both always busy


def test_round_robin_shares_and_first_free_prefers(tmp_path):
    """With spare capacity, first_free loads the first station; round_robin alternates."""
    shares = {}
    for routing in ("first_free", "round_robin"):
        constant = {"cycleDistribution": "constant", "cycleTime": 4.0}
        path = author_line(tmp_path / f"{routing}.usda", [
            ("Source", "source", {"interarrival": 10.0, "arrivalDistribution": "constant", "routing": routing},
             ["Left", "Right"]),
            ("Left", "station", constant, ["Sink"]),
            ("Right", "station", constant, ["Sink"]),
            ("Sink", "sink", {}, []),
        ])
        kpis = run_whatif(read_line(open_layout(path)), replications=1, hours=2.0).points[0]["kpis"]
        shares[routing] = [kpis["stations"][f"/Factory/{s}"]["utilisation"]["mean"] for s in ("Left", "Right")]
    assert shares["first_free"][0] == pytest.approx(0.4, abs=0.01) and shares["first_free"][1] == 0.0
    assert shares["round_robin"] == pytest.approx([0.2, 0.2], abs=0.01)


def test_scrap_and_setup(tmp_path):
    """Scrap lowers good output and quality; a 5 s setup every 10 parts of 5 s stretches the cycle to 5.5 s."""
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 1.0, "arrivalDistribution": "constant"}, ["Press"]),
        ("Press", "station", {"cycleTime": 5.0, "cycleDistribution": "constant", "setupTime": 5.0,
                              "setupEvery": 10.0}, ["Check"]),
        ("Check", "station", {"cycleTime": 1.0, "cycleDistribution": "constant", "scrapRate": 0.1}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    result = run_whatif(read_line(open_layout(path)), replications=20, hours=4.0, warmup_hours=0.5)
    kpis = result.points[0]["kpis"]
    press = kpis["stations"]["/Factory/Press"]
    assert press["setup_share"]["mean"] == pytest.approx(0.5 / 5.5, abs=2e-3)
    assert press["availability"]["mean"] == pytest.approx(5.0 / 5.5, abs=2e-3)
    check = kpis["stations"]["/Factory/Check"]
    assert check["quality"]["low"] <= 0.9 <= check["quality"]["high"]
    assert kpis["throughput_per_hour"]["low"] <= 3600 / 5.5 * 0.9 <= kpis["throughput_per_hour"]["high"]
    assert kpis["line_quality"]["mean"] == pytest.approx(0.9, abs=0.01)


def test_a_robot_picking_from_a_source_releases_parts(tmp_path):
    """A robot unloading a source directly: parts count as released, WIP never goes negative."""
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 20.0, "arrivalDistribution": "constant"}, ["Robot"]),
        ("Robot", "robot", {"pickTime": 2.0, "placeTime": 3.0, "returnTime": 1.0}, ["Press"]),
        ("Press", "station", {"cycleTime": 5.0, "cycleDistribution": "constant"}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    model = read_line(open_layout(path))
    simulation = LineSimulation(model, [Variant((), 0)])
    simulation.run(3600.0)
    totals = simulation.totals_numpy()
    # The next arrival is timed from when the robot takes the part (2 s after it arrived): every 22 s.
    assert totals["released"][0] == 163 and totals["out"][0] >= 162
    assert 0.3 < totals["wip_time"][0] / 3600.0 < 0.6  # 3 s carried + 5 s pressed of every 22 s


def test_robot_to_robot_and_oversized_capacities_are_refused(tmp_path):
    path = author_line(tmp_path / "line.usda", [
        ("Source", "source", {"interarrival": 5.0}, ["A"]),
        ("A", "robot", {"pickTime": 1.0, "placeTime": 1.0}, ["B"]),
        ("B", "robot", {"pickTime": 1.0, "placeTime": 1.0}, ["Sink"]),
        ("Sink", "sink", {}, []),
    ])
    with pytest.raises(LayoutError, match="/Factory/A: a robot cannot hand over to the robot /Factory/B"):
        read_line(open_layout(path))
    model = read_line(open_layout(deterministic_line(tmp_path / "ok.usda")))
    with pytest.raises(LayoutError, match="/Factory/Buffer: holds 1e\\+06 parts; at most 10,000"):
        run_whatif(model, sweep=[SweepParameter("/Factory/Buffer", "twin:capacity", [1e6])], replications=1)


def test_fork_never_overfills_a_place(sample_layout):
    """Signals read a moment apart may show Robot1 holding a part while Assembly has one too: the fork
    must not put two parts in the station (which would deadlock it), and it says what it left out."""
    model = read_line(open_layout(sample_layout))
    assembly, robot = model.index["/Factory/Line/Assembly"], model.index["/Factory/Line/Robot1"]
    start = LiveStart(taken_at=0.0, stations={assembly: (1, 0.5)}, holding=[robot])
    result = run_whatif(model, replications=4, hours=1.0, start=start)
    assert result.points[0]["kpis"]["throughput_per_hour"]["mean"] > 150
    assert any("Robot1 holds a part, but no place after it has room" in note for note in result.live["assumptions"])
