import math

import numpy as np
import pytest

from twin.core.cache import (
    BAD_WAITING_FOR_INITIAL_DATA,
    GOOD,
    UNCERTAIN_LAST_USABLE_VALUE,
    RuntimeCache,
    quality_name,
)


def test_signals_start_bad_and_take_values_with_times():
    cache = RuntimeCache()
    row = cache.add_signal("/Factory/C1", "twin:speed", unit="m/s")
    assert cache.status[row] == BAD_WAITING_FOR_INITIAL_DATA and math.isnan(cache.signal_value(row))
    cache.write_signal(row, 0.35, source_time=100.0, server_time=101.0)
    assert cache.signal_value(row) == 0.35
    assert (cache.source_time[row], cache.server_time[row], cache.status[row]) == (100.0, 101.0, GOOD)
    assert cache.find_signal("/Factory/C1.twin:speed").row == row


def test_array_signals_are_columns_of_their_own_width():
    cache = RuntimeCache()
    a = cache.add_signal("/R1", "twin:jointPositions", width=6)
    b = cache.add_signal("/R2", "twin:jointPositions", width=7)
    cache.write_signal(a, np.arange(6))
    cache.write_signal(b, np.arange(7) * 2)
    assert cache.signal_value(a).tolist() == list(range(6))
    assert cache.signal_value(b).tolist() == [2 * i for i in range(7)]
    with pytest.raises(ValueError, match=r"/R1.twin:jointPositions holds 6 value\(s\), got 5"):
        cache.write_signal(a, np.zeros(5))
    with pytest.raises(ValueError, match="registered twice with widths 6 and 3"):
        cache.add_signal("/R1", "twin:jointPositions", width=3)


def test_changed_since_a_version_coalesces_many_writes():
    cache = RuntimeCache()
    rows = [cache.add_signal(f"/S{i}", "twin:v") for i in range(5)]
    seen = cache.version
    for _ in range(100):
        cache.write_signal(rows[1], 1.0)
    cache.write_signal(rows[3], 3.0)
    assert cache.changed_signals(seen).tolist() == [1, 3]
    assert cache.changed_signals(cache.version).tolist() == []


def test_stale_marking_keeps_the_value():
    cache = RuntimeCache()
    row = cache.add_signal("/S", "twin:v")
    cache.write_signal(row, 7.0)
    cache.mark_status([row], UNCERTAIN_LAST_USABLE_VALUE)
    assert cache.signal_value(row) == 7.0 and quality_name(cache.status[row]) == "stale"
    assert quality_name(0x40000000) == "uncertain" and quality_name(0x80340000) == "bad"


def test_unchanged_transforms_keep_their_version():
    cache = RuntimeCache()
    rows = np.array([cache.add_transform(f"/L{i}") for i in range(3)])
    moved = np.tile(np.eye(4), (3, 1, 1))
    moved[2, 0, 3] = 1.0
    before = cache.version
    cache.write_transforms(rows, moved)
    assert cache.changed_transforms(before).tolist() == [2]


def test_text_signals_and_bad_paths():
    cache = RuntimeCache()
    row = cache.add_signal("/R", "twin:phase", kind="text")
    cache.write_signal(row, "to_pick")
    assert cache.signal_value(row) == "to_pick"
    with pytest.raises(ValueError, match="must be absolute"):
        cache.add_signal("R", "twin:phase")
    with pytest.raises(KeyError, match="no signal /R.twin:nothing"):
        cache.signal_row("/R", "twin:nothing")


def test_write_scalars_updates_many_rows_with_one_version():
    from twin.core.cache import RuntimeCache

    cache = RuntimeCache()
    rows = [cache.add_signal(f"/F/S{i}", "twin:v") for i in range(5)]
    wide = cache.add_signal("/F/W", "twin:w", width=3)
    before = cache.version
    cache.write_scalars(rows[1:4], [1.0, 2.0, 3.0], source_time=12.5)
    assert cache.version == before + 1
    assert [cache.signal_value(r) for r in rows[1:4]] == [1.0, 2.0, 3.0]
    assert list(cache.changed_signals(before)) == rows[1:4]
    assert cache.source_time[rows[2]] == 12.5 and cache.status[rows[2]] == 0
    import pytest

    with pytest.raises(ValueError, match="width 1"):
        cache.write_scalars([wide], [1.0])


def test_state_names_attach_to_scalar_numeric_rows_and_renew_the_schema():
    cache = RuntimeCache()
    row = cache.add_signal("/F/Press", "twin:state", kind="int")
    schema = cache.schema
    assert cache.add_signal("/F/Press", "twin:state", labels={0: "idle", 4: "down"}) == row
    assert cache.signals[row].labels == {0: "idle", 4: "down"} and cache.schema == schema + 1
    cache.add_signal("/F/Press", "twin:state", labels={0: "idle", 4: "down"})  # the same names: nothing new
    assert cache.schema == schema + 1
    hash(cache.signals[row])  # still a value record
    with pytest.raises(ValueError, match="state names need a scalar numeric signal"):
        cache.add_signal("/F/Robot", "twin:joints", width=6, labels={0: "a"})
    text = cache.add_signal("/F/Press", "twin:recipe", kind="text")
    with pytest.raises(ValueError, match="state names need a numeric signal"):
        cache.add_signal("/F/Press", "twin:recipe", labels={0: "a"})
    assert cache.signals[text].labels is None
