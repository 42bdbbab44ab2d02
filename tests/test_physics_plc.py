"""The sample PLC on physics (plc.py --physics): what it publishes is what physics does, and a twin mirrors it.

The checks hold the published values against the physics and the layout, not against the plant's own code:
parts on a belt advance at the belt's published speed, the parts the sink has counted lie in the bin (its
bounds from the layout's USD), stations report the line model's state codes, robots' joints move; and a twin
bound to the PLC with the demo's bindings draws its parts where the PLC's poses say.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import numpy as np
import pytest
from asyncua import Client, ua
from pxr import Gf, Usd, UsdGeom

from tests.helpers import free_port
from twin.sample_factory import layout
from twin.sample_factory.line_model import BLOCKED, DOWN, IDLE, STARVED, WORKING, LineModel
from twin.sample_factory.plc import NAMESPACE, SamplePlc, _variant_type

POSES = "Line.Parts.Poses"
WARM_UP_S = 120.0  # seed 1's first part reaches the bin at about 102 s of plant time


def belt_frames(stage: Usd.Stage) -> dict[str, tuple[Gf.Matrix4d, float, float, float]]:
    """Each conveyor's world-to-belt transform, length, width and belt height, from the layout."""
    frames = {}
    for spec in layout.CONVEYORS:
        prim = stage.GetPrimAtPath(spec.path)
        world = UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(Usd.TimeCode.Default())
        frames[spec.name] = (world.GetInverse(), prim.GetAttribute("twin:length").Get(),
                             prim.GetAttribute("twin:width").Get(), prim.GetAttribute("twin:beltHeight").Get())
    return frames


def bin_bounds(stage: Usd.Stage) -> Gf.Range3d:
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    return cache.ComputeWorldBound(stage.GetPrimAtPath(f"{layout.LINE}/Sink/Bin")).ComputeAlignedRange()


def inside(bounds: Gf.Range3d, point) -> bool:
    low, high = bounds.GetMin(), bounds.GetMax()
    return all(low[i] <= point[i] <= high[i] for i in range(3))


async def read(client: Client, index: int, names: list[str]) -> dict[str, ua.DataValue]:
    nodes = [client.get_node(ua.NodeId(name, index)) for name in names]
    return dict(zip(names, await client.read_attributes(nodes), strict=True))


@pytest.mark.timeout(90)
def test_the_physics_plc_publishes_what_physics_does(sample_layout):
    stage = Usd.Stage.Open(str(sample_layout))
    frames, bounds = belt_frames(stage), bin_bounds(stage)
    half = layout.PART_SIZE / 2

    async def scenario():
        async with SamplePlc(free_port(), physics_layout=sample_layout, warm_up_s=WARM_UP_S) as plc:
            # the line model's variables, typed alike, and the poses
            expected = {name: _variant_type(name, value) for name, value in LineModel().values().items()}
            assert {name: plc.types[name] for name in expected} == expected
            assert plc.types[POSES] == ua.VariantType.Double
            async with Client(plc.endpoint) as client:
                index = await client.get_namespace_index(NAMESPACE)
                names = [POSES, "Line.Sink.PartsIn", *(f"Line.{c.name}.Speed" for c in layout.CONVEYORS),
                         *(f"Line.{s.name}.{v}" for s in layout.STATIONS for v in ("State", "HasPart")),
                         *(f"Line.{r.name}.JointPositions" for r in layout.ROBOTS)]
                samples, states = [], set()
                for _ in range(5):  # 2 s apart; stations' states over the whole run
                    samples.append(await read(client, index, names))
                    for station in layout.STATIONS:
                        state = samples[-1][f"Line.{station.name}.State"].Value.Value
                        states.add(state)
                        if state in (WORKING, BLOCKED):  # a machine working or blocked holds its part
                            assert samples[-1][f"Line.{station.name}.HasPart"].Value.Value
                    await asyncio.sleep(2.0)
                return samples, states

    samples, states = asyncio.run(scenario())
    assert states <= {IDLE, WORKING, BLOCKED, STARVED, DOWN} and WORKING in states

    # parts riding free on a belt advance at that belt's published speed
    checked = 0
    for first, second in zip(samples, samples[1:], strict=False):
        dt = (second[POSES].SourceTimestamp - first[POSES].SourceTimestamp).total_seconds()
        a = np.array(first[POSES].Value.Value).reshape(-1, 7)
        b = np.array(second[POSES].Value.Value).reshape(-1, 7)
        for name, (to_belt, length, width, height) in frames.items():
            speed = second[f"Line.{name}.Speed"].Value.Value
            local = [np.array([list(to_belt.Transform(Gf.Vec3d(*map(float, pose[:3])))) if np.all(np.isfinite(pose))
                               else [np.nan] * 3 for pose in poses]) for poses in (a, b)]
            on = [(np.abs(r[:, 1]) < width / 2) & (np.abs(r[:, 2] - height - half) < 0.02) for r in local]
            for slot in np.flatnonzero(on[0] & on[1]):
                p, q = local[0][slot], local[1][slot]
                # riding free: past the start, clear of the end (parts queue there), no part touching it ahead
                ahead = [r[o & (r[:, 0] > x), 0] for r, o, x in ((local[0], on[0], p[0]), (local[1], on[1], q[0]))]
                free = all(not len(d) or d.min() - x > layout.PART_SIZE + 0.02 for d, x in zip(ahead, (p[0], q[0]),
                                                                                              strict=True))
                if p[0] > 0.15 and q[0] < length - half - 0.1 and free:
                    assert (q[0] - p[0]) / dt == pytest.approx(speed, rel=0.05), (name, slot, p, q, dt)
                    checked += 1
    assert checked >= 3, "parts riding the belts"

    # every part the sink has counted (the bin keeps its last six) lies inside the bin
    last = samples[-1]
    counted = last["Line.Sink.PartsIn"].Value.Value
    poses = np.array(last[POSES].Value.Value).reshape(-1, 7)
    in_bin = sum(inside(bounds, pose[:3]) for pose in poses if np.all(np.isfinite(pose)))
    assert counted >= 1 and in_bin >= min(counted, 6), (counted, in_bin, bounds)

    # robots' joints move
    for robot in layout.ROBOTS:
        joints = {tuple(sample[f"Line.{robot.name}.JointPositions"].Value.Value) for sample in samples}
        assert len(joints) > 1, f"{robot.name} did not move in 8 s"


