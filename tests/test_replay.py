"""Replay rebuilds a known past state exactly: the frame for an instant holds the values recorded at that
instant, the link transforms are the forward kinematics of the recorded joints, and the whole frame is
what the live twin showed then. Real USD (the sample factory), real DuckDB, real Warp."""

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK
from twin.core.cache import BAD_WAITING_FOR_INITIAL_DATA, GOOD, UNCERTAIN_LAST_USABLE_VALUE
from twin.core.transforms import matrix_to_pose
from twin.history.replay import Replay
from twin.history.store import Historian
from twin.kinematics.chain import Chain
from twin.kinematics.usd import link_prim_paths
from twin.server.app import create_app
from twin.sim.runtime import Twin
from twin.stream.protocol import REPLAY, Frame, Scope, decode_frame, encode_frame, schema_id, signal_values

T0 = 1_700_000_000.0
ROBOT1, ROBOT2 = "/Factory/Line/Robot1", "/Factory/Line/Robot2"
JOINTS = "twin:jointPositions"
QA = np.array([0.3, -0.4, 0.5, -0.6, 0.7, -0.8])
QB = np.array([-1.1, 0.2, 1.3, 0.4, -1.5, 0.6])
QC = np.array([0.9, -0.9, 0.9, -0.9, 0.9, -0.9])
BAD = 0x80000000
EMPTY = [math.nan] * 6
# (source time, [(prim, attr, value, status)]): what a PLC reported, in order
UPDATES = [
    (T0, [(ROBOT1, JOINTS, QA, GOOD), ("/Factory/Line/Sink", "twin:partsIn", 3.0, GOOD)]),
    (T0 + 2, [(ROBOT2, JOINTS, QC, GOOD), ("/Factory/Line/Conveyor1", "twin:partPositions", [0.5, 1.5, *EMPTY], GOOD),
              ("/Factory/Line/Machining", "twin:hasPart", 1.0, GOOD)]),
    (T0 + 5, [("/Factory/Line/Sink", "twin:partsIn", 4.0, GOOD), (ROBOT1, "twin:holding", 1.0, GOOD),
              ("/Factory/Line/Machining", "twin:state", 4.0, GOOD)]),
    (T0 + 6, [(ROBOT2, JOINTS, None, BAD)]),  # the link fails: the value stays, the robot keeps its pose
    (T0 + 8, [("/Factory/Line", "twin:kpi:wip", 2.0, UNCERTAIN_LAST_USABLE_VALUE)]),
    (T0 + 10, [(ROBOT1, JOINTS, QB, GOOD), ("/Factory/Line/Conveyor1", "twin:partPositions",
                                              [0.7, 1.7, 2.5, *EMPTY[:5]], GOOD)]),
]


def snapshot(twin: Twin) -> Frame:
    data, _ = encode_frame(twin.cache, None, Scope())
    return decode_frame(data, twin.cache.signal_width)


def record(layout, path) -> tuple[Twin, Historian, dict]:
    """Play UPDATES into a twin with a historian; returns what its live step showed after each instant."""
    twin = Twin(layout)
    historian = Historian(path, twin.cache)
    twin.robots.update()
    twin.parts.update()
    shown = {T0 - 1: snapshot(twin)}  # before any data: every signal waiting, robots at their zero pose
    for when, updates in UPDATES:
        for prim, attr, value, status in updates:
            twin.cache.write_signal(twin.cache.signal_row(prim, attr), value, status=status, source_time=when)
        twin.robots.update()  # the live step's derivations (KPIs would write at wall time: they are not run)
        twin.parts.update()
        shown[when] = snapshot(twin)
    historian.flush()
    return twin, historian, shown


def expected_at(instant: float) -> dict[str, tuple]:
    """key -> (value, status, source time) as last reported at or before `instant`."""
    state = {}
    for when, updates in UPDATES:
        if when > instant:
            break
        for prim, attr, value, status in updates:
            key = f"{prim}.{attr}"
            kept = state[key][0] if value is None else value  # a bad status without a value keeps the value
            state[key] = (kept, status, when)
    return state


