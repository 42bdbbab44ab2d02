"""Historian: sustained insert rate of signal updates, and the time to rebuild the twin's state at an instant.

Work: 10,000 scalar signals updated at 1 Hz for one simulated hour (36 million updates), written in batches
of one second, then the state of all 10,000 signals at 20 random instants of that hour. The twin's path
is the real one: `RuntimeCache.write_scalars` journals the updates and `Historian.flush` writes them to
DuckDB (keyframes every 60 simulated seconds). The peer is the alternative the issue names, SQLite in WAL
mode with one row per update and an index on (signal, time), filled with `executemany` per batch, and its
state query is one index seek per signal. Last line: one JSON object (../shared/README.md).

    python bench/history.py [--signals 10000] [--seconds 3600] [--peer-seconds 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu  # bench/machine.py: scripts run as `python bench/NAME.py`

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twin.core.cache import RuntimeCache  # noqa: E402
from twin.history.store import Historian  # noqa: E402

START = 1_764_000_000.0
INSTANTS = 20


def machine() -> str:
    return cpu()


def twin_run(folder: Path, signals: int, seconds: int, instants: np.ndarray) -> dict:
    cache = RuntimeCache()
    rows = np.array([cache.add_signal(f"/Factory/Cell{i // 100}/Sensor{i % 100}", "twin:value")
                     for i in range(signals)])
    historian = Historian(folder / "twin.duckdb", cache)
    rng = np.random.default_rng(0)
    write_s = flush_s = 0.0
    for second in range(seconds):
        values = rng.random(signals)
        started = time.perf_counter()
        cache.write_scalars(rows, values, source_time=START + second)
        middle = time.perf_counter()
        historian.flush()
        write_s += middle - started
        flush_s += time.perf_counter() - middle
    inserted = historian.inserted
    timings = []
    for instant in instants:
        started = time.perf_counter()
        state = historian.state_at(float(instant))
        timings.append(time.perf_counter() - started)
        assert len(state) == signals
    check = historian.state_at(START + 10.5, keys=[cache.signals[rows[7]].key])
    historian.close()
    return {"inserts_per_s": inserted / (write_s + flush_s), "state_at_ms": 1000 * float(np.median(timings)),
            "state_at_ms_max": 1000 * max(timings), "inserted": inserted, "journal_s": write_s,
            "db_mb": (folder / "twin.duckdb").stat().st_size / 2**20, "check": check}


def sqlite_run(folder: Path, signals: int, seconds: int, instants: np.ndarray) -> dict:
    """The alternative the issue names: SQLite in WAL mode, one row per update, index (signal, time)."""
    import sqlite3

    db = sqlite3.connect(folder / "peer.sqlite", isolation_level=None)
    db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE samples (signal INTEGER, "
                     "time REAL, server_time REAL, received REAL, status INTEGER, value REAL); "
                     "CREATE INDEX by_signal_time ON samples (signal, time);")
    rng = np.random.default_rng(0)
    ids = list(range(signals))
    insert_s = 0.0
    for second in range(seconds):
        values = rng.random(signals)
        started = time.perf_counter()
        now = START + second
        db.execute("BEGIN")
        db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, 0, ?)",
                       zip(ids, [now] * signals, [now] * signals, [now] * signals, values.tolist(), strict=True))
        db.execute("COMMIT")
        insert_s += time.perf_counter() - started
    timings = []
    for instant in instants:
        started = time.perf_counter()
        state = db.execute("SELECT s.signal, s.value FROM (SELECT DISTINCT signal FROM samples) g JOIN samples s ON "
                           "s.rowid = (SELECT rowid FROM samples WHERE signal = g.signal AND time <= ? "
                           "ORDER BY time DESC LIMIT 1)", (float(instant),)).fetchall()
        timings.append(time.perf_counter() - started)
        assert len(state) == signals
    db.close()
    return {"inserts_per_s": signals * seconds / insert_s, "state_at_ms": 1000 * float(np.median(timings)),
            "state_at_ms_max": 1000 * max(timings),
            "db_mb": sum(p.stat().st_size for p in folder.glob("peer.sqlite*")) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=3600)
    # SQLite's insert rate falls as its index grows: a full hour would take it about 25 minutes, so the
    # peer runs the first five minutes (its rate there is an upper bound of its rate over the hour).
    parser.add_argument("--peer-seconds", type=int, default=300)
    args = parser.parse_args()
    instants = START + np.random.default_rng(1).uniform(0, args.seconds, INSTANTS)
    print(f"machine: {machine()}; {args.signals:,} signals at 1 Hz for {args.seconds:,} s "
          f"({args.signals * args.seconds:,} updates)", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TWIN_BENCH_DIR")) as folder:
        started = time.perf_counter()
        twin = twin_run(Path(folder), args.signals, args.seconds, instants)
        print(f"twin (DuckDB): {twin['inserts_per_s']:,.0f} updates/s sustained, state at an instant "
              f"{twin['state_at_ms']:.1f} ms (max {twin['state_at_ms_max']:.1f}), {twin['db_mb']:,.0f} MiB, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        peer_instants = START + np.random.default_rng(1).uniform(0, args.peer_seconds, INSTANTS)
        peer = sqlite_run(Path(folder), args.signals, args.peer_seconds, peer_instants)
        print(f"peer (SQLite WAL, {args.peer_seconds} s): {peer['inserts_per_s']:,.0f} updates/s, state at an instant "
              f"{peer['state_at_ms']:.1f} ms (max {peer['state_at_ms_max']:.1f}), {peer['db_mb']:,.0f} MiB, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    row = {"signals": args.signals, "updates": args.signals * args.seconds,
           "inserts_per_s": round(twin["inserts_per_s"]), "state_at_ms": round(twin["state_at_ms"], 1),
           "state_at_ms_max": round(twin["state_at_ms_max"], 1), "db_mib": round(twin["db_mb"]),
           "peer_updates": args.signals * args.peer_seconds,
           "peer_inserts_per_s": round(peer["inserts_per_s"]), "peer_state_at_ms": round(peer["state_at_ms"], 1),
           "peer_db_mib": round(peer["db_mb"]),
           "ratio_inserts_to_peer": round(twin["inserts_per_s"] / peer["inserts_per_s"], 2),
           "ratio_state_at_to_peer": round(peer["state_at_ms"] / twin["state_at_ms"], 2)}
    print(json.dumps({"bench": "history", "machine": machine(), "rows": [row]}))


if __name__ == "__main__":
    main()
