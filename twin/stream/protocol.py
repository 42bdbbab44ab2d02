"""The live stream's wire format: JSON control messages and binary data frames (docs/protocol.md).

A data frame carries what changed in the runtime cache between two cache versions, `base` and
`version`, for one subscription scope. A client applies a delta only on top of the version it holds;
any other base means it missed something and asks for a resync. Frames depend only on (base,
scope) and the cache, never on the client, so the server encodes each one once per tick and sends
the same bytes to every client in the same place.

Layout, little-endian. "pad" means zero bytes up to the next multiple of 8 counted from the frame's
first byte, so every float64 array can be viewed in place.
    header      (52 bytes) magic "TWIN", u16 protocol, u16 flags (1 = snapshot, 2 = replay), u32 schema, u64 base,
                u64 version, f64 server time, u32 n_transforms, u32 n_signals, u32 n_instance_sets,
                u32 text bytes
    transforms  u32 row[n], pad, f32 position[n][3], pad, i16 quaternion[n][4] (x y z w, times 32767), pad
                (the prim's local transform; rigid, as USD xforms of links and parts are)
    signals     u32 row[n], u32 status[n], u8 quality[n], pad, f32 age[n] (frame time minus source
                time, seconds; NaN: none), pad, f64 values (each signal's `width` slots in row order; text
                signals have theirs too, NaN), pad
    instances   per set: u32 set index, u32 count, f32 position[count][3], pad, i16 quaternion[count][4], pad
                (world poses)
    text        UTF-8 JSON {signal row: text}: strings, and the names of enum codes
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from twin.core.cache import RuntimeCache, quality_codes
from twin.core.transforms import matrix_to_pose

MAGIC = b"TWIN"
PROTOCOL = 1
SNAPSHOT = 1  # header flag bits
REPLAY = 2  # the frame shows a past instant (GET /api/replay/frame), not the live twin
HEADER = struct.Struct("<4sHHIQQdIIII")  # 52 bytes
QUATERNION_SCALE = 32767.0
QUALITIES = ("good", "uncertain", "bad", "stale")
MAX_SCOPE_ITEMS = 1_000
_SCOPE_ROWS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # (scope, (cache, schema)) -> rows


@dataclass(frozen=True)
class Scope:
    """What a client subscribed to: everything, the prims under some paths, or a list of signals."""

    subtrees: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()
    instances: bool = True

    @property
    def everything(self) -> bool:
        return not self.subtrees and not self.signals

    @classmethod
    def parse(cls, request: dict, cache: RuntimeCache) -> Scope:
        """From a client's subscribe message; ValueError names what is wrong."""
        subtrees = request.get("subtrees", [])
        signals = request.get("signals", [])
        if not isinstance(subtrees, list) or not all(isinstance(p, str) and p.startswith("/") for p in subtrees):
            raise ValueError("subtrees must be a list of absolute prim paths")
        if not isinstance(signals, list) or not all(isinstance(s, str) for s in signals):
            raise ValueError("signals must be a list of 'prim.attr' keys")
        known = {info.key for info in cache.signals}
        unknown = [s for s in signals if s not in known]
        if unknown:
            raise ValueError(f"unknown signals: {', '.join(unknown[:5])}")
        if len(subtrees) + len(signals) > MAX_SCOPE_ITEMS:
            raise ValueError(f"a subscription may name at most {MAX_SCOPE_ITEMS:,} subtrees and signals")
        return cls(tuple(p.rstrip("/") or "/" for p in subtrees), tuple(signals),
                   bool(request.get("instances", not subtrees and not signals)))

    def _within(self, path: str, roots: frozenset[str]) -> bool:
        """Whether `path` or one of its ancestors is a root: one set lookup per path level."""
        if "/" in roots:
            return True
        while path:
            if path in roots:
                return True
            path = path.rpartition("/")[0]
        return False

    def rows(self, cache: RuntimeCache) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(transform rows, signal rows) in scope; None means all. Cached until the cache's rows change."""
        if self.everything:
            return None, None
        key = (id(cache), cache.schema)
        cached = _SCOPE_ROWS.get((self, key))
        if cached is not None:
            return cached
        roots = frozenset(self.subtrees)
        transforms = np.array([i for i, p in enumerate(cache.transform_prims) if self._within(p, roots)], np.int64)
        wanted = set(self.signals)
        signals = np.array([i for i, info in enumerate(cache.signals)
                            if info.key in wanted or self._within(info.prim, roots)], np.int64)
        if len(_SCOPE_ROWS) > 256:
            _SCOPE_ROWS.clear()
        _SCOPE_ROWS[(self, key)] = (transforms, signals)
        return transforms, signals


def schema_message(cache: RuntimeCache, schema_id: int) -> dict:
    """Names for the indices of the binary frames; sent before every snapshot."""
    return {
        "type": "schema", "schema": schema_id,
        "transforms": list(cache.transform_prims),
        "signals": [{"key": info.key, "prim": info.prim, "attr": info.attr, "width": info.width,
                     "unit": info.unit, "kind": info.kind} for info in cache.signals],
        "instances": list(cache.instance_sets),
    }


