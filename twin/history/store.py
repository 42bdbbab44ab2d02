"""The historian: every signal update, kept in an embedded DuckDB database, written off the hot path.

The runtime cache keeps only the latest value of each signal. While a historian is attached, the cache
also appends every update to a journal (one list append under the lock it already holds); a writer
thread swaps the journal out every `flush_s` and inserts it as columns in one transaction. Each commit
is in DuckDB's write-ahead log, so killing the process loses at most the last `flush_s` of updates.
Every `keyframe_s` the writer also stores the whole state, so "the state at an instant" reads one
keyframe and at most `keyframe_s` of updates, however long the history. Why DuckDB and not SQLite,
measured: docs/history.md and bench/history.py.

Wide signals cost the most: an array of poses at 20 Hz is a row of kilobytes 20 times a second. Arrays are
stored zlib-compressed (lossless; NaN slots and resting values pack well), and a signal may be recorded at a
bounded rate (`min_interval_s` per signal, a binding's `history_ms`): the last sample of each interval is
kept, and a quality change is never thinned away.

Queries: a signal's raw values over a range, resampled values, the whole twin's state at an instant,
and export to CSV and Parquet.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from twin.core.alarms import AlarmEngine, alarms_from_events
from twin.core.cache import BAD_WAITING_FOR_INITIAL_DATA, UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache, quality_name
from twin.core.errors import TwinError, UnknownSignalError

# DuckDB holds the rows committed since its last checkpoint in memory until the WAL reaches its checkpoint
# threshold. At the default 16 MB that is ~50 min of the demo's ~110 samples/s: a 30 min soak saw only the climb
# (12-47 MB/h), then a drop. At 1 MB it checkpoints every ~3 min of the demo, in the writer thread's commit: on the
# historian alone at 20x the demo's rate DuckDB's memory peaked at 10 MB instead of 16 MB; a checkpoint takes
# ~0.1 s (max 0.44 s, against 0.87 s for the rare 16 MB one), but the file holds 29 bytes a row after 2 h of the
# demo instead of 17 (bench/RESULTS.md Soak). The memory limit caps the buffer pool; queries spill beyond it.
MEMORY_LIMIT = "16MB"
CHECKPOINT_THRESHOLD = "1MB"
SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (id INTEGER PRIMARY KEY, key VARCHAR UNIQUE NOT NULL, width INTEGER NOT NULL,
                                    unit VARCHAR NOT NULL, kind VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS samples (signal INTEGER NOT NULL, time DOUBLE NOT NULL, server_time DOUBLE,
                                    received DOUBLE NOT NULL, status UBIGINT NOT NULL, value DOUBLE, data BLOB);
CREATE TABLE IF NOT EXISTS alarm_events (time DOUBLE NOT NULL, alarm BIGINT NOT NULL, rule VARCHAR NOT NULL,
                                         key VARCHAR NOT NULL, kind VARCHAR NOT NULL, event VARCHAR NOT NULL,
                                         severity VARCHAR NOT NULL,
                                         message VARCHAR NOT NULL, value VARCHAR, "user" VARCHAR,
                                         comment VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS keyframes (time DOUBLE NOT NULL, wall DOUBLE NOT NULL, signal INTEGER NOT NULL,
                                      sample_time DOUBLE NOT NULL, status UBIGINT NOT NULL, value DOUBLE, data BLOB);
"""


@dataclass(frozen=True)
class Retention:
    """Keep raw samples for `raw_s`, then one per `step_s` per signal (the last of each step) until `keep_s`."""

    raw_s: float | None = None  # None: keep raw samples forever
    step_s: float = 60.0
    keep_s: float | None = None  # None: keep thinned samples forever


