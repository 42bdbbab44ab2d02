"""The Python SDK: one script run against a twin served over HTTP (`twin.connect`) and against the same
layout in-process (`twin.open`), with the same answers; the async form; errors as Python exceptions.

Signals are written into the served twin's cache by the test (as its connector would), at known times,
so every answer is known in advance.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import twin
from tests.helpers import serve_app
from twin.history.store import Historian
from twin.kinematics.chain import Chain
from twin.server.app import create_app
from twin.server.auth import Access, Principal
from twin.sim.runtime import Twin

ROBOT = "/Factory/Line/Robot1"
JOINTS = f"{ROBOT}.twin:jointPositions"
SINK = "/Factory/Line/Sink.twin:partsIn"
SPINDLE = "/Factory/Line/Machining/SpindleTemp.twin:temperature"
OPERATOR = "sdk-operator"
T0 = float(int(time.time()) - 3600)  # the recorded hour starts here, on a whole second
HOME = np.array([-0.0042, -1.4135, 0.7049, 0.0, 2.2689, 0.0])


def record_known_hour(cache, historian) -> None:
    """One value per minute for an hour: the sink counts up by 10, the joints move linearly."""
    sink = cache.signal_row(*SINK.rsplit(".", 1))
    joints = cache.signal_row(*JOINTS.rsplit(".", 1))
    for minute in range(60):
        cache.write_signal(sink, float(10 * minute), source_time=T0 + 60 * minute)
        cache.write_signal(joints, HOME + 0.001 * minute, source_time=T0 + 60 * minute)
    historian.flush()


@pytest.fixture(scope="module")
def remote(sample_layout, tmp_path_factory):
    served = Twin(sample_layout)
    served.cache.add_signal(*SPINDLE.rsplit(".", 1), unit="degC")  # what the PLC binding would register
    historian = Historian(tmp_path_factory.mktemp("sdk") / "remote.duckdb", served.cache)
    record_known_hour(served.cache, historian)
    access = Access({OPERATOR: Principal("olga", "operator")})
    app = create_app(served, tick_hz=20, access=access, historian=historian)
    with serve_app(app) as url, twin.connect(url, token=OPERATOR) as client:
        yield {"api": client, "twin": served, "url": url, "historian": historian}
    historian.close()


@pytest.fixture(scope="module")
def local(sample_layout, tmp_path_factory):
    with twin.open(sample_layout, history=tmp_path_factory.mktemp("sdk") / "local.duckdb") as plant:
        plant.cache.add_signal(*SPINDLE.rsplit(".", 1), unit="degC")
        record_known_hour(plant.cache, plant.historian)
        yield {"api": plant, "twin": plant.twin, "historian": plant.historian}


@pytest.fixture(params=["remote", "local"])
def plant(request):
    return request.getfixturevalue(request.param)


def test_scene_and_signals(plant):
    api = plant["api"]
    assert api.prims(kind="robot") == [ROBOT, "/Factory/Line/Robot2"]
    details = api.prim(ROBOT)
    assert details["kind"] == "robot" and any(s["key"] == JOINTS for s in details["signals"])
    sample = api.read(SINK)
    assert (sample.value, sample.quality, sample.time) == (590.0, "good", T0 + 3540)
    joints = api.read_many([JOINTS])[JOINTS]
    np.testing.assert_allclose(joints.value, HOME + 0.059)
    with pytest.raises(twin.NotFoundError, match="no signal /Factory/Nope.twin:x"):
        api.read("/Factory/Nope.twin:x")


def test_history_as_numpy_and_pandas_and_parquet(plant, tmp_path):
    api = plant["api"]
    raw = api.history(SINK, T0, T0 + 600)
    np.testing.assert_array_equal(raw.times, T0 + 60 * np.arange(11))
    np.testing.assert_array_equal(raw.values, 10 * np.arange(11))
    frame = api.history(JOINTS, T0, T0 + 120).to_pandas()
    assert list(frame.columns) == [f"value[{i}]" for i in range(6)] + ["status"]
    assert frame.index[1].timestamp() == pytest.approx(T0 + 60) and frame["value[1]"].iloc[2] == pytest.approx(
        HOME[1] + 0.002)
    steps = api.history(SINK, T0, T0 + 1199, step=600, how="mean")
    np.testing.assert_allclose(steps.values, [45.0, 145.0])  # minutes 0-9 and 10-19
    state = api.state_at(T0 + 90)
    assert state[SINK].value == 10.0 and state[SINK].time == T0 + 60
    np.testing.assert_allclose(state[JOINTS].value, HOME + 0.001)
    exported = api.export(tmp_path / "sink.parquet", keys=[SINK], start=T0, end=T0 + 240)
    assert pq.read_table(exported).column("value").to_pylist() == [0.0, 10.0, 20.0, 30.0, 40.0]
    with pytest.raises(twin.NotFoundError, match="no signal"):
        api.history("/Factory/Nope.twin:x", T0, T0 + 1)
    with pytest.raises(ValueError, match="parquet or .csv"):
        api.export(tmp_path / "x.xlsx")


def test_alarms_raised_listed_and_acknowledged_once(plant):
    api, served = plant["api"], plant["twin"]
    row = served.cache.signal_row(*SPINDLE.rsplit(".", 1))
    served.cache.write_signal(row, 66.0)
    if isinstance(api, twin.LocalTwin):
        api.step()  # in-process, time moves when the script steps the twin
    deadline = time.monotonic() + 5
    while not api.alarms() and time.monotonic() < deadline:
        time.sleep(0.05)
    (alarm,) = api.alarms()
    assert (alarm.key, alarm.state, alarm.severity, alarm.value) == (SPINDLE, "active", "high", 66.0)
    acknowledged = api.acknowledge(alarm.id, "cooling down")
    assert acknowledged.state == "acknowledged" and acknowledged.comment == "cooling down"
    with pytest.raises(twin.ConflictError, match="already acknowledged"):
        api.acknowledge(alarm.id)
    with pytest.raises(twin.NotFoundError):
        api.acknowledge(10_000)
    served.cache.write_signal(row, 40.0)
    if isinstance(api, twin.LocalTwin):
        api.step()
    deadline = time.monotonic() + 5
    while api.alarms() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.alarms() == []
    plant["historian"].flush()
    events = api.alarm_history(key=SPINDLE)
    assert [e["event"] for e in events] == ["raised", "acknowledged", "cleared"]


def test_alarm_transitions_arrive_on_subscriptions(plant):
    api, served = plant["api"], plant["twin"]
    row = served.cache.signal_row(*SPINDLE.rsplit(".", 1))
    updates = api.subscribe([SPINDLE], idle_timeout=10)
    next(updates)  # the current state
    served.cache.write_signal(row, 70.0)
    if isinstance(api, twin.LocalTwin):
        api.step()
    events, deadline = [], time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        events = next(updates).alarm_events
    served.cache.write_signal(row, 40.0)  # cleared; acknowledged below, so the alarm closes
    if isinstance(api, twin.LocalTwin):
        api.step()
    updates.close()
    assert [(e["event"], e["key"], e["value"]) for e in events] == [("raised", SPINDLE, 70.0)]
    api.acknowledge(events[0]["alarm"])


def test_kinematics_in_the_world_frame(plant, sample_layout):
    api = plant["api"]
    (robot,) = [r for r in api.robots() if r.path == ROBOT]
    assert len(robot.joints) == 6 and robot.flange == "tool0"
    flange = robot.links.index("tool0")
    chain = Chain.from_usd(plant["twin"].stage.stage, ROBOT)
    q = np.stack([HOME, HOME + [0.1, 0.1, 0.1, 0.1, -0.1, 0.1]])  # a5 of HOME is at its limit, 130 deg
    poses = api.fk(ROBOT, q)
    expected = robot.base @ chain.fk(q)
    assert poses.shape == (2, chain.n_links, 4, 4)
    np.testing.assert_allclose(poses, expected, atol=1e-6)
    solution = api.ik(ROBOT, poses[:, flange], seeds=8)
    assert solution.success.all() and solution.position_error.max() < 1e-3
    reached = api.fk(ROBOT, solution.q)[:, flange]
    np.testing.assert_allclose(reached[:, :3, 3], poses[:, flange, :3, 3], atol=1e-3)
    with pytest.raises(twin.InvalidRequestError, match=r"q must have shape \(B, 6\)"):
        api.fk(ROBOT, [0.0, 1.0])
    with pytest.raises(twin.NotFoundError, match="no robot at /Factory/Nope"):
        api.fk("/Factory/Nope", HOME)


def test_whatif_study(plant):
    api = plant["api"]
    job = api.whatif(sweep=[twin.SweepParameter("/Factory/Line/Machining", "twin:cycleTime", [6.0, 9.0])],
                     replications=4, hours=0.5, timeout=120)
    points = job["result"]["points"]
    assert job["status"] == "done" and len(points) == 2
    faster, slower = (p["kpis"]["throughput_per_hour"]["mean"] for p in points)
    assert faster >= slower > 0


def test_subscribe_yields_what_changes(plant):
    api, served = plant["api"], plant["twin"]
    row = served.cache.signal_row(*SINK.rsplit(".", 1))
    updates = api.subscribe([SINK], idle_timeout=10)
    first = next(updates)
    assert first.signals[SINK].value == 590.0  # the first update holds the current state
    served.cache.write_signal(row, 600.0)
    second = next(updates)
    assert second.signals[SINK].value == 600.0 and second.version > first.version
    updates.close()
    joints_row = served.cache.signal_row(*JOINTS.rsplit(".", 1))
    served.cache.write_signal(joints_row, HOME)
    if isinstance(api, twin.LocalTwin):
        api.step()
    link_1 = Chain.from_usd(served.stage.stage, ROBOT).fk(HOME)[0, 1]
    moving = api.subscribe(subtrees=[ROBOT], idle_timeout=10)
    pose, deadline = None, time.monotonic() + 5  # the served twin poses the robot at its next tick
    while time.monotonic() < deadline and (pose is None or np.abs(pose - link_1).max() > 2e-4):
        pose = next(moving).transforms.get(f"{ROBOT}/link_1", pose)
    moving.close()
    np.testing.assert_allclose(pose, link_1, atol=2e-4)  # float32 and int16 on the wire


def test_writes_go_through_the_operator_role(remote, local):
    refused = twin.connect(remote["url"])  # anonymous: a viewer
    try:
        with pytest.raises(twin.PermissionDeniedError, match="needs the operator role"):
            refused.write("/Factory/Line/Conveyor1.twin:speedSetpoint", 0.4)
    finally:
        refused.close()
    with pytest.raises(twin.NotFoundError, match="has no writable binding"):  # no PLC behind this server
        remote["api"].write("/Factory/Line/Conveyor1.twin:speedSetpoint", 0.4)
    result = local["api"].write(JOINTS, HOME + 0.2)  # in-process: the twin's own value, then a step
    assert result["ok"] and local["api"].read(JOINTS).value == pytest.approx(HOME + 0.2)
    with pytest.raises(twin.InvalidRequestError, match="holds 6 value"):
        local["api"].write(JOINTS, [1.0, 2.0])


def test_async_client(remote):
    async def main():
        async with twin.connect_async(remote["url"], token=OPERATOR) as plant:
            sample = await plant.read(SINK)
            history = await plant.history(SINK, T0, T0 + 120)
            async for update in plant.subscribe([SINK]):
                return sample, history, update

    sample, history, update = asyncio.run(main())
    assert sample.quality == "good" and len(history) == 3 and SINK in update.signals


def test_forcing_a_twin_that_commissions_no_line_is_refused_alike(plant):
    """The demo's twin (remote) and an in-process twin both answer not-found, naming `twin commission`."""
    for call in (lambda: plant["api"].force("Line.Conveyors.Conveyor1.PartAtEnd", True),
                 lambda: plant["api"].release(), lambda: plant["api"].forces()):
        with pytest.raises(twin.NotFoundError, match="not commissioning a line: start it with `twin commission`"):
            call()


