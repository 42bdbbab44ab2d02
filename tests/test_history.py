"""The historian: every update kept (not just the latest), queries over known data and across keyframes,
retention, CSV export, and durability when the process is killed."""

import csv
import os
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np
import pytest

from twin.core.cache import UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache
from twin.core.errors import TwinError
from twin.history.store import Historian, Retention


@pytest.fixture
def filled(tmp_path):
    cache = RuntimeCache()
    speed = cache.add_signal("/F/Belt", "twin:speed", unit="m/s")
    joints = cache.add_signal("/F/Robot", "twin:q", width=3)
    phase = cache.add_signal("/F/Robot", "twin:phase", kind="text")
    historian = Historian(tmp_path / "history.db", cache)
    for second in range(100):  # 100 s of 1 Hz data with known values
        cache.write_signal(speed, second * 0.01, source_time=1000.0 + second)
        cache.write_signal(joints, [second, -second, 0.5], source_time=1000.0 + second)
        cache.write_signal(phase, "pick" if second % 2 else "place", source_time=1000.0 + second)
    cache.mark_status([speed], UNCERTAIN_LAST_USABLE_VALUE)
    assert historian.flush() == 301
    yield historian, cache
    historian.close()


def test_every_update_is_kept_with_quality_and_times(filled):
    historian, _ = filled
    speed = historian.series("/F/Belt.twin:speed", 1000.0, 1099.0)
    assert len(speed["times"]) == 100 and speed["times"][0] == 1000.0
    np.testing.assert_allclose(speed["values"], np.arange(100) * 0.01)
    joints = historian.series("/F/Robot.twin:q", 1010.0, 1012.0)
    np.testing.assert_array_equal(joints["values"], [[10, -10, 0.5], [11, -11, 0.5], [12, -12, 0.5]])
    assert historian.series("/F/Robot.twin:phase", 1003.0, 1004.0)["values"] == ["pick", "place"]
    everything = historian.series("/F/Belt.twin:speed", 0, 1e12)
    assert everything["status"][-1] == UNCERTAIN_LAST_USABLE_VALUE  # the stale mark is an update too
    with pytest.raises(TwinError, match="no signal '/F/Nope.twin:x'"):
        historian.series("/F/Nope.twin:x", 0, 1)


def test_state_at_uses_keyframes_and_late_updates(tmp_path):
    """Keyframes bound the read; a late update (source time before the keyframe, received after) counts."""
    cache = RuntimeCache()
    rows = [cache.add_signal(f"/F/S{i}", "twin:v") for i in range(3)]
    historian = Historian(tmp_path / "k.db", cache, keyframe_s=10.0)
    for second in range(60):
        cache.write_scalars(rows, [second, 2 * second, 3 * second], source_time=2000.0 + second)
        historian.flush()  # a keyframe every 10 s of source time
    cache.write_signal(rows[0], -1.0, source_time=2025.5)  # late: arrives after the 2050 keyframe
    historian.flush()
    assert historian._query("SELECT count(DISTINCT time) FROM keyframes")[0][0] == 6  # 2000, 2010 ... 2050
    state = historian.state_at(2055.0)
    assert [state[f"/F/S{i}.twin:v"]["v"] for i in range(3)] == [55.0, 110.0, 165.0]
    assert historian.state_at(2025.7)["/F/S0.twin:v"] == {"v": -1.0, "s": 0, "q": "good", "t": 2025.5}
    assert historian.state_at(2025.2)["/F/S1.twin:v"]["v"] == 50.0
    historian.close()


def test_state_at_an_instant_and_resampling(filled):
    historian, _ = filled
    state = historian.state_at(1042.5)
    assert state["/F/Belt.twin:speed"] == {"v": 0.42, "s": 0, "q": "good", "t": 1042.0}
    assert state["/F/Robot.twin:q"]["v"] == [42.0, -42.0, 0.5]
    assert state["/F/Robot.twin:phase"]["v"] == "place"
    assert historian.state_at(999.0) == {}  # before anything was recorded
    last = historian.resample("/F/Belt.twin:speed", 1000.0, 1010.0, 5.0, how="last")
    np.testing.assert_allclose(last["values"], [0.05, 0.10])
    with pytest.raises(TwinError, match="resample needs a numeric scalar signal; /F/Robot.twin:q is float of width 3"):
        historian.resample("/F/Robot.twin:q", 1000.0, 1010.0, 5.0)
    mean = historian.resample("/F/Belt.twin:speed", 1000.0, 1009.0, 5.0, how="mean")
    np.testing.assert_allclose(mean["values"], [0.02, 0.07])