class Historian:
    def __init__(self, path: str | Path, cache: RuntimeCache, *, flush_s: float = 0.5,
                 keyframe_s: float = 60.0, retention: Retention | None = None,
                 min_interval_s: Mapping[str, float] | None = None):
        """`min_interval_s`: {signal key: seconds}, signals recorded at most once per interval (the last of each)."""
        self.path = Path(path)
        self.cache = cache
        self.flush_s = flush_s
        self.keyframe_s = keyframe_s
        self.last_keyframe = -math.inf  # the source-time horizon of the last keyframe
        self.retention = retention or Retention()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = duckdb.connect(str(self.path), config={"memory_limit": MEMORY_LIMIT,
                                                              "checkpoint_threshold": CHECKPOINT_THRESHOLD})
        except duckdb.Error as error:  # most often: another twin has it open
            raise TwinError(f"{self.path}: cannot open the history store: {error}") from None
        self._db.execute(SCHEMA)
        self._db.create_function("twin_doubles", _blob_doubles, ["BLOB", "INTEGER"], "DOUBLE[]",
                                 null_handling="special")
        self._db_lock = threading.Lock()
        self._ids = np.zeros(0, np.int32)  # cache row -> signals.id (0: not registered yet)
        self._stop = threading.Event()  # set by stop(): the writer thread ends, and close() knows it has stopped
        self._thread: threading.Thread | None = None
        self.inserted = 0
        self.last_maintenance = 0.0
        self._alarms: AlarmEngine | None = None
        self._alarm_seq = 0
        self._thinning = _Thinning(cache, min_interval_s) if min_interval_s else None
        with cache.lock:
            if cache.journal is None:
                cache.journal = []

    # ------------------------------------------------------------------ writing
    def attach_alarms(self, engine: AlarmEngine) -> None:
        """Store the engine's alarm events with every flush; alarm ids continue after the stored ones."""
        self._alarms = engine
        self._alarm_seq = engine.last_seq
        engine.reserve_ids(int(self._query("SELECT coalesce(max(alarm), 0) FROM alarm_events")[0][0]))
        left_open = self.alarms_at(math.inf)  # by a run that stopped: its engine starts afresh
        if left_open:
            now = time.time()
            with self._db_lock:
                self._db.executemany(
                    "INSERT INTO alarm_events VALUES (?, ?, ?, ?, ?, 'closed', ?, ?, NULL, NULL, ?)", [
                    (now, a["id"], a["rule"], a["key"], a["kind"], a["severity"], a["message"],
                     "the twin restarted; its rules are evaluated afresh") for a in left_open])

    def start(self) -> Historian:
        self._thread = threading.Thread(target=self._run, name="twin-historian", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Write what is left (journaled, or held back by a rate bound) and stop listening."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush(final=True)
        with self.cache.lock:
            self.cache.journal = None

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()
            if time.time() - self.last_maintenance > 60.0:
                self.maintain()

    def flush(self, final: bool = False) -> int:
        """Insert every update journaled since the last flush, in one transaction; returns how many.

        A keyframe is taken when the newest source time has moved `keyframe_s` past the last keyframe's.
        Rate-bounded signals hold back the last sample of their current interval until it has passed (`final`:
        write it now, at stop).
        """
        cache = self.cache
        with cache.lock:
            batch = cache.journal or []
            if cache.journal is not None:
                cache.journal = []
            known = np.isfinite(cache.source_time)
            horizon = float(cache.source_time[known].max()) if known.any() else -math.inf
            keyframe = self._take_keyframe(horizon) if horizon - self.last_keyframe >= self.keyframe_s else None
        if self._thinning is not None:
            batch = self._thinning.thin(batch, time.time(), final)
        columns: dict[str, list] = {name: [] for name in ("signal", "time", "server_time", "received", "status",
                                                         "value")}
        blobs: list[tuple] = []  # arrays and text: few, inserted row by row
        for row, value, status, source_time, server_time, received in batch:
            if isinstance(row, np.ndarray):  # a batch from write_scalars
                count = len(row)
                columns["signal"].append(self._signal_ids(row))
                columns["time"].append(np.asarray(source_time, np.float64))
                columns["server_time"].append(np.asarray(server_time, np.float64))
                columns["received"].append(np.full(count, received))
                columns["status"].append(np.full(count, int(status), np.uint64))
                columns["value"].append(np.asarray(value, np.float64))
                continue
            scalar, data = _encode(value)
            record = (int(self._signal_ids(np.array([row]))[0]), float(source_time), float(server_time),
                      float(received), int(status))
            if data is None:
                for name, item in zip(columns, (*record, math.nan if scalar is None else scalar), strict=True):
                    columns[name].append(np.array([item]))
            else:
                blobs.append((*record, None, data))
        events = self._alarms.events_since(self._alarm_seq) if self._alarms is not None else []
        if events:
            self._alarm_seq = events[-1].seq
        inserted = 0
        with self._db_lock:
            self._db.execute("BEGIN TRANSACTION")
            if events:
                self._db.executemany("INSERT INTO alarm_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                    (e.time, e.alarm, e.rule, e.key, e.kind, e.event, e.severity, e.message,
                     None if e.value is None else json.dumps(e.value), e.user, e.comment) for e in events])
            if columns["signal"]:
                journal = {name: np.concatenate(parts) for name, parts in columns.items()}  # DuckDB scans it
                self._db.execute("INSERT INTO samples SELECT signal, time, server_time, received, status, value, "
                                 "NULL FROM journal")
                inserted += len(journal["signal"])
            if blobs:
                self._db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)", blobs)
                inserted += len(blobs)
            if keyframe:
                numbers, blob_rows = keyframe
                self._db.execute("INSERT INTO keyframes SELECT time, wall, signal, sample_time, status, value, NULL "
                                 "FROM numbers")
                if blob_rows:
                    self._db.executemany("INSERT INTO keyframes VALUES (?, ?, ?, ?, ?, ?, ?)", blob_rows)
            self._db.execute("COMMIT")
        self.inserted += inserted
        return inserted

    def _take_keyframe(self, horizon: float) -> tuple[dict, list[tuple]]:
        """The whole state from the cache, called under its lock right after the journal swap, so it holds
        exactly the updates written so far: numeric signals as columns, arrays and text as rows."""
        self.last_keyframe = horizon
        cache = self.cache
        wall = time.time()
        known = np.flatnonzero((cache.status != BAD_WAITING_FOR_INITIAL_DATA) & np.isfinite(cache.source_time))
        scalar = np.array([r for r in known if cache.signal_width[r] == 1 and cache.signals[r].kind != "text"],
                          np.int64)
        numbers = {"time": np.full(len(scalar), horizon), "wall": np.full(len(scalar), wall),
                   "signal": self._signal_ids(scalar), "sample_time": cache.source_time[scalar].copy(),
                   "status": cache.status[scalar].astype(np.uint64),
                   "value": cache.values[cache.signal_offset[scalar]].copy()}
        blob_rows = []
        for r in sorted(set(known.tolist()) - set(scalar.tolist())):
            scalar_value, data = _encode(cache._current(r))
            blob_rows.append((horizon, wall, int(self._signal_ids(np.array([r]))[0]), float(cache.source_time[r]),
                              int(cache.status[r]), scalar_value, data))
        return numbers, blob_rows

    def _signal_ids(self, rows: np.ndarray) -> np.ndarray:
        """signals.id of cache rows, registering the ones not seen yet (vectorised: a flush has thousands)."""
        rows = np.asarray(rows, np.int64)
        if len(rows) and rows.max() >= len(self._ids):
            self._ids = np.concatenate([self._ids, np.zeros(rows.max() + 1 - len(self._ids), np.int32)])
        ids = self._ids[rows]
        for row in np.unique(rows[ids == 0]):
            self._ids[row] = self._signal_id(int(row))
        return self._ids[rows]

    def _signal_id(self, row: int) -> int:
        found = int(self._ids[row]) if row < len(self._ids) else 0
        if not found:
            info = self.cache.signals[row]
            with self._db_lock:
                existing = self._db.execute("SELECT id FROM signals WHERE key = ?", (info.key,)).fetchone()
                if existing is None:
                    found = self._db.execute("SELECT coalesce(max(id), 0) + 1 FROM signals").fetchone()[0]
                    self._db.execute("INSERT INTO signals VALUES (?, ?, ?, ?, ?)",
                                     (found, info.key, info.width, info.unit, info.kind))
                else:
                    found = existing[0]
            if row >= len(self._ids):
                self._ids = np.concatenate([self._ids, np.zeros(row + 1 - len(self._ids), np.int32)])
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
                    "DELETE FROM samples WHERE time < ? AND rowid NOT IN (SELECT arg_max(rowid, time) FROM samples "
                    "WHERE time < ? GROUP BY signal, floor(time / ?))", (cutoff, cutoff, retention.step_s))
            if retention.keep_s is not None:
                self._db.execute("DELETE FROM samples WHERE time < ?", (now - retention.keep_s,))
                self._db.execute("DELETE FROM keyframes WHERE time < ?", (now - retention.keep_s,))
                self._db.execute("DELETE FROM alarm_events WHERE time < ?", (now - retention.keep_s,))

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        with self._db_lock:
            return self._db.execute(sql, parameters).fetchall()

    def time_range(self) -> tuple[float | None, float | None]:
        """Source times of the first and last stored samples (None, None while the history is empty)."""
        first, last = self._query("SELECT min(time), max(time) FROM samples")[0]
        return first, last

    def _signal(self, key: str) -> tuple[int, int, str]:
        found = self._query("SELECT id, width, kind FROM signals WHERE key = ?", (key,))
        if not found:
            raise UnknownSignalError(f"the historian has no signal {key!r}")
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
        _, width, kind = self._signal(key)
        if width != 1 or kind == "text":
            raise TwinError(f"resample needs a numeric scalar signal; {key} is {kind} of width {width}: "
                            f"read its raw samples")
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
        """Every signal's value as it was at `instant`: {key: {"v", "s", "q", "t"}}.

        The latest keyframe at or before the instant, overlaid with the updates after it (and those that
        arrived after it, late, with an earlier source time): at most `keyframe_s` of history is read.
        """
        filter_keys = "" if keys is None else f"AND g.key IN ({','.join('?' * len(keys))})"
        frame = self._query("SELECT time, any_value(wall) FROM keyframes WHERE time <= ? GROUP BY time "
                            "ORDER BY time DESC LIMIT 1", (instant,))
        kt, kw = frame[0] if frame else (-math.inf, -math.inf)
        # Three ranges, each one a constant bound the store can skip row groups with: the keyframe, the
        # updates since it, and the late ones (sent before it, received after it).
        rows = self._query(
            "WITH candidates AS ("
            "  SELECT signal, sample_time AS time, status, value, data FROM keyframes WHERE time = ? "
            "  UNION ALL SELECT signal, time, status, value, data FROM samples WHERE time > ? AND time <= ? "
            "  UNION ALL SELECT signal, time, status, value, data FROM samples WHERE received > ? AND time <= ?), "
            "latest AS (SELECT signal, max(time) AS time, arg_max(status, time) AS status, "
            "  arg_max(value, time) AS value, arg_max(data, time) AS data FROM candidates GROUP BY signal) "
            "SELECT g.key, g.width, g.kind, l.time, l.status, l.value, l.data FROM latest l "
            f"JOIN signals g ON g.id = l.signal WHERE true {filter_keys}",
            (kt, kt, instant, kw, min(instant, kt), *(keys or ())))
        state = {}
        for key, width, kind, when, status, value, data in rows:
            decoded = _decode_values([(when, status, value, data)], width, kind)
            state[key] = {"v": decoded[0].tolist() if isinstance(decoded, np.ndarray) and width > 1
                          else (decoded[0] if kind == "text" else float(decoded[0])),
                          "s": int(status), "q": quality_name(status), "t": when}
        return state

    def alarm_events(self, start: float = -math.inf, end: float = math.inf, key: str | None = None) -> list[dict]:
        """Stored alarm transitions (raised, acknowledged, cleared; closed when a restart ended them) with
        start <= time <= end, in the order they happened (raises and clears carry the source time of the
        value, acknowledgements the twin's clock: the order of insertion, not of time, is the truth)."""
        rows = self._query(
            "SELECT time, alarm, rule, key, kind, event, severity, message, value, \"user\", comment "
            "FROM alarm_events WHERE time BETWEEN ? AND ? AND (? IS NULL OR key = ?) ORDER BY rowid",
            (max(start, -1e300), min(end, 1e300), key, key))
        names = ("time", "alarm", "rule", "key", "kind", "event", "severity", "message", "value", "user", "comment")
        events = [dict(zip(names, row, strict=True)) for row in rows]
        for event in events:
            event["value"] = None if event["value"] is None else json.loads(event["value"])
        return events

    def alarms_at(self, instant: float) -> list[dict]:
        """The alarms that were open (active, or not yet acknowledged) at `instant`, as the alarm list showed
        them then: the stored transitions up to the instant, through the engine's lifecycle."""
        return alarms_from_events(self.alarm_events(end=instant))

    def _export_keys(self, keys: list[str] | None) -> list[str]:
        if keys is None:
            return [row[0] for row in self._query("SELECT key FROM signals ORDER BY key")]
        for key in keys:
            self._signal(key)  # a clear error for an unknown key
        return keys

    def export_csv(self, path: str | Path, keys: list[str] | None = None, start: float = -math.inf,
                   end: float = math.inf) -> int:
        """Samples as CSV (key, time, server_time, status, quality, value); arrays as space-separated numbers."""
        written = 0
        with open(path, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["key", "time", "server_time", "status", "quality", "value"])
            for key in self._export_keys(keys):
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

    def export_parquet(self, path: str | Path, keys: list[str] | None = None, start: float = -math.inf,
                       end: float = math.inf) -> int:
        """Samples as one Parquet file (zstd), ordered by key and time, written by DuckDB without a copy
        through Python. Columns: key, time, server_time, received (Unix seconds), status (OPC-UA code),
        quality, value (scalars), values (arrays, a list of float64), text (text signals)."""
        names = self._export_keys(keys)
        if not names:
            names = [""]  # no signals yet: an empty file with the columns
        target = str(Path(path)).replace("'", "''")  # COPY takes no parameter for its target
        sql = (
            "COPY (SELECT g.key, s.time, s.server_time, s.received, s.status::UINTEGER AS status, "
            f"CASE WHEN s.status = {UNCERTAIN_LAST_USABLE_VALUE} THEN 'stale' WHEN s.status >> 30 = 0 THEN 'good' "
            "WHEN s.status >> 30 = 1 THEN 'uncertain' ELSE 'bad' END AS quality, "
            "CASE WHEN g.width = 1 AND g.kind <> 'text' THEN s.value END AS value, "
            "CASE WHEN g.width > 1 THEN twin_doubles(s.data, g.width) END AS \"values\", "
            "CASE WHEN g.kind = 'text' THEN decode(s.data) END AS text "
            "FROM samples s JOIN signals g ON g.id = s.signal "
            f"WHERE s.time BETWEEN ? AND ? AND g.key IN ({','.join('?' * len(names))}) ORDER BY g.key, s.time) "
            f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
        with self._db_lock:  # a cursor of its own: the long COPY must not hold up the flushes
            cursor = self._db.cursor()
        try:
            cursor.execute(sql, (max(start, -1e300), min(end, 1e300), *names))
            return int(cursor.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0])
        finally:
            cursor.close()

    def close(self) -> None:
        """Stop, if not stopped yet (so that nothing received is lost), and close the store."""
        if not self._stop.is_set():
            self.stop()
        with self._db_lock:
            self._db.close()