def schema_id(cache: RuntimeCache) -> int:
    """Changes whenever rows are added: clients then need a new schema and a snapshot."""
    return cache.schema & 0xFFFFFFFF


def _pad(parts: list[bytes], size: int, align: int = 8) -> int:
    extra = (-size) % align
    if extra:
        parts.append(b"\0" * extra)
    return size + extra


def encode_frame(cache: RuntimeCache, base: int | None, scope: Scope, *,
                 replay_of: float | None = None) -> tuple[bytes | None, int]:
    """The frame from cache version `base` (None: a snapshot) to now; None when nothing in scope changed.

    `replay_of` stamps a snapshot as the replay of a past instant: the REPLAY flag, the instant as the
    frame's time, and ages counted from it (twin/replay.py)."""
    with cache.lock:
        version = cache.version
        schema = schema_id(cache)
        snapshot = base is None
        if base is not None and base >= version:
            return None, version
        transform_scope, signal_scope = scope.rows(cache)
        if base is None:
            transform_rows = np.arange(len(cache.transform_prims)) if transform_scope is None else transform_scope
            signal_rows = np.arange(len(cache.signals)) if signal_scope is None else signal_scope
        else:
            transform_rows = cache.changed_transforms(base)
            signal_rows = cache.changed_signals(base)
            if transform_scope is not None and signal_scope is not None:
                transform_rows = np.intersect1d(transform_rows, transform_scope)
                signal_rows = np.intersect1d(signal_rows, signal_scope)
        instance_sets = [(index, s) for index, s in enumerate(cache.instance_sets.values())
                         if scope.instances and (base is None or s.version > base)]
        if not snapshot and not len(transform_rows) and not len(signal_rows) and not instance_sets:
            return None, version
        transform_rows = np.asarray(transform_rows, np.int64)
        signal_rows = np.asarray(signal_rows, np.int64)
        matrices = cache.transforms[transform_rows]
        status = cache.status[signal_rows].astype(np.uint32)
        source_time = cache.source_time[signal_rows]
        offsets, widths = cache.signal_offset[signal_rows], cache.signal_width[signal_rows]
        if len(signal_rows) and np.all(widths == 1):
            values = cache.values[offsets]
        else:
            values = np.concatenate([cache.values[o:o + w] for o, w in zip(offsets, widths, strict=True)]
                                    or [np.zeros(0)])
        text = {}
        for row in signal_rows:
            if cache.text[row] is not None:
                text[str(int(row))] = cache.text[row]
        instances = [(index, s.transforms[s.active]) for index, s in instance_sets]
    now = time.time() if replay_of is None else replay_of
    flags = (SNAPSHOT if snapshot else 0) | (0 if replay_of is None else REPLAY)
    text_bytes = json.dumps(text, separators=(",", ":")).encode() if text else b""
    header = HEADER.pack(MAGIC, PROTOCOL, flags, schema, base or 0,
                         version, now, len(transform_rows), len(signal_rows), len(instances), len(text_bytes))
    parts = [header]
    size = len(header)

    def add(*chunks: bytes) -> None:
        nonlocal size
        for chunk in chunks:
            parts.append(chunk)
            size = _pad(parts, size + len(chunk))

    add(transform_rows.astype(np.uint32).tobytes(), *_pose_bytes(matrices))
    parts.extend((signal_rows.astype(np.uint32).tobytes(), status.tobytes()))
    size += 8 * len(signal_rows)
    add(quality_codes(status).tobytes(), (now - np.asarray(source_time)).astype(np.float32).tobytes(),
        np.asarray(values, np.float64).tobytes())
    for index, world in instances:
        add(struct.pack("<II", index, len(world)), *_pose_bytes(world))
    parts.append(text_bytes)
    return b"".join(parts), version


def _pose_bytes(matrices: np.ndarray) -> tuple[bytes, bytes]:
    """Positions as float32 and unit quaternions as int16 (a 3e-5 rad step): 20 bytes a transform."""
    poses = matrix_to_pose(matrices) if len(matrices) else np.zeros((0, 7))
    quaternions = np.round(np.clip(poses[:, 3:], -1.0, 1.0) * QUATERNION_SCALE).astype(np.int16)
    return poses[:, :3].astype(np.float32).tobytes(), quaternions.tobytes()


@dataclass
class Frame:
    """A decoded data frame (the inverse of `encode_frame`), for Python clients and tests."""

    snapshot: bool
    replay: bool  # a past instant (GET /api/replay/frame), not the live twin
    schema: int
    base: int
    version: int
    time: float
    transform_rows: np.ndarray
    poses: np.ndarray  # (n, 7) float32: position, quaternion x y z w
    signal_rows: np.ndarray
    status: np.ndarray
    quality: np.ndarray  # codes into QUALITIES
    source_time: np.ndarray  # seconds (from the frame's time and each value's age: float32, sub-ms)
    values: np.ndarray  # concatenated, see `signal_values`
    instances: dict[int, np.ndarray] = field(default_factory=dict)  # set index -> (count, 7) poses
    text: dict[int, str] = field(default_factory=dict)