def decoded(frame: Frame, twin: Twin) -> dict[str, tuple]:
    widths = twin.cache.signal_width
    return {twin.cache.signals[row].key: (values, int(status), float(source_time))
            for row, values, status, source_time in zip(frame.signal_rows, signal_values(frame, widths),
                                                         frame.status, frame.source_time, strict=True)}


@pytest.fixture(scope="module")
def recorded(sample_layout, tmp_path_factory):
    twin, historian, shown = record(sample_layout, tmp_path_factory.mktemp("replay") / "h.duckdb")
    replay = Replay(twin, historian)
    replay.prepare()
    yield twin, replay, shown
    historian.close()


def test_frames_hold_the_recorded_values_at_each_instant(recorded):
    twin, replay, _ = recorded
    for instant in (T0 - 1, T0, T0 + 1, T0 + 5, T0 + 6.5, T0 + 9.999, T0 + 10, T0 + 3600):
        frame = decode_frame(replay.frame_at(instant), twin.cache.signal_width)
        assert frame.snapshot and frame.time == instant and frame.schema == schema_id(twin.cache)
        assert len(frame.signal_rows) == len(twin.cache.signals)  # every row, known or not
        expected = expected_at(instant)
        for key, (values, status, source_time) in decoded(frame, twin).items():
            if key not in expected:
                assert status == BAD_WAITING_FOR_INITIAL_DATA and np.all(np.isnan(values)), (instant, key)
                assert math.isnan(source_time)
                continue
            value, want_status, when = expected[key]
            np.testing.assert_array_equal(values, np.atleast_1d(np.asarray(value, np.float64)), err_msg=key)
            assert status == want_status, (instant, key)
            assert source_time == pytest.approx(when, abs=1e-3), (instant, key)  # ages are float32


def test_frames_are_what_the_live_twin_showed(recorded):
    """Poses, parts, values and qualities: the replay of an instant equals the live snapshot taken then."""
    twin, replay, shown = recorded
    instants = sorted(shown)
    for index, when in enumerate(instants):
        after = instants[index + 1] if index + 1 < len(instants) else when + 60
        for instant in (when, (when + after) / 2):  # at an update and between two
            live, past = shown[when], decode_frame(replay.frame_at(instant), twin.cache.signal_width)
            np.testing.assert_array_equal(past.transform_rows, live.transform_rows)
            np.testing.assert_array_equal(past.poses, live.poses, err_msg=f"poses at {instant - T0}")
            np.testing.assert_array_equal(past.values, live.values)
            np.testing.assert_array_equal(past.status, live.status)
            np.testing.assert_array_equal(past.quality, live.quality)
            assert past.instances.keys() == live.instances.keys()
            for index_, poses in live.instances.items():
                np.testing.assert_array_equal(past.instances[index_], poses, err_msg=f"parts at {instant - T0}")
    # the instant before the first update shows robots at their zero pose and no part
    assert len(decode_frame(replay.frame_at(T0 - 1), twin.cache.signal_width).instances[0]) == 0
    assert len(decode_frame(replay.frame_at(T0 + 5), twin.cache.signal_width).instances[0]) == 4  # 2 + 1 + 1


def test_links_are_the_forward_kinematics_of_the_recorded_joints(recorded):
    twin, replay, _ = recorded
    chain = Chain.from_usd(twin.stage.stage, ROBOT1)
    links = link_prim_paths(twin.stage.stage, ROBOT1)
    rows = [twin.cache.transform_row(links[name]) for name in chain.link_names]
    for instant, q in ((T0 - 1, np.zeros(6)), (T0 + 4, QA), (T0 + 11, QB), (T0 + 0.5, QA)):
        frame = decode_frame(replay.frame_at(instant), twin.cache.signal_width)
        poses = frame.poses[np.searchsorted(frame.transform_rows, rows)]
        expected = matrix_to_pose(chain.fk(q)[0])  # the chain's own FK kernel, not the scene's batch
        np.testing.assert_allclose(poses[:, :3], expected[:, :3], atol=2e-6)
        quaternions = np.where((np.sum(poses[:, 3:] * expected[:, 3:], axis=1) < 0)[:, None], -1, 1) * poses[:, 3:]
        np.testing.assert_allclose(quaternions, expected[:, 3:], atol=3e-5)  # int16 steps of 1/32767
    moved = decode_frame(replay.frame_at(T0 + 11), twin.cache.signal_width)
    still = decode_frame(replay.frame_at(T0 + 9), twin.cache.signal_width)
    assert not np.allclose(moved.poses, still.poses, atol=1e-3)  # the test can tell QA from QB