def test_csv_export_and_retention(filled, tmp_path):
    historian, _ = filled
    path = tmp_path / "out.csv"
    assert historian.export_csv(path, keys=["/F/Robot.twin:q"], start=1000.0, end=1001.0) == 2
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["key", "time", "server_time", "status", "quality", "value"]
    assert rows[2][0] == "/F/Robot.twin:q" and rows[2][5] == "1.0 -1.0 0.5"
    with pytest.raises(TwinError, match="no signal '/F/Nope.twin:x'"):
        historian.export_csv(path, keys=["/F/Nope.twin:x"])
    historian.retention = Retention(raw_s=50.0, step_s=10.0)
    historian.maintain(now=1100.0)  # samples before 1050 thinned to one per 10 s per signal
    thinned = historian.series("/F/Belt.twin:speed", 1000.0, 1049.0)
    np.testing.assert_array_equal(thinned["times"], [1009.0, 1019.0, 1029.0, 1039.0, 1049.0])
    assert len(historian.series("/F/Belt.twin:speed", 1050.0, 1099.0)["times"]) == 50  # raw kept
    historian.retention = Retention(keep_s=30.0)
    historian.maintain(now=1100.0)
    assert historian.series("/F/Belt.twin:speed", 0.0, 1e12)["times"][0] == 1070.0


def test_parquet_export_read_back_by_pyarrow(filled, tmp_path):
    """Read by an independent reader (Arrow): every column typed, arrays as lists, text as strings."""
    import pyarrow.parquet as pq

    historian, _ = filled
    path = tmp_path / "out.parquet"
    assert historian.export_parquet(path, start=1010.0, end=1011.0) == 6
    table = pq.read_table(path).to_pylist()
    assert [row["key"] for row in table] == ["/F/Belt.twin:speed"] * 2 + ["/F/Robot.twin:phase"] * 2 + \
        ["/F/Robot.twin:q"] * 2
    speed, _, phase, _, joints, _ = table
    assert speed["time"] == 1010.0 and speed["value"] == pytest.approx(0.10) and speed["quality"] == "good"
    assert speed["values"] is None and speed["text"] is None and speed["status"] == 0
    assert phase["text"] == "place" and phase["value"] is None
    assert joints["values"] == [10.0, -10.0, 0.5] and joints["value"] is None
    assert historian.export_parquet(path, keys=["/F/Belt.twin:speed"]) == 101  # 100 values and the stale mark
    assert pq.read_table(path).column("quality").to_pylist()[-1] == "stale"
    odd = tmp_path / "it's here.parquet"  # a quote in the path must not break the statement
    assert historian.export_parquet(odd, keys=["/F/Robot.twin:q"], start=1000.0, end=1000.0) == 1
    with pytest.raises(TwinError, match="no signal"):
        historian.export_parquet(path, keys=["/F/Nope.twin:x"])


WRITER = """
import sys, time
from twin.core.cache import RuntimeCache
from twin.history.store import Historian
cache = RuntimeCache()
row = cache.add_signal("/F/Counter", "twin:count")
Historian(sys.argv[1], cache, flush_s=0.25).start()
i = 0
while True:
    i += 1
    cache.write_signal(row, float(i), source_time=time.time())
    if i == 1:
        print("writing", flush=True)
    time.sleep(0.001)
"""


def test_sigkill_loses_at_most_the_last_second(tmp_path):
    path = tmp_path / "killed.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    time.sleep(3.0)
    killed_at = time.time()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    with duckdb.connect(str(path)) as db:  # replays the write-ahead log the killed process left
        count, last, first_value, last_value = db.execute(
            "SELECT count(*), max(time), min(value), max(value) FROM samples").fetchone()
    assert killed_at - last < 1.0, f"the last stored update is {killed_at - last:.2f} s older than the kill"
    assert first_value == 1.0 and last_value == count  # nothing before it is missing
    assert count > 1000


def test_retention_from_the_command_line(capsys):
    from twin.cli import history_retention, main

    assert history_retention(2.0, 60.0, 0.0) == Retention(raw_s=172_800.0, step_s=60.0, keep_s=None)
    assert main(["serve", "nowhere.usda", "--history", "h.duckdb", "--history-keep-days", "0.5"]) == 2
    assert "keep days 0.5 >= raw days" in capsys.readouterr().err


def test_arrays_are_stored_compressed_and_read_back_bit_for_bit(tmp_path):
    """Part poses with NaN slots pack to a fraction of their doubles; noise does not pack and stays raw; both
    come back exactly, through series, state_at and the Parquet export."""
    import pyarrow.parquet as pq

    cache = RuntimeCache()
    poses = cache.add_signal("/F/Line", "twin:physics:partPoses", width=553)
    noise = cache.add_signal("/F/Line", "twin:noise", width=64)
    historian = Historian(tmp_path / "history.db", cache)
    rng = np.random.default_rng(7)
    written = []
    for step in range(20):
        value = np.full(553, np.nan)
        value[:84] = rng.normal(size=84)  # 12 parts present, the other 67 slots empty
        written.append((value, rng.normal(size=64)))
        cache.write_signal(poses, value, source_time=1000.0 + step)
        cache.write_signal(noise, written[-1][1], source_time=1000.0 + step)
    assert historian.flush() == 40
    sizes = dict(historian._query("SELECT signal, max(octet_length(data)) FROM samples GROUP BY signal"))
    assert sizes[historian._signal("/F/Line.twin:physics:partPoses")[0]] < 553 * 8 / 3
    assert sizes[historian._signal("/F/Line.twin:noise")[0]] == 64 * 8  # incompressible: raw
    stored = historian.series("/F/Line.twin:physics:partPoses", 0, 2000)["values"]
    np.testing.assert_array_equal(stored, np.array([pose for pose, _ in written]))
    np.testing.assert_array_equal(historian.series("/F/Line.twin:noise", 0, 2000)["values"],
                                  np.array([n for _, n in written]))
    at = historian.state_at(1005.5)["/F/Line.twin:physics:partPoses"]["v"]
    np.testing.assert_array_equal(np.array(at, np.float64), written[5][0])
    historian.export_parquet(tmp_path / "out.parquet", keys=["/F/Line.twin:physics:partPoses"])
    exported = pq.read_table(tmp_path / "out.parquet").column("values").to_pylist()
    np.testing.assert_array_equal(np.array(exported, np.float64), np.array([pose for pose, _ in written]))
    historian.close()


