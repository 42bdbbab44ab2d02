"""The historian checkpoints DuckDB's write-ahead log every ~1 MB, so the rows DuckDB holds in memory until a
checkpoint stay a few MB (at DuckDB's default 16 MB the demo's memory climbed for ~50 min: bench/RESULTS.md Soak)."""

from pathlib import Path

import numpy as np

from twin.core.cache import RuntimeCache
from twin.history.store import Historian

MB = 1_000_000


def test_the_wal_is_checkpointed_before_it_grows_past_about_one_megabyte(tmp_path):
    cache = RuntimeCache()
    rows = [cache.add_signal(f"/F/M{i // 10}", f"twin:s{i % 10}") for i in range(100)]
    historian = Historian(tmp_path / "h.db", cache)
    wal = Path(f"{historian.path}.wal")
    rng = np.random.default_rng(7)
    sizes = []
    for flush in range(300):  # 60,000 rows, ~3 MB of WAL in all (the demo's 110 samples/s for 9 minutes)
        for half in (0.0, 0.5):
            cache.write_scalars(rows, rng.random(len(rows)), source_time=1000.0 + flush + half)
        historian.flush()
        sizes.append(wal.stat().st_size if wal.exists() else 0)
    written = sum(max(0, after - before) for before, after in zip([0, *sizes[:-1]], sizes, strict=True))
    assert written > 2 * MB, f"only {written} bytes of WAL: too little to pass the threshold"
    assert max(sizes) < 1.2 * MB, f"the WAL reached {max(sizes)} bytes"
    assert historian._query("SELECT count(*) FROM samples")[0][0] == historian.inserted == 300 * 200
    historian.close()