def test_replay_leaves_the_live_twin_alone(recorded):
    twin, replay, _ = recorded
    cache = twin.cache
    before = (cache.version, cache.schema, cache.transforms.copy(), cache.values.copy(),
              twin.stage.live.ExportToString())
    for instant in (T0 - 1, T0 + 3, T0 + 10):
        replay.frame_at(instant)
    after = (cache.version, cache.schema, cache.transforms, cache.values, twin.stage.live.ExportToString())
    assert before[:2] == after[:2] and before[4] == after[4]
    np.testing.assert_array_equal(before[2], after[2])
    np.testing.assert_array_equal(before[3], after[3])


def test_rows_added_later_are_replayed_with_the_new_schema(sample_layout, tmp_path):
    twin, historian, _ = record(sample_layout, tmp_path / "h.duckdb")
    replay = Replay(twin, historian)
    replay.prepare()
    old = decode_frame(replay.frame_at(T0 + 10), twin.cache.signal_width)
    row = twin.cache.add_signal("/Factory/Line/Machining", "twin:recipe", kind="text")
    twin.cache.write_signal(row, "recipe B", source_time=T0 + 12)
    historian.flush()
    replay.prepare()  # the live cache has a new row: the shadow is rebuilt with it
    frame = decode_frame(replay.frame_at(T0 + 12), twin.cache.signal_width)
    assert frame.schema == schema_id(twin.cache) != old.schema
    assert len(frame.signal_rows) == len(old.signal_rows) + 1 and frame.text == {row: "recipe B"}
    assert decode_frame(replay.frame_at(T0 + 11), twin.cache.signal_width).text == {}  # not yet written
    historian.close()


def test_frame_needs_prepare_and_a_finite_instant(recorded):
    twin, replay, _ = recorded
    with pytest.raises(ValueError, match="finite"):
        replay.frame_at(math.nan)
    with pytest.raises(RuntimeError, match="prepare"):
        Replay(twin, replay.historian).frame_at(T0)


def test_routes(sample_layout, tmp_path):
    twin, historian, _ = record(sample_layout, tmp_path / "h.duckdb")
    with TestClient(create_app(twin, tick_hz=5, historian=historian), base_url=LOOPBACK) as client:
        assert client.get("/api/history/range").json() == {"start": T0, "end": T0 + 10}
        response = client.get("/api/replay/frame", params={"at": T0 + 5.5})
        assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
        frame = decode_frame(response.content, twin.cache.signal_width)
        assert frame.time == T0 + 5.5 and frame.snapshot
        assert decoded(frame, twin)["/Factory/Line/Sink.twin:partsIn"][:2] == (4.0, GOOD)
        flags = int.from_bytes(response.content[6:8], "little")
        assert flags & REPLAY  # the viewer tells a replay from a live snapshot
        early = decode_frame(client.get("/api/replay/frame", params={"at": T0 - 3600}).content,
                             twin.cache.signal_width)  # before the first sample: not an error, all waiting
        assert np.all(early.status == BAD_WAITING_FOR_INITIAL_DATA)
        for bad in ("nan", "inf", "-inf"):
            refused = client.get("/api/replay/frame", params={"at": bad})
            assert refused.status_code == 422 and "finite" in refused.text, bad
        assert client.get("/api/replay/frame", params={"at": "soon"}).status_code == 422
        assert client.get("/api/replay/frame").status_code == 422
    historian.close()


def test_routes_without_history(sample_layout):
    with TestClient(create_app(Twin(sample_layout), tick_hz=5), base_url=LOOPBACK) as client:
        for path, params in (("/api/history/range", {}), ("/api/replay/frame", {"at": T0})):
            response = client.get(path, params=params)
            assert response.status_code == 404 and "--history" in response.text, path


