"""The historian: every signal update, kept in an embedded SQLite database (WAL), written off the hot path.

The runtime cache keeps only the latest value of each signal. While a historian is attached, the cache
also appends every update to a journal (one list append under the lock it already holds); a writer
thread swaps the journal out every `flush_s` and inserts it in one transaction. WAL mode makes each
commit durable against the process being killed (the OS has the pages), so a SIGKILL loses at most the
last `flush_s` of updates. Why SQLite and not DuckDB, measured: docs/history.md and bench/history.py.

Queries: a signal's raw values over a range, resampled values, the whole twin's state at an instant
(one index seek per signal), and CSV export.
"""

from __future__ import annotations

import csv
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin.cache import RuntimeCache, quality_name
from twin.errors import TwinError

SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, width INTEGER NOT NULL,
                                    unit TEXT NOT NULL, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (signal INTEGER NOT NULL, time REAL NOT NULL, server_time REAL,
                                    received REAL NOT NULL, status INTEGER NOT NULL, value REAL, data BLOB);
CREATE INDEX IF NOT EXISTS samples_by_signal_time ON samples (signal, time);
"""


@dataclass(frozen=True)
class Retention:
    """Keep raw samples for `raw_s`, then one per `step_s` per signal (the last of each step) until `keep_s`."""

    raw_s: float | None = None  # None: keep raw samples forever
    step_s: float = 60.0
    keep_s: float | None = None  # None: keep thinned samples forever


class Historian:
    def __init__(self, path: str | Path, cache: RuntimeCache, *, flush_s: float = 0.25,
                 retention: Retention | None = None):
        self.path = Path(path)
        self.cache = cache
        self.flush_s = flush_s
        self.retention = retention or Retention()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + SCHEMA)
        self._db_lock = threading.Lock()
        self._ids: dict[int, int] = {}  # cache row -> signals.id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.inserted = 0
        self.last_maintenance = 0.0
        with cache.lock:
            if cache.journal is None:
                cache.journal = []

    # ------------------------------------------------------------------ writing
    def start(self) -> Historian:
        self._thread = threading.Thread(target=self._run, name="twin-historian", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Write what is left and stop listening."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()
        with self.cache.lock:
            self.cache.journal = None

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()
            if time.time() - self.last_maintenance > 60.0:
                self.maintain()

    def flush(self) -> int:
        """Insert every update journaled since the last flush, in one transaction; returns how many."""
        cache = self.cache
        with cache.lock:
            batch = cache.journal or []
            if cache.journal is not None:
                cache.journal = []
        if not batch:
            return 0
        rows: list[tuple] = []
        for entry in batch:
            row, value, status, source_time, server_time, received = entry
            if isinstance(row, np.ndarray):  # a batch from write_scalars
                ids = [self._signal_id(int(r)) for r in row]
                rows.extend(zip(ids, source_time.tolist(), server_time.tolist(), [received] * len(ids),
                                [int(status)] * len(ids), value.tolist(), [None] * len(ids), strict=True))
                continue
            scalar, data = _encode(value)
            rows.append((self._signal_id(row), float(source_time), float(server_time), float(received),
                         int(status), scalar, data))
        with self._db_lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        self.inserted += len(rows)
        return len(rows)

    def _signal_id(self, row: int) -> int:
        found = self._ids.get(row)
        if found is None:
            info = self.cache.signals[row]
            with self._db_lock:
                self._db.execute("INSERT OR IGNORE INTO signals (key, width, unit, kind) VALUES (?, ?, ?, ?)",
                                 (info.key, info.width, info.unit, info.kind))
                found = self._db.execute("SELECT id FROM signals WHERE key = ?", (info.key,)).fetchone()[0]
            self._ids[row] = found
        return found

    def maintain(self, now: float | None = None) -> None:
        """Apply the retention: thin raw samples older than `raw_s`, drop everything older than `keep_s`."""
        now = time.time() if now is None else now
        self.last_maintenance = now
        retention = self.retention
        with self._db_lock:
            if retention.raw_s is not None:
                cutoff = now - retention.raw_s
                self._db.execute(
                    "DELETE FROM samples WHERE time < ? AND rowid NOT IN (SELECT max(rowid) FROM samples "
                    "WHERE time < ? GROUP BY signal, CAST(time / ? AS INTEGER))", (cutoff, cutoff, retention.step_s))
            if retention.keep_s is not None:
                self._db.execute("DELETE FROM samples WHERE time < ?", (now - retention.keep_s,))

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        with self._db_lock:
            return self._db.execute(sql, parameters).fetchall()

    def _signal(self, key: str) -> tuple[int, int, str]:
        found = self._query("SELECT id, width, kind FROM signals WHERE key = ?", (key,))
        if not found:
            raise TwinError(f"the historian has no signal {key!r}")
        return found[0]

    def series(self, key: str, start: float, end: float) -> dict:
        """Raw samples of `key` with start <= time <= end: times, values, status codes (numpy arrays).

        Values are float64 (n,) for scalars, (n, width) for arrays, a list of strings for text signals.
        """
        signal, width, kind = self._signal(key)
        rows = self._query("SELECT time, status, value, data FROM samples WHERE signal = ? AND time BETWEEN ? AND ? "
                           "ORDER BY time", (signal, start, end))
        times = np.array([r[0] for r in rows], np.float64)
        status = np.array([r[1] for r in rows], np.uint32)
        return {"key": key, "times": times, "status": status, "values": _decode_values(rows, width, kind)}

    def resample(self, key: str, start: float, end: float, step: float, how: str = "last") -> dict:
        """One value per `step` from `start` (bins start inclusive): the last sample at or before each bin's
        end ("last", carried forward), or the mean of the bin's samples ("mean"; NaN for an empty bin)."""
        if step <= 0 or end < start:
            raise TwinError(f"resample needs step > 0 and end >= start (got step {step}, {start}..{end})")
        if how not in ("last", "mean"):
            raise TwinError(f"resample how must be 'last' or 'mean', got {how!r}")
        edges = np.arange(start, end + step * 0.5, step)
        if how == "last":
            before = self.state_at(start, keys=[key]).get(key)
            raw = self.series(key, start, end)
            values = np.asarray(raw["values"], np.float64)
            times = raw["times"]
            index = np.searchsorted(times, edges[1:] if len(edges) > 1 else edges, side="right") - 1
            first = before["v"] if before and isinstance(before["v"], float) else math.nan
            out = np.where(index >= 0, values[np.clip(index, 0, None)] if len(values) else math.nan, first)
            return {"key": key, "times": edges[1:] if len(edges) > 1 else edges, "values": out}
        raw = self.series(key, start, end)
        values = np.asarray(raw["values"], np.float64)
        bins = np.clip(((raw["times"] - start) // step).astype(np.int64), 0, max(len(edges) - 2, 0))
        sums = np.bincount(bins, values, minlength=max(len(edges) - 1, 1))
        counts = np.bincount(bins, minlength=max(len(edges) - 1, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        return {"key": key, "times": edges[:-1] if len(edges) > 1 else edges, "values": means}

    def state_at(self, instant: float, keys: list[str] | None = None) -> dict[str, dict]:
        """Every signal's value as it was at `instant`: {key: {"v", "s", "q", "t"}} (one index seek each)."""
        where = "" if keys is None else f"WHERE g.key IN ({','.join('?' * len(keys))})"
        rows = self._query(
            "SELECT g.key, g.width, g.kind, s.time, s.status, s.value, s.data FROM signals g JOIN samples s ON "
            "s.rowid = (SELECT rowid FROM samples WHERE signal = g.id AND time <= ? ORDER BY time DESC LIMIT 1) "
            + where, (instant, *(keys or ())))
        state = {}
        for key, width, kind, when, status, value, data in rows:
            decoded = _decode_values([(when, status, value, data)], width, kind)
            state[key] = {"v": decoded[0].tolist() if isinstance(decoded, np.ndarray) and width > 1
                          else (decoded[0] if kind == "text" else float(decoded[0])),
                          "s": int(status), "q": quality_name(status), "t": when}
        return state

    def export_csv(self, path: str | Path, keys: list[str] | None = None, start: float = -math.inf,
                   end: float = math.inf) -> int:
        """Samples as CSV (key, time, server_time, status, quality, value); arrays as space-separated numbers."""
        names = keys or [row[0] for row in self._query("SELECT key FROM signals ORDER BY key")]
        written = 0
        with open(path, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["key", "time", "server_time", "status", "quality", "value"])
            for key in names:
                signal, width, kind = self._signal(key)
                rows = self._query("SELECT time, server_time, status, value, data FROM samples WHERE signal = ? "
                                   "AND time BETWEEN ? AND ? ORDER BY time",
                                   (signal, max(start, -1e300), min(end, 1e300)))
                values = _decode_values([(r[0], r[2], r[3], r[4]) for r in rows], width, kind)
                for row, value in zip(rows, values, strict=True):
                    shown = " ".join(repr(float(v)) for v in value) if width > 1 and kind != "text" else value
                    out.writerow([key, repr(row[0]), repr(row[1]), row[2], quality_name(row[2]), shown])
                    written += 1
        return written

    def close(self) -> None:
        with self._db_lock:
            self._db.close()


def _encode(value) -> tuple[float | None, bytes | None]:
    if isinstance(value, str):
        return None, value.encode()
    if isinstance(value, tuple):
        return None, np.asarray(value, np.float64).tobytes()
    return (None if value is None else float(value)), None


def _decode_values(rows: list[tuple], width: int, kind: str):
    """Values of (time, status, value, data) rows: float64 (n,), (n, width), or a list of strings."""
    if kind == "text":
        return [None if r[3] is None else bytes(r[3]).decode() for r in rows]
    if width == 1:
        return np.array([math.nan if r[2] is None else r[2] for r in rows], np.float64)
    out = np.full((len(rows), width), math.nan)
    for i, r in enumerate(rows):
        if r[3] is not None:
            out[i] = np.frombuffer(r[3], np.float64)
    return out