class _Thinning:
    """Keeps the last sample of each `min_interval_s` of rate-bounded signals, and every change of quality.

    A signal's samples fall in intervals of its source time (`floor(time / interval)`); each interval's last
    sample is held back until a sample of a later interval or of another status arrives, or until the interval
    has passed by the wall clock (then it is written, at most one flush late), so the final value before a
    signal goes quiet is never lost.
    """

    def __init__(self, cache: RuntimeCache, min_interval_s: Mapping[str, float]):
        self.cache = cache
        self.by_key = {key: float(seconds) for key, seconds in min_interval_s.items() if seconds > 0}
        self.interval = np.zeros(0)  # by cache row, 0: every sample; rebuilt as signals are registered
        self.held: dict[int, tuple] = {}  # row -> the interval's last journal record, not written yet

    def _intervals(self) -> np.ndarray:
        signals = self.cache.signals
        if len(self.interval) != len(signals):
            self.interval = np.array([self.by_key.get(info.key, 0.0) for info in signals])
        return self.interval

    def thin(self, batch: list, now: float, final: bool) -> list:
        """The journal records to write now, in the order given, then the held ones whose interval is over."""
        interval = self._intervals()
        out = []
        for record in batch:
            row = record[0]
            if isinstance(row, np.ndarray):  # a write_scalars batch: split off its bounded rows
                bounded = interval[row] > 0
                if not bounded.any():
                    out.append(record)
                    continue
                _, values, status, source_times, server_times, received = record
                if not bounded.all():
                    keep = ~bounded
                    out.append((row[keep], values[keep], status, source_times[keep], server_times[keep], received))
                for i in np.flatnonzero(bounded):
                    self._hold((int(row[i]), float(values[i]), status, float(source_times[i]),
                                float(server_times[i]), received), float(interval[row[i]]), out)
            elif interval[row] > 0:
                self._hold(record, float(interval[row]), out)
            else:
                out.append(record)
        for row, record in list(self.held.items()):
            if final or now - record[5] >= interval[row]:
                out.append(self.held.pop(row))
        return out

    def _hold(self, record: tuple, interval: float, out: list) -> None:
        row, _, status, source_time = record[:4]
        held = self.held.get(row)
        if held is not None and (held[2] != status or math.floor(held[3] / interval) != math.floor(source_time /
                                                                                                  interval)):
            out.append(held)
        self.held[row] = record