def test_empty_history_has_no_range(sample_layout, tmp_path):
    twin = Twin(sample_layout)
    historian = Historian(tmp_path / "h.duckdb", twin.cache)
    with TestClient(create_app(twin, tick_hz=5, historian=historian), base_url=LOOPBACK) as client:
        assert client.get("/api/history/range").json() == {"start": None, "end": None}
    historian.close()


def test_state_names_are_replayed_with_their_codes(sample_layout, tmp_path):
    """The history keeps a state's code; the replay names it as the live twin did (a binding's enum map)."""
    twin = Twin(sample_layout)
    row = twin.cache.add_signal("/Factory/Line/Machining", "twin:state", labels={0: "idle", 4: "down"})
    historian = Historian(tmp_path / "h.duckdb", twin.cache)
    twin.cache.write_signal(row, 4.0, source_time=T0, label="down")  # as the connector writes it
    twin.cache.write_signal(row, 0.0, source_time=T0 + 1, label="idle")
    twin.cache.write_signal(row, 7.0, source_time=T0 + 2)  # a code without a name
    historian.flush()
    replay = Replay(twin, historian)
    replay.prepare()
    try:
        names = [decode_frame(replay.frame_at(T0 + dt), twin.cache.signal_width).text.get(row)
                 for dt in (0.5, 1.5, 2.5)]
        assert names == ["down", "idle", None]
    finally:
        historian.close()


def test_a_physics_run_replays_its_parts_as_recorded_ten_times_a_second(sample_layout, tmp_path):
    """The twin's own physics (`twin serve --physics --history`): the historian keeps the part poses of the last
    tick of each 100 ms (twin.cli.history_intervals), as a plant's bound poses are, and replay draws the parts of
    any instant from the pose kept for it, the live frame of that tick (docs/history.md, "Wide signals")."""
    from twin.cli import history_intervals
    from twin.sim.physics_runtime import POSES, POSES_HISTORY_S

    twin = Twin(sample_layout, physics=True, device="cpu")
    key = twin.cache.signals[twin.physics.poses_row].key
    assert key.endswith(POSES) and history_intervals(twin, None) == {key: POSES_HISTORY_S}
    historian = Historian(tmp_path / "h.duckdb", twin.cache, min_interval_s=history_intervals(twin, None))
    row = twin.physics.poses_row
    shown = {}  # poses' source time -> the parts the live twin showed then
    for tick in range(1, 89):  # seed 1's first part arrives after ~40 s: 44 s in ticks of half a second
        twin.step(sim_time=tick * 0.5)
    start = float(twin.cache.source_time[row]) + 1e-6
    for tick in range(1, 41):  # then 2 s at 20 Hz
        twin.step(sim_time=44.0 + tick * 0.05)
        shown[float(twin.cache.source_time[row])] = snapshot(twin).instances[0]
    historian.stop()
    kept = historian.series(key, start, 1e12)["times"]
    assert 15 <= len(kept) <= 25 and set(kept) <= set(shown)  # about one tick in two, each a tick's own poses
    assert len(kept) == len(np.unique(np.floor(kept / POSES_HISTORY_S)))  # at most one per 100 ms
    np.testing.assert_array_equal(historian.series(key, 0, 1e12)["values"][-1], twin.cache.signal_values(row))
    replay = Replay(twin, historian)
    replay.prepare()
    moving = 0
    for when, live in shown.items():
        last_kept = kept[np.searchsorted(kept, when, side="right") - 1] if when >= kept[0] else None
        if last_kept is None:
            continue
        past = decode_frame(replay.frame_at(when), twin.cache.signal_width).instances[0]
        np.testing.assert_array_equal(past, shown[last_kept], err_msg=f"parts at {when}")
        moving += not np.array_equal(past, live)  # a thinned tick shows the poses kept 50 ms before
    assert len(shown[kept[-1]]) > 0 and moving >= 10  # the parts move: the test tells the ticks apart
    historian.close()
