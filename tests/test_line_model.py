"""The simulated plant behind the sample PLC, run fast without OPC-UA."""

import math

import numpy as np
import pytest

from twin.kinematics.chain import Chain
from twin.kinematics.urdf import rtb_urdf
from twin.sample_factory import layout
from twin.sample_factory.line_model import GAP, LineModel


@pytest.fixture(scope="module")
def hour():
    """One simulated hour, sampled once a second."""
    model = LineModel(seed=3, dt=0.05)
    samples = []
    for _ in range(3600):
        for _ in range(20):
            model.step()
        samples.append(model.values())
    return model, samples


def test_parts_flow_from_source_to_sink(hour):
    model, samples = hour
    last = samples[-1]
    assert last["Line.Sink.PartsIn"] > 150  # the robot cell paces the line at ~15-20 s per part
    for key in ("Line.Source.PartsOut", "Line.Sink.PartsIn", "Line.Machining.PartsDone", "Line.Robot1.Cycles"):
        series = [s[key] for s in samples]
        assert all(b >= a for a, b in zip(series, series[1:], strict=False)), f"{key} went backwards"
    on_belts = sum(len(c.parts) for c in model.conveyors.values())
    in_stations = sum(s.has_part for s in model.stations.values())
    held = sum(r.holding for r in model.robots.values())
    assert last["Line.Source.PartsOut"] == last["Line.Sink.PartsIn"] + on_belts + in_stations + held


def test_states_are_valid_and_parts_never_overlap(hour):
    _, samples = hour
    states = {s[f"Line.{station.name}.State"] for s in samples for station in layout.STATIONS}
    assert states <= set(layout.STATION_STATES) and {1, 2} <= states
    for sample in samples:
        for spec in layout.CONVEYORS:
            positions = [p for p in sample[f"Line.{spec.name}.PartPositions"] if not math.isnan(p)]
            assert all(0 <= p <= spec.length for p in positions)
            assert all(b - a >= GAP - 1e-6 for a, b in zip(positions, positions[1:], strict=False))


def test_robots_stay_within_limits_and_grip_at_the_pick_point():
    model = LineModel(seed=5, dt=0.05)
    chains = {spec.name: Chain.from_urdf(rtb_urdf(spec.urdf)) for spec in layout.ROBOTS}
    grips = {name: [] for name in chains}
    holding = {name: False for name in chains}
    for _ in range(20 * 600):
        model.step()
        for name, robot in model.robots.items():
            chain = chains[name]
            assert np.all(robot.q >= chain.lower - 1e-6) and np.all(robot.q <= chain.upper + 1e-6)
            if robot.holding and not holding[name]:
                grips[name].append(robot.q.copy())
            holding[name] = robot.holding
    for spec in layout.ROBOTS:
        assert grips[spec.name], f"{spec.name} never picked a part in 10 minutes"
        x, y, yaw = spec.base
        base = np.eye(4)
        base[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        base[:2, 3] = (x, y)
        chain = chains[spec.name]
        tool = chain.fk(np.array(grips[spec.name]), base=base)[:, chain.link_index("tool0"), :3, 3]
        assert np.abs(tool - layout.ROBOT_TARGETS[spec.name]["pick"]).max() < 0.02


def test_the_same_seed_gives_the_same_plant():
    a, b = LineModel(seed=9), LineModel(seed=9)
    for _ in range(2000):
        a.step()
        b.step()
    assert str(a.values()) == str(b.values())
