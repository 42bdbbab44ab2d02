"""The runtime with physics: parts from the source to the sink's bin on Newton, and sensors read from physics,
checked against mechanics (a part's travel time over a belt) and geometry (a beam through a box)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pxr import Sdf

from twin.core.cache import quality_name
from twin.physics.model import BELT_FRICTION, GRAVITY
from twin.physics.sensors import ENCODER, OCCUPIED, beam_blocked
from twin.scenes import add_conveyor, add_sensor, add_sink, add_source, new_layout
from twin.scenes.collision import add_collision_boxes
from twin.scenes.meshes import define_xform, pose
from twin.sim.physics_robots import GRIP_FAULT
from twin.sim.physics_runtime import PARTS, PARTS_IN, PARTS_OUT, POSES
from twin.sim.runtime import Twin

BELT_HEIGHT, PART, SPEED, LENGTH = 0.75, 0.2, 0.35, 3.0
EYE_AT = 2.0  # metres along the belt
INTERARRIVAL = 4.0
TICK = 1.0 / 30.0
RUN_S = 18.0  # simulated seconds: four parts, three past the eye, two in the bin
LINE = "/Factory/Line"


def _line(path) -> str:
    """Source -> one belt with a photo-eye -> sink bin, parts arriving every INTERARRIVAL seconds."""
    stage = new_layout(path)
    define_xform(stage, LINE)
    add_collision_boxes(stage, f"{LINE}/Floor", [("Slab", (10.0, 6.0, 0.1), (1.5, 0.0, -0.05))])
    add_source(stage, f"{LINE}/Source", pose(-0.7, 0.0), height=BELT_HEIGHT)
    conveyor = add_conveyor(stage, f"{LINE}/Belt", pose(0.0, 0.0), length=LENGTH, width=0.5,
                            belt_height=BELT_HEIGHT, capacity=8, speed=SPEED)
    conveyor.CreateAttribute("twin:partLength", Sdf.ValueTypeNames.Double).Set(PART)
    add_sink(stage, f"{LINE}/Sink", pose(LENGTH + 0.5, 0.0), height=BELT_HEIGHT)
    add_sensor(stage, f"{LINE}/Belt/PhotoEye", (EYE_AT, -0.35, BELT_HEIGHT + 0.1), sensor_type="photoEye")
    source = stage.GetPrimAtPath(f"{LINE}/Source")
    source.CreateAttribute("twin:interarrival", Sdf.ValueTypeNames.Double).Set(INTERARRIVAL)
    source.CreateAttribute("twin:arrivalDistribution", Sdf.ValueTypeNames.String).Set("constant")
    for here, there in ((f"{LINE}/Source", f"{LINE}/Belt"), (f"{LINE}/Belt", f"{LINE}/Sink")):
        stage.GetPrimAtPath(here).CreateRelationship("twin:next", custom=False).SetTargets([there])
    stage.GetRootLayer().Save()
    return str(path)


def test_a_beam_meets_the_boxes_it_crosses_and_no_others():
    half = 0.1
    turned = [0.0, 0.0, math.sin(math.pi / 8), math.cos(math.pi / 8)]  # 45 degrees about z
    poses = np.array([[1.0, 0.0, 0.85, 0, 0, 0, 1], [1.0, 0.5, 0.85, 0, 0, 0, 1], [2.0, 0.0, 0.85, *turned],
                      [1.0, 0.0, 1.2, 0, 0, 0, 1]])
    origin, direction = np.array([1.05, -0.35, 0.85]), np.array([0.0, 1.0, 0.0])
    assert beam_blocked(origin, direction, 0.7, poses, half).tolist() == [True, False, False, False]
    # the turned cube's corner reaches 0.1 * sqrt(2) = 0.141 m along x from its centre
    assert beam_blocked(np.array([2.13, -0.35, 0.85]), direction, 0.7, poses, half).tolist() == [
        False, False, True, False]
    assert not beam_blocked(np.array([2.15, -0.35, 0.85]), direction, 0.7, poses, half).any()


@pytest.mark.slow
def test_photo_eye_edges_are_the_parts_that_passed_at_the_belt_transit_times(tmp_path):
    twin = Twin(_line(tmp_path / "line.usda"), physics=True, device="cpu")
    line, cache = twin.physics, twin.cache
    eye = cache.signal_row(f"{LINE}/Belt/PhotoEye", OCCUPIED)
    out_row, in_row = cache.signal_row(f"{LINE}/Source", PARTS_OUT), cache.signal_row(f"{LINE}/Sink", PARTS_IN)
    spawned, rising, last = [], [], False
    for tick in range(1, round(RUN_S / TICK) + 1):
        twin.step(sim_time=tick * TICK)
        if cache.signal_values(out_row)[0] > len(spawned):
            spawned.append(cache.source_time[out_row] - twin.started)
        occupied = cache.signal_values(eye)[0] == 1.0
        if occupied and not last:
            rising.append(cache.source_time[eye] - twin.started)
            assert cache.status[eye] == 0  # good, as a connector writes a good value
        last = occupied
    assert len(spawned) == math.floor(RUN_S / INTERARRIVAL)
    # every part that passed the eye, once each: all but those spawned too late to reach it
    start = PART / 2 + 0.005  # where the source puts a part's centre
    travel = EYE_AT - start - PART / 2  # its leading face to the beam
    # L / v from the source, plus at most the part's settling: set down 1 mm above the belt, it falls, then the
    # belt's friction brings it up to speed (losing at most half the spin-up time v / (mu g) of travel)
    settle = math.sqrt(2 * 0.001 / GRAVITY) + SPEED / (2 * BELT_FRICTION * GRAVITY)
    expected = np.array([t + travel / SPEED for t in spawned if t + travel / SPEED + settle < RUN_S - TICK])
    assert len(rising) == len(expected) == len(line.sensors.rising_edges[0]) >= 2
    lag = np.array(rising) - expected
    assert np.all(lag >= -line.model.dt) and np.all(lag <= settle + line.model.dt), lag
    assert np.ptp(lag) <= line.model.dt  # every part alike: each edge dated within one step
    # the encoder is the belt's travel; parts off the belt's end land in the bin and are counted there
    assert cache.signal_values(cache.signal_row(f"{LINE}/Belt", ENCODER))[0] == pytest.approx(SPEED * RUN_S,
                                                                                              rel=1e-4)
    reached = [t for t in spawned if t + (LENGTH - start) / SPEED + 1.0 < RUN_S]
    assert cache.signal_values(in_row)[0] == len(reached)
    active = cache.instance_sets[PARTS].active
    assert active.sum() == len(line.state.parts())
    poses = cache.signal_values(cache.signal_row(LINE, POSES)).reshape(-1, 7)
    assert np.array_equal(np.all(np.isfinite(poses), axis=1), active)


@pytest.mark.slow
def test_sample_line_on_physics_passes_parts_through_its_stations_into_the_bin(sample_layout):
    from twin.physics.sensors import HAS_PART

    twin = Twin(sample_layout, physics=True, device="cpu")
    line, cache = twin.physics, twin.cache
    switch = cache.signal_row("/Factory/Line/Machining", HAS_PART)
    # counters and grip faults are known from the start (0, good), so a live what-if need not wait for a first event
    known = (("Sink", PARTS_IN), ("Source", PARTS_OUT), ("Robot1", GRIP_FAULT), ("Robot2", GRIP_FAULT))
    for path, name in known:
        row = cache.signal_row(f"/Factory/Line/{path}", name)
        assert quality_name(cache.status[row]) == "good" and cache.signal_value(row) == 0, (path, name)
    feed = line.belts["/Factory/Line/Conveyor2"]  # Robot1's suction pad picks at its end, on its centre line
    seen_on, run_s, widest = 0, 140.0, 0.0  # seed 1 of the line model's streams: the first part arrives after ~40 s
    for tick in range(1, round(run_s / TICK) + 1):
        twin.step(sim_time=tick * TICK)
        seen_on += cache.signal_values(switch)[0] == 1.0
        on, local = line._on_belt(feed, line.state.part_poses())
        resting = np.abs(local[:, 2] - feed.height - PART / 2) < 0.005  # not yet lifted by the pad
        waiting = on & resting & (local[:, 0] > feed.length - PART)
        widest = max(widest, float(np.max(np.abs(local[waiting, 1]), initial=0.0)))
    health = line.health()
    assert health["parts_in"] >= 3 and health["parts_lost"] == 0 and not health["behind"], health
    assert seen_on * TICK >= 7.5 * 0.7  # Machining held a part for about its cycle at least once
    # the guide rails keep the waiting parts single file: within their clearance (3 cm) of the centre line, where
    # the pad (4 cm radius, 1 cm reach) takes a part up to 7 cm off it
    assert widest <= 0.03 + 0.002, widest
    programs = [robot.program for robot in line.robots if robot.program is not None]
    assert len(programs) == 2 and [program.faults for program in programs] == [0, 0]  # every grip found its part
    twin.step(sim_time=run_s + 10.0)  # a tick ten seconds late: physics runs one second and says it is behind
    assert line.health()["behind"] and line.health()["dropped_s"] == pytest.approx(9.0, abs=2 * line.model.dt)


def test_the_line_model_streams_are_drawn_alike_in_python(tmp_path):
    """A source straight into a sink: what-if's parts out per replication are the arrivals LineStream draws."""
    from twin.line.model import read_line
    from twin.line.whatif import run_whatif
    from twin.scenes import open_layout
    from twin.sim.line_random import LineStream

    stage = new_layout(tmp_path / "arrivals.usda")
    define_xform(stage, LINE)
    add_source(stage, f"{LINE}/Source", pose(0.0, 0.0), height=BELT_HEIGHT)
    add_sink(stage, f"{LINE}/Sink", pose(2.0, 0.0), height=BELT_HEIGHT)
    source = stage.GetPrimAtPath(f"{LINE}/Source")
    source.CreateAttribute("twin:interarrival", Sdf.ValueTypeNames.Double).Set(10.0)
    source.CreateRelationship("twin:next", custom=False).SetTargets([f"{LINE}/Sink"])
    stage.GetRootLayer().Save()
    seed, replications, hours = 7, 3, 1.0
    result = run_whatif(read_line(open_layout(tmp_path / "arrivals.usda")), replications=replications,
                        hours=hours, seed=seed, device="cpu")
    counts = []
    for replication in range(replications):  # element 0 of a two-element line
        stream, arrivals = LineStream(seed, replication * 2), 0
        time = stream.exponential(10.0)
        while time < hours * 3600:
            arrivals, time = arrivals + 1, time + stream.exponential(10.0)
        counts.append(arrivals)
    parts_out = result.points[0]["kpis"]["parts_out"]
    assert parts_out["mean"] == pytest.approx(np.mean(counts), abs=1e-9)
    spread = parts_out["high"] - parts_out["mean"]  # the t interval: the same spread, so the same counts
    assert spread == pytest.approx(4.302652729911275 * np.std(counts, ddof=1) / math.sqrt(replications), rel=1e-6)


