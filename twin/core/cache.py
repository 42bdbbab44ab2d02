"""The runtime cache: the twin's hot path, flat numpy columns keyed by prim.

Live data never touches USD on its way in. Connectors write signal values here,
the simulation writes transforms here, and the stream and the USD live layer read
from here. Every write stamps the rows it touched with a new version number, so a
reader asks "what changed since version v" with one vectorised comparison; slow
readers therefore coalesce changes instead of queueing them.

Three tables:
- signals: one row per (prim path, attribute); `width` float64 values per row
  (1 for scalars, n for arrays such as a robot's joint positions), an OPC-UA
  status code, source and server timestamps, and a text column for strings.
- transforms: one row per prim whose local 4x4 transform is live.
- instances: named sets of transient objects (parts on a line), each a fixed
  capacity of 4x4 world transforms plus an `active` mask.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

GOOD = 0  # OPC-UA StatusCode Good
BAD_WAITING_FOR_INITIAL_DATA = 0x80320000
UNCERTAIN_LAST_USABLE_VALUE = 0x40900000  # what stale data is marked with


def quality_name(status: int) -> str:
    """'good', 'uncertain' or 'bad' (the OPC-UA severity), or 'stale': the last value of a lost source."""
    if int(status) == UNCERTAIN_LAST_USABLE_VALUE:
        return "stale"
    severity = (int(status) >> 30) & 0b11
    return {0: "good", 1: "uncertain"}.get(severity, "bad")


def quality_codes(status: np.ndarray) -> np.ndarray:
    """`quality_name` for many statuses at once, as codes: 0 good, 1 uncertain, 2 bad, 3 stale."""
    status = np.asarray(status)
    severity = (status >> 30) & 0b11
    codes = np.where(severity == 0, 0, np.where(severity == 1, 1, 2)).astype(np.uint8)
    codes[status == UNCERTAIN_LAST_USABLE_VALUE] = 3
    return codes


def state_name(labels: dict[int, str] | None, code: float) -> str | None:
    """The name of a state code in `labels` (a binding's enum map); None for a code without one, or NaN."""
    if not labels or not math.isfinite(code):
        return None
    return labels.get(int(code))


def signal_key(prim: str, attr: str) -> str:
    """A signal's name is its USD property path, e.g. '/Factory/Line/Conveyor1.twin:speed'."""
    return f"{prim}.{attr}"


@dataclass(frozen=True)
class SignalInfo:
    row: int
    prim: str
    attr: str
    width: int
    unit: str
    kind: str  # "float", "int", "bool" or "text"
    # state names of a scalar signal's codes (a binding's enum map); not part of the record's identity
    labels: dict[int, str] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return signal_key(self.prim, self.attr)


class RuntimeCache:
    """Columnar live state. Register rows at start-up, then write and read by row index."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.version = 0
        self.schema = 0  # bumped when a row or instance set is added (or a row gets state names)
        # Every signal update in arrival order, while a historian listens (twin/history.py); the cache
        # itself keeps only the latest value, which is all the stream and the simulation need.
        self.journal: list | None = None
        # signals
        self.signals: list[SignalInfo] = []
        self._signal_rows: dict[tuple[str, str], int] = {}
        self.signal_offset = np.zeros(0, np.int64)
        self.signal_width = np.zeros(0, np.int64)
        self.values = np.zeros(0, np.float64)
        self.text: list[str | None] = []
        self.status = np.zeros(0, np.uint32)
        self.source_time = np.zeros(0, np.float64)
        self.server_time = np.zeros(0, np.float64)
        self.received_time = np.zeros(0, np.float64)
        self.signal_version = np.zeros(0, np.int64)
        # transforms
        self.transform_prims: list[str] = []
        self._transform_rows: dict[str, int] = {}
        self.transforms = np.zeros((0, 4, 4), np.float64)
        self.transform_version = np.zeros(0, np.int64)
        # instances
        self.instance_sets: dict[str, InstanceSet] = {}

    # ----------------------------------------------------------- registration
    def add_signal(self, prim: str, attr: str, *, width: int = 1, unit: str = "", kind: str = "float",
                   labels: dict[int, str] | None = None) -> int:
        """Register a signal (idempotent for the same prim, attribute and width); returns its row.

        `labels` names a scalar numeric signal's codes; given for a row that exists, it is attached to it
        (a new schema: a replay built before then takes them up).
        """
        if labels and (width != 1 or kind == "text"):
            raise ValueError(f"signal {signal_key(prim, attr)}: state names need a scalar numeric signal")
        if not prim.startswith("/"):
            raise ValueError(f"signal prim path must be absolute, got {prim!r}")
        if kind not in ("float", "int", "bool", "text"):
            raise ValueError(f"signal {signal_key(prim, attr)}: unknown kind {kind!r}")
        with self.lock:
            existing = self._signal_rows.get((prim, attr))
            if existing is not None:
                if self.signals[existing].width != width:
                    raise ValueError(
                        f"signal {signal_key(prim, attr)} registered twice with widths "
                        f"{self.signals[existing].width} and {width}"
                    )
                if labels and labels != self.signals[existing].labels:
                    if self.signals[existing].kind == "text":
                        raise ValueError(f"signal {signal_key(prim, attr)}: state names need a numeric signal")
                    self.signals[existing] = replace(self.signals[existing], labels=dict(labels))
                    self.schema += 1
                return existing
            row = len(self.signals)
            self.schema += 1
            self.signals.append(SignalInfo(row, prim, attr, width, unit, kind, dict(labels) if labels else None))
            self._signal_rows[(prim, attr)] = row
            self.signal_offset = np.append(self.signal_offset, self.values.size)
            self.signal_width = np.append(self.signal_width, width)
            self.values = np.append(self.values, np.full(width, math.nan))
            self.text.append(None)
            self.status = np.append(self.status, np.uint32(BAD_WAITING_FOR_INITIAL_DATA))
            self.source_time = np.append(self.source_time, math.nan)
            self.server_time = np.append(self.server_time, math.nan)
            self.received_time = np.append(self.received_time, math.nan)
            self.signal_version = np.append(self.signal_version, 0)
            return row

    def signal_row(self, prim: str, attr: str) -> int:
        try:
            return self._signal_rows[(prim, attr)]
        except KeyError:
            raise KeyError(f"no signal {signal_key(prim, attr)}") from None

    def find_signal(self, key: str) -> SignalInfo:
        """Look a signal up by its property path 'prim.attr'."""
        prim, _, attr = key.rpartition(".")
        return self.signals[self.signal_row(prim, attr)]

    def add_transform(self, prim: str, initial: np.ndarray | None = None) -> int:
        with self.lock:
            if prim in self._transform_rows:
                return self._transform_rows[prim]
            row = len(self.transform_prims)
            self.schema += 1
            self.transform_prims.append(prim)
            self._transform_rows[prim] = row
            matrix = np.eye(4) if initial is None else np.asarray(initial, np.float64).reshape(1, 4, 4)
            self.transforms = np.concatenate([self.transforms, matrix.reshape(1, 4, 4)])
            self.transform_version = np.append(self.transform_version, 0)
            return row

    def transform_row(self, prim: str) -> int:
        try:
            return self._transform_rows[prim]
        except KeyError:
            raise KeyError(f"no live transform for prim {prim}") from None

    def add_instance_set(self, name: str, capacity: int) -> InstanceSet:
        with self.lock:
            if name not in self.instance_sets:
                self.schema += 1
                self.instance_sets[name] = InstanceSet(name, capacity)
            return self.instance_sets[name]

    # ----------------------------------------------------------------- writes
    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def write_signal(
        self,
        row: int,
        value,
        *,
        status: int = GOOD,
        source_time: float | None = None,
        server_time: float | None = None,
        label: str | None = None,
    ) -> None:
        """Store one update. Numbers and arrays go to `values`; strings to `text`.

        A bad status with no value keeps the last value (the reader sees the quality).
        `label` names a numeric code (an enum's state name) and is kept in `text` beside it.
        """
        info = self.signals[row]
        with self.lock:
            version = self._next_version()
            if value is not None:
                if isinstance(value, str):
                    self.text[row] = value
                elif type(value) is float and info.width == 1:  # the common case, without an array
                    self.values[self.signal_offset[row]] = value
                    self.text[row] = label
                else:
                    start = self.signal_offset[row]
                    array = np.asarray(value, dtype=np.float64).ravel()
                    if array.size != info.width:
                        raise ValueError(
                            f"signal {info.key} holds {info.width} value(s), got {array.size}"
                        )
                    self.values[start : start + info.width] = array
                    self.text[row] = label
            self.status[row] = status
            now = time.time()
            self.source_time[row] = now if source_time is None else source_time
            self.server_time[row] = now if server_time is None else server_time
            self.received_time[row] = now
            self.signal_version[row] = version
            if self.journal is not None:
                self.journal.append((row, self._current(row), status, self.source_time[row],
                                     self.server_time[row], now))

    def _current(self, row: int):
        """The row's value as the journal keeps it: a float, a tuple of floats, or a string (text kinds)."""
        info = self.signals[row]
        if info.kind == "text":
            return self.text[row]
        start = self.signal_offset[row]
        return float(self.values[start]) if info.width == 1 else tuple(self.values[start:start + info.width])

    def write_scalars(self, rows, values, *, status: int = GOOD, source_time: float | None = None) -> None:
        """Store one update for many scalar (width 1, numeric) signals at once: one lock, one version.

        The batched path for producers that update thousands of signals per tick (simulations,
        benchmarks); per-row conversions stay out of the loop.
        """
        rows = np.asarray(rows, np.int64)
        with self.lock:
            if rows.size == 0:
                return
            if np.any(self.signal_width[rows] != 1):
                raise ValueError("write_scalars takes only signals of width 1")
            now = time.time()
            self.values[self.signal_offset[rows]] = np.asarray(values, np.float64)
            self.status[rows] = status
            self.source_time[rows] = now if source_time is None else source_time
            self.server_time[rows] = self.source_time[rows]
            self.received_time[rows] = now
            self.signal_version[rows] = self._next_version()
            if self.journal is not None:  # one entry for the batch: the historian expands it
                self.journal.append((rows.copy(), self.values[self.signal_offset[rows]].copy(), status,
                                     self.source_time[rows].copy(), self.server_time[rows].copy(), now))

    def mark_status(self, rows, status: int) -> None:
        """Set the status of many signals at once (stale after a lost connection), keeping values."""
        with self.lock:
            rows = np.asarray(rows, np.int64)
            if rows.size:
                self.status[rows] = status
                self.signal_version[rows] = self._next_version()
                if self.journal is not None:  # a quality change is an update too (the value stays)
                    now = time.time()
                    for row in rows:
                        self.journal.append((int(row), self._current(int(row)), status, now, now, now))

    def write_transforms(self, rows: np.ndarray, matrices: np.ndarray, *, only_changed: bool = True) -> None:
        """Store local 4x4 transforms; unchanged ones keep their version so deltas stay small."""
        rows = np.asarray(rows, np.int64)
        matrices = np.asarray(matrices, np.float64).reshape(-1, 4, 4)
        with self.lock:
            if only_changed:
                moved = np.any(np.abs(self.transforms[rows] - matrices) > 1e-7, axis=(1, 2))
                rows, matrices = rows[moved], matrices[moved]
            if rows.size:
                self.transforms[rows] = matrices
                self.transform_version[rows] = self._next_version()

    def write_instances(self, name: str, transforms: np.ndarray, active: np.ndarray) -> None:
        """Replace an instance set's transforms and active mask (bumps its version if anything moved)."""
        instances = self.instance_sets[name]
        with self.lock:
            if np.array_equal(instances.active, active) and np.allclose(
                instances.transforms[active], np.asarray(transforms)[active], atol=1e-7
            ):
                return
            instances.write(transforms, active, self._next_version())

    # ------------------------------------------------------------------ reads
    def signal_value(self, row: int):
        """The current value: a float, a numpy array for array signals, or a string."""
        info = self.signals[row]
        if info.kind == "text":
            return self.text[row]
        start = self.signal_offset[row]
        if info.width == 1:
            return float(self.values[start])
        return self.values[start : start + info.width].copy()

    def signal_values(self, row: int) -> np.ndarray:
        """A view of the row's float64 values (no copy; for the simulation's hot path)."""
        start = self.signal_offset[row]
        return self.values[start : start + self.signal_width[row]]

    def changed_signals(self, since: int) -> np.ndarray:
        return np.nonzero(self.signal_version > since)[0]

    def changed_transforms(self, since: int) -> np.ndarray:
        return np.nonzero(self.transform_version > since)[0]

    def signals_of(self, prim: str) -> list[SignalInfo]:
        return [info for info in self.signals if info.prim == prim]


class InstanceSet:
    """A fixed-capacity set of transient objects (parts) with world transforms."""

    def __init__(self, name: str, capacity: int):
        self.name = name
        self.capacity = capacity
        self.transforms = np.tile(np.eye(4), (capacity, 1, 1))
        self.active = np.zeros(capacity, bool)
        self.version = 0

    def write(self, transforms: np.ndarray, active: np.ndarray, version: int) -> None:
        self.transforms[:] = transforms
        self.active[:] = active
        self.version = version