def _encode(value) -> tuple[float | None, bytes | None]:
    if isinstance(value, str):
        return None, value.encode()
    if isinstance(value, tuple):
        return None, _pack_doubles(np.asarray(value, np.float64))
    return (None if value is None else float(value)), None


def _pack_doubles(values: np.ndarray) -> bytes:
    """float64 bytes, zlib-compressed where that is shorter: so a blob of exactly width * 8 bytes is raw."""
    raw = values.tobytes()
    packed = zlib.compress(raw, 1)
    return packed if len(packed) < len(raw) else raw


def _unpack_doubles(data: bytes, width: int) -> np.ndarray:
    data = bytes(data)
    return np.frombuffer(data if len(data) == width * 8 else zlib.decompress(data), np.float64)


def _blob_doubles(data: bytes | None, width: int | None) -> list[float] | None:
    return None if data is None or width is None else _unpack_doubles(data, width).tolist()


def _decode_values(rows: list[tuple], width: int, kind: str):
    """Values of (time, status, value, data) rows: float64 (n,), (n, width), or a list of strings."""
    if kind == "text":
        return [None if r[3] is None else bytes(r[3]).decode() for r in rows]
    if width == 1:
        return np.array([math.nan if r[2] is None else r[2] for r in rows], np.float64)
    out = np.full((len(rows), width), math.nan)
    for i, r in enumerate(rows):
        if r[3] is not None:
            out[i] = _unpack_doubles(r[3], width)
    return out