def _station_line(path) -> str:
    """Source -> belt -> station that fails and changes over -> belt -> sink bin, as the line model reads it."""
    from twin.scenes import add_machine

    stage = new_layout(path)
    define_xform(stage, LINE)
    add_collision_boxes(stage, f"{LINE}/Floor", [("Slab", (14.0, 6.0, 0.1), (3.5, 0.0, -0.05))])
    add_source(stage, f"{LINE}/Source", pose(-0.7, 0.0), height=BELT_HEIGHT)
    belts = {"In": (0.0, 3.0), "Out": (4.8, 2.0)}
    for name, (start, length) in belts.items():
        conveyor = add_conveyor(stage, f"{LINE}/{name}", pose(start, 0.0), length=length, width=0.5,
                                belt_height=BELT_HEIGHT, capacity=5, speed=SPEED)
        conveyor.CreateAttribute("twin:partLength", Sdf.ValueTypeNames.Double).Set(PART)
    add_machine(stage, f"{LINE}/Station", pose(3.9, 0.0), title="Station", size=(1.4, 1.4, 1.8), cycle_time=3.0,
                table_height=0.8, color=(0.5, 0.5, 0.5))
    add_sink(stage, f"{LINE}/Sink", pose(7.3, 0.0), height=BELT_HEIGHT)
    values = {"Source": {"twin:interarrival": 2.5, "twin:arrivalDistribution": "constant"},
              "Station": {"twin:cycleSpread": 0.2, "twin:mtbf": 40.0, "twin:mttr": 8.0, "twin:setupTime": 2.0,
                          "twin:setupEvery": 4.0}}
    for name, attributes in values.items():
        for attribute, value in attributes.items():
            kind = Sdf.ValueTypeNames.String if isinstance(value, str) else Sdf.ValueTypeNames.Double
            stage.GetPrimAtPath(f"{LINE}/{name}").CreateAttribute(attribute, kind).Set(value)
    flow = ["Source", "In", "Station", "Out", "Sink"]
    for here, there in zip(flow, flow[1:], strict=False):
        stage.GetPrimAtPath(f"{LINE}/{here}").CreateRelationship("twin:next", custom=False).SetTargets(
            [f"{LINE}/{there}"])
    stage.GetRootLayer().Save()
    return str(path)