@pytest.mark.timeout(90)
def test_a_twin_bound_to_the_physics_plc_draws_its_parts_where_the_plc_says(sample_layout, tmp_path):
    """...and its historian keeps the poses at the bindings' history_ms (10 a second), the last ones exactly."""
    from twin.connectors.bindings import load_bindings, merge_bindings
    from twin.connectors.opcua import OpcUaConnector
    from twin.history.store import Historian
    from twin.sim.physics_runtime import POSES as POSES_ATTR
    from twin.sim.runtime import Twin

    here = __import__("twin.sample_factory.plc", fromlist=["__file__"]).__file__
    files = [load_bindings(Path(here).with_name(name)) for name in ("bindings.yaml", "bindings_physics.yaml")]

    async def scenario():
        async with SamplePlc(free_port(), physics_layout=sample_layout, warm_up_s=WARM_UP_S) as plc:
            bindings = merge_bindings(*(load_bindings(f.path, {"plc": plc.endpoint}) for f in files))
            poses = bindings.find(layout.LINE, POSES_ATTR)
            twin = Twin(sample_layout, part_poses=(poses.prim, poses.width // 7))
            connector = OpcUaConnector(bindings, twin.cache)
            historian = Historian(tmp_path / "history.duckdb", twin.cache,
                                  min_interval_s=bindings.history_intervals())
            await connector.start()
            try:
                row = twin.cache.signal_row(layout.LINE, POSES_ATTR)
                deadline = time.monotonic() + 20
                while not np.isfinite(twin.cache.signal_values(row)).any():
                    assert time.monotonic() < deadline, "the poses did not reach the twin"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # a second of poses at 20 Hz for the historian
                plc._task.cancel()  # the plant stops: what it published last must reach the twin
                await asyncio.sleep(0.2)
                published = np.array(plc.published[POSES]).reshape(-1, 7)
                while not np.array_equal(twin.cache.signal_values(row).reshape(-1, 7), published, equal_nan=True):
                    assert time.monotonic() < deadline, "the last poses did not reach the twin"
                    await asyncio.sleep(0.1)
                twin.step()
                historian.stop()
                recorded = historian.series(f"{layout.LINE}.{POSES_ATTR}", 0, 1e12)
                return published, twin.cache.instance_sets["parts"], recorded
            finally:
                await connector.stop()
                historian.close()

    published, parts, recorded = asyncio.run(scenario())
    intervals = np.floor(recorded["times"] / 0.1)  # at most one sample per 100 ms interval, the last of each
    assert len(intervals) >= 5 and len(np.unique(intervals)) == len(intervals), recorded["times"]
    np.testing.assert_array_equal(recorded["values"][-1].reshape(-1, 7), published)
    drawn = np.all(np.isfinite(published), axis=1)
    assert drawn.sum() >= 5 and np.array_equal(parts.active, drawn)
    np.testing.assert_allclose(parts.transforms[drawn, :3, 3], published[drawn, :3], atol=1e-6)
    bounds = bin_bounds(Usd.Stage.Open(str(sample_layout)))
    assert any(inside(bounds, p) for p in parts.transforms[drawn, :3, 3]), "a part drawn in the bin"
    assert math.isfinite(parts.transforms[drawn][0, 0, 0])