def test_a_bounded_signal_keeps_the_last_sample_of_each_interval_and_every_quality_change(tmp_path):
    cache = RuntimeCache()
    poses = cache.add_signal("/F/Line", "twin:poses", width=7)
    speed = cache.add_signal("/F/Belt", "twin:speed")
    counts = [cache.add_signal("/F/Station", f"twin:count{i}") for i in range(2)]
    historian = Historian(tmp_path / "history.db", cache, min_interval_s={"/F/Line.twin:poses": 0.1,
                                                                          "/F/Station.twin:count1": 0.1})
    times = 1000.0 + 0.01 + 0.05 * np.arange(40)  # 20 Hz for 2 s, never on an interval's edge
    for i, when in enumerate(times):
        cache.write_signal(poses, [i, 0, 0, 0, 0, 0, 1], source_time=when)
        cache.write_signal(speed, float(i), source_time=when)  # not bounded: every sample kept
        cache.write_scalars(counts, [i, i], source_time=when)  # a batch: count1 bounded, count0 not
    historian.flush()
    kept = historian.series("/F/Line.twin:poses", 0, 2000)
    # the last sample of each of the first 19 intervals (odd i); the 20th interval's last is held back
    np.testing.assert_array_equal(kept["values"][:, 0], np.arange(1, 39, 2))
    assert len(historian.series("/F/Belt.twin:speed", 0, 2000)["times"]) == 40
    assert len(historian.series("/F/Station.twin:count0", 0, 2000)["times"]) == 40
    np.testing.assert_array_equal(historian.series("/F/Station.twin:count1", 0, 2000)["values"],
                                  np.arange(1, 39, 2))  # the batch's bounded row, thinned the same way
    cache.write_signal(poses, [40, 0, 0, 0, 0, 0, 1], source_time=times[-1] + 0.01)  # same interval as i = 39
    cache.mark_status([poses], UNCERTAIN_LAST_USABLE_VALUE)  # a quality change: never thinned away
    historian.stop()  # at stop, the held samples are written
    kept = historian.series("/F/Line.twin:poses", 0, 1e12)
    np.testing.assert_array_equal(kept["values"][19:, 0], [40, 40])  # i = 39 was replaced by 40 in its interval
    assert kept["status"][-2] == 0 and kept["status"][-1] == UNCERTAIN_LAST_USABLE_VALUE
    assert historian.series("/F/Station.twin:count1", 0, 2000)["values"][-1] == 39
    historian.close()


def test_a_quiet_bounded_signal_is_written_once_its_interval_has_passed(tmp_path):
    cache = RuntimeCache()
    level = cache.add_signal("/F/Tank", "twin:level")
    historian = Historian(tmp_path / "history.db", cache, min_interval_s={"/F/Tank.twin:level": 0.3})
    cache.write_signal(level, 1.0)
    cache.write_signal(level, 2.0)
    assert historian.flush() == 0  # the interval is still open: a later sample may replace it
    time.sleep(0.35)
    assert historian.flush() == 1
    assert historian.series("/F/Tank.twin:level", 0, 1e12)["values"].tolist() == [2.0]
    historian.close()


def test_closing_without_stopping_writes_what_is_held_back_and_journaled(tmp_path):
    cache = RuntimeCache()
    level = cache.add_signal("/F/Tank", "twin:level")
    speed = cache.add_signal("/F/Belt", "twin:speed")
    historian = Historian(tmp_path / "history.db", cache, min_interval_s={"/F/Tank.twin:level": 60.0})
    cache.write_signal(level, 1.0)
    assert historian.flush() == 0  # held back for its interval
    cache.write_signal(level, 2.0)
    cache.write_signal(speed, 0.5)  # journaled, never flushed
    historian.close()
    reopened = Historian(tmp_path / "history.db", RuntimeCache())
    assert reopened.series("/F/Tank.twin:level", 0, 1e12)["values"].tolist() == [2.0]
    assert reopened.series("/F/Belt.twin:speed", 0, 1e12)["values"].tolist() == [0.5]
    reopened.close()