def test_the_three_forms_share_one_api():
    """Sync, async and in-process: every public method of the async client exists in the other two with the
    same parameters and defaults (the in-process twin may add options of its own)."""
    import inspect

    names = [n for n, _ in inspect.getmembers(twin.AsyncTwinClient, inspect.isfunction) if not n.startswith("_")]
    assert {"read", "subscribe", "write", "history", "state_at", "alarms", "acknowledge", "fk", "ik",
            "whatif"} <= set(names)
    for name in names:
        expected = inspect.signature(getattr(twin.AsyncTwinClient, name)).parameters
        for form in (twin.TwinClient, twin.LocalTwin):
            found = inspect.signature(getattr(form, name)).parameters
            for parameter in expected.values():
                assert parameter.name in found, f"{form.__name__}.{name} lacks {parameter.name}"
                assert found[parameter.name].default == parameter.default, f"{form.__name__}.{name}({parameter})"
                assert found[parameter.name].kind == parameter.kind, f"{form.__name__}.{name}({parameter})"


def test_a_closed_client_says_so_and_big_rest_batches_are_refused(remote):
    client = twin.connect(remote["url"])
    client.close()
    client.close()  # twice is harmless
    with pytest.raises(twin.TwinError, match="is closed"):
        client.read(SINK)
    with pytest.raises(twin.InvalidRequestError, match="at most 2,000 joint vectors per request"):
        remote["api"].fk(ROBOT, np.zeros((2_001, 6)))


def test_unreachable_server_is_a_clear_error():
    from tests.helpers import free_port

    with twin.connect(f"http://127.0.0.1:{free_port()}", timeout=2) as plant, \
            pytest.raises(twin.TwinError, match="cannot reach the twin at http://127.0.0.1"):
        plant.read(SINK)