def decode_frame(data: bytes, widths: list[int] | np.ndarray) -> Frame:
    """Decode a binary frame; `widths` are the signals' widths from the schema. ValueError if malformed."""
    try:
        return _decode(data, widths)
    except (IndexError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"malformed frame: {error}") from None


def _decode(data: bytes, widths: list[int] | np.ndarray) -> Frame:
    if len(data) < HEADER.size:
        raise ValueError(f"a frame has at least {HEADER.size} bytes, got {len(data)}")
    magic, protocol, flags, schema, base, version, when, n_t, n_s, n_i, n_text = HEADER.unpack_from(data)
    if magic != MAGIC or protocol != PROTOCOL:
        raise ValueError(f"not a protocol {PROTOCOL} frame")
    offset = HEADER.size

    def take(dtype, count: int, align: bool = False):
        nonlocal offset
        array = np.frombuffer(data, dtype, count, offset)
        offset += array.nbytes
        if align:
            offset += (-offset) % 8
        return array

    def poses(count: int) -> np.ndarray:
        position = take(np.float32, count * 3, align=True).reshape(count, 3)
        quaternion = take(np.int16, count * 4, align=True).reshape(count, 4) / QUATERNION_SCALE
        return np.concatenate([position, quaternion], axis=1)

    transform_rows = take(np.uint32, n_t, align=True)
    transform_poses = poses(n_t)
    signal_rows = take(np.uint32, n_s)
    status = take(np.uint32, n_s)
    quality = take(np.uint8, n_s, align=True)
    source_time = when - take(np.float32, n_s, align=True).astype(np.float64)
    widths = np.asarray(widths)
    values = take(np.float64, int(widths[signal_rows].sum()) if n_s else 0, align=True)
    instances = {}
    for _ in range(n_i):
        index, count = struct.unpack_from("<II", data, offset)
        offset += 8
        instances[index] = poses(count)
    text = {int(k): v for k, v in json.loads(data[offset:offset + n_text]).items()} if n_text else {}
    if offset + n_text != len(data):
        raise ValueError(f"frame length {len(data)} does not match its contents ({offset + n_text})")
    return Frame(bool(flags & SNAPSHOT), bool(flags & REPLAY), schema, base, version, when, transform_rows,
                 transform_poses, signal_rows, status, quality, source_time, values, instances, text)


def signal_values(frame: Frame, widths: np.ndarray) -> list[np.ndarray]:
    """The frame's values split per signal (in `frame.signal_rows` order)."""
    counts = np.asarray(widths)[frame.signal_rows]
    return np.split(frame.values, np.cumsum(counts)[:-1]) if len(counts) else []


class Gap(Exception):
    """A delta does not follow the version the client holds: it must ask for a resync."""


class StreamState:
    """A client's view of the stream: the schema, the version it holds, and the latest values.

    Feed it every message (`receive`); it raises Gap when a delta does not apply, after which the
    client sends {"type": "resync"}. Used by tests, benchmarks and Python clients.
    """

    def __init__(self) -> None:
        self.schema: dict | None = None
        self.widths = np.zeros(0, np.int64)
        self.version: int | None = None
        self.transforms: dict[str, np.ndarray] = {}  # prim -> pose (7)
        self.signals: dict[str, dict] = {}  # key -> {"v", "q", "s", "t", "l"?}
        self.instances: dict[str, np.ndarray] = {}

    def receive(self, message: bytes | str) -> dict | Frame:
        if isinstance(message, str):
            control = json.loads(message)
            if control.get("type") == "schema":
                self.schema = control
                self.widths = np.array([s["width"] for s in control["signals"]], np.int64)
            return control
        if self.schema is None:
            raise Gap("a frame arrived before its schema")
        frame = decode_frame(message, self.widths)
        if frame.schema != self.schema["schema"]:
            raise Gap("the frame's schema is not the one held")
        if not frame.snapshot and frame.base != self.version:
            raise Gap(f"delta from version {frame.base}, but version {self.version} is held")
        self.version = frame.version
        if frame.snapshot:  # complete for the client's scope: what is not in it is gone
            self.transforms.clear()
            self.signals.clear()
            self.instances.clear()
        names = self.schema["transforms"]
        for row, pose in zip(frame.transform_rows, frame.poses, strict=True):
            self.transforms[names[row]] = pose
        for row, values, status, quality, source_time in zip(
                frame.signal_rows, signal_values(frame, self.widths), frame.status, frame.quality,
                frame.source_time, strict=True):
            info = self.schema["signals"][row]
            value = frame.text.get(int(row)) if info["kind"] == "text" else (
                float(values[0]) if info["width"] == 1 else values.copy())
            entry = {"v": value, "q": QUALITIES[quality], "s": int(status), "t": float(source_time)}
            if info["kind"] != "text" and int(row) in frame.text:
                entry["l"] = frame.text[int(row)]
            self.signals[info["key"]] = entry
        for index, poses in frame.instances.items():
            self.instances[self.schema["instances"][index]] = poses
        return frame