@pytest.mark.slow
def test_a_line_on_physics_gives_the_line_models_output_with_the_same_random_numbers(tmp_path):
    """Failures, changeovers, random cycles and a full belt blocking the source, on physics and in the line model
    with the same streams: the parts into the bin are those the line model's replication 0 puts into its sink."""
    from twin.line.model import read_line
    from twin.line.whatif import run_whatif
    from twin.scenes import open_layout

    # 90 s: the belt is full by 22.5 s, the station has failed and changed over, 20 parts are in the bin
    run_s, seed = 90.0, 3
    layout = _station_line(tmp_path / "station.usda")
    model = read_line(open_layout(layout))
    paired = run_whatif(model, replications=1, hours=run_s / 3600, seed=seed, device="cpu")
    prediction = run_whatif(model, replications=30, hours=run_s / 3600, seed=seed, device="cpu")
    twin = Twin(layout, physics=True, device="cpu", seed=seed)
    most_on_belt = 0
    for tick in range(1, round(run_s / TICK) + 1):
        twin.step(sim_time=tick * TICK)
        line = twin.physics
        on, _ = line._on_belt(line.belts[f"{LINE}/In"], line.state.part_poses())
        most_on_belt = max(most_on_belt, int(on.sum()))
    health, station = line.health(), line.stations[f"{LINE}/Station"]
    expected = paired.points[0]["kpis"]["parts_out"]["mean"]
    # a part the line model counts at the belt's end falls into the bin a moment later
    assert expected - 1 <= health["parts_in"] <= expected, (health, expected)
    assert health["parts_lost"] == 0 and station.since_setup <= 4
    assert most_on_belt == 5  # the source (a part every 2.5 s) outruns the station: the belt fills to capacity
    kpis = prediction.points[0]["kpis"]
    assert kpis["stations"][f"{LINE}/Station"]["down_share"]["mean"] > 0.05  # failures matter on this line


@pytest.mark.slow
def test_sample_line_transfers_parts_onto_the_takeaway_belt_and_into_the_bin(sample_layout):
    """Conveyor4's end over the sink's lower takeaway belt: every part lands on it, rides it at its speed, falls into
    the bin; none is lost, and no part's lowest corner sinks more than 1 mm into a belt."""
    from twin.physics.model import PhysicsModel
    from twin.physics.sensors import quaternion_matrices
    from twin.sample_factory import layout
    from twin.scenes import open_layout

    model = PhysicsModel.from_stage(open_layout(sample_layout), max_parts=4)
    state, last, takeaway = model.new_state(), layout.CONVEYORS[-1], layout.TAKEAWAY
    belts = [(last.start[0], last.start[0] + last.length, layout.BELT_HEIGHT),
             (takeaway.start, takeaway.start + takeaway.length, takeaway.height)]
    parts = [state.spawn_part((last.start[0] + 1.6 + 0.35 * i, 0.0, layout.BELT_HEIGHT + PART / 2 + 0.001))
             for i in range(4)]
    carried, deepest = set(), 0.0
    corner_offsets = PART / 2 * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    for _ in range(round(7.0 / model.dt / 4)):
        model.step(state, 4)
        poses, velocities = state.part_poses(), state.part_velocities()
        corners = poses[:, None, :3] + np.einsum("nij,kj->nki", quaternion_matrices(poses[:, 3:7]), corner_offsets)
        for start, end, top in belts:  # corners over a belt's surface (a part tipping off its end hangs over it)
            over = (corners[..., 0] > start + 0.005) & (corners[..., 0] < end - 0.005)
            deepest = max(deepest, float(np.max(np.where(over, top - corners[..., 2], -1.0))))
        riding = (np.abs(poses[:, 2] - takeaway.height - PART / 2) < 0.002) & \
                 (np.abs(velocities[:, 0] - takeaway.speed) < 0.01)
        carried |= set(np.flatnonzero(riding).tolist())
    assert carried == set(range(len(parts)))  # each part rode the takeaway belt at its speed
    assert deepest <= 0.001, deepest
    poses = state.part_poses()
    assert np.all(np.abs(poses[:, 0] - layout.SINK[0]) < 0.4 - PART / 2 + 0.01), poses  # all in the bin
    assert np.all(np.abs(poses[:, 1] - layout.SINK[1]) < 0.4) and np.all(poses[:, 2] < takeaway.height), poses

