"""A line's runtime cache as broker messages, and their application to another process's cache (a relay).

A line that publishes its stream state (binding file `publish: {stream: true}`, docs/scale.md) sends keyframes
(the schema and every row) and deltas (the rows changed between two of its cache versions). Values travel as
float64, so a relay's cache holds exactly the line's values and its stream frames carry what the line's do.
Message: b"TWMR", u32 header length, a JSON header, then little-endian arrays in this order:
    signals     u32 row[n], u32 status[n], f64 source_time[n], f64 server_time[n], f64 values[sum of widths]
    transforms  u32 row[k], f64 matrix[k][16]
    instances   per set in the header's order: u32 active index[c], f64 matrix[c][16]
Header: {format, kind (keyframe|delta), session, base (the version a delta applies on; null in keyframes),
version, time, n_signals, n_values, n_transforms, instances [[name, c]...], text {row: text}, and in
keyframes `schema` {signals [[prim, attr, width, unit, kind, labels]...], transforms [prim...],
instances {name: capacity}}}. Rows are the line's; a keyframe's schema maps them to the receiver's.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from twin.core.cache import RuntimeCache

MAGIC = b"TWMR"
FORMAT = 1
KEYFRAME, DELTA = "keyframe", "delta"
_LENGTH = struct.Struct("<I")


class MirrorError(ValueError):
    """A message that is not a stream-state message of this format, or does not fit the receiving cache."""


def encode_state(cache: RuntimeCache, session: str, base: int | None) -> tuple[bytes | None, int]:
    """A keyframe (`base` None) or the delta since `base`; (None, version) when nothing changed since it."""
    with cache.lock:
        version = cache.version
        if base is not None and base >= version:
            return None, version
        if base is None:
            signal_rows = np.arange(len(cache.signals))
            transform_rows = np.arange(len(cache.transform_prims))
        else:
            signal_rows, transform_rows = cache.changed_signals(base), cache.changed_transforms(base)
        values = [cache.signal_values(int(row)) for row in signal_rows]
        header: dict = {
            "format": FORMAT, "kind": KEYFRAME if base is None else DELTA, "session": session, "base": base,
            "version": version, "time": time.time(), "n_signals": len(signal_rows),
            "n_values": int(sum(v.size for v in values)), "n_transforms": len(transform_rows),
            "text": {str(row): cache.text[row] for row in signal_rows if cache.text[row] is not None},
        }
        arrays = [signal_rows.astype("<u4"), cache.status[signal_rows].astype("<u4"),
                  cache.source_time[signal_rows].astype("<f8"), cache.server_time[signal_rows].astype("<f8"),
                  (np.concatenate(values) if values else np.zeros(0)).astype("<f8"),
                  transform_rows.astype("<u4"), cache.transforms[transform_rows].astype("<f8")]
        header["instances"] = []
        for name, instances in cache.instance_sets.items():
            if base is None or instances.version > base:
                active = np.flatnonzero(instances.active)
                header["instances"].append([name, len(active)])
                arrays += [active.astype("<u4"), instances.transforms[active].astype("<f8")]
        if base is None:
            header["schema"] = {
                "signals": [[s.prim, s.attr, s.width, s.unit, s.kind, s.labels] for s in cache.signals],
                "transforms": list(cache.transform_prims),
                "instances": {name: instances.capacity for name, instances in cache.instance_sets.items()}}
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, _LENGTH.pack(len(head)), head, *(array.tobytes() for array in arrays)]), version


@dataclass
class StateMessage:
    header: dict
    signal_rows: np.ndarray
    status: np.ndarray
    source_time: np.ndarray
    server_time: np.ndarray
    values: np.ndarray
    transform_rows: np.ndarray
    matrices: np.ndarray
    instances: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (active indices, matrices)

    @property
    def kind(self) -> str:
        return self.header["kind"]


def decode_state(data: bytes) -> StateMessage:
    """Parse a message; MirrorError says what is wrong with it."""
    if data[:4] != MAGIC or len(data) < 8:
        raise MirrorError("not a stream-state message (no TWMR magic)")
    (length,) = _LENGTH.unpack_from(data, 4)
    try:
        header = json.loads(data[8:8 + length])
    except ValueError as error:
        raise MirrorError(f"stream-state header is not JSON: {error}") from None
    if header.get("format") != FORMAT:
        raise MirrorError(f"stream-state format {header.get('format')!r}; this twin reads format {FORMAT}")
    offset = 8 + length

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal offset
        array = np.frombuffer(data, dtype, count, offset)
        offset += array.nbytes
        return array

    try:
        n, k = header["n_signals"], header["n_transforms"]
        message = StateMessage(header, take("<u4", n), take("<u4", n), take("<f8", n), take("<f8", n),
                               take("<f8", header["n_values"]), take("<u4", k), take("<f8", 16 * k).reshape(k, 4, 4),
                               {})
        for name, count in header["instances"]:
            message.instances[name] = (take("<u4", count), take("<f8", 16 * count).reshape(count, 4, 4))
    except (KeyError, ValueError, TypeError) as error:
        raise MirrorError(f"stream-state message is truncated or malformed: {error}") from None
    return message


@dataclass
class CacheMirror:
    """Keeps a cache equal to a line's, from its keyframes and deltas. `apply` answers whether the message was
    applied; False means a gap (a delta on a version this mirror does not hold): ask the line for a keyframe."""

    cache: RuntimeCache
    session: str | None = None  # of the line's publisher whose keyframe was applied last
    version: int | None = None  # the line's cache version this mirror holds
    keyframes: int = 0
    deltas: int = 0
    gaps: int = 0
    signal_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # line row -> own row
    transform_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def apply(self, message: StateMessage) -> bool:
        header = message.header
        if message.kind == KEYFRAME:
            self._map(header["schema"])
        elif header["session"] != self.session or header["base"] != self.version or \
                message.signal_rows.size and int(message.signal_rows.max()) >= self.signal_rows.size or \
                message.transform_rows.size and int(message.transform_rows.max()) >= self.transform_rows.size:
            self.gaps += 1  # missed messages, or rows the last keyframe did not announce
            return False
        self._write(message)
        self.session, self.version = header["session"], header["version"]
        if message.kind == KEYFRAME:
            self.keyframes += 1
        else:
            self.deltas += 1
        return True

    def _map(self, schema: dict) -> None:
        """Own rows for the line's, adding those this cache lacks (signals the line's bindings brought)."""
        cache = self.cache
        rows = []
        for prim, attr, width, unit, kind, labels in schema["signals"]:
            try:
                rows.append(cache.add_signal(prim, attr, width=width, unit=unit, kind=kind,
                                             labels={int(code): name for code, name in labels.items()}
                                             if labels else None))
            except ValueError as error:
                raise MirrorError(f"the line's signal does not fit this cache: {error}") from None
        self.signal_rows = np.asarray(rows, np.int64)
        self.transform_rows = np.asarray([cache.add_transform(prim) for prim in schema["transforms"]], np.int64)
        for name, capacity in schema["instances"].items():
            if cache.add_instance_set(name, capacity).capacity != capacity:
                raise MirrorError(f"instance set {name}: the line has {capacity} slots, this cache "
                                  f"{cache.instance_sets[name].capacity}")

    def _write(self, message: StateMessage) -> None:
        cache, text = self.cache, message.header["text"]
        offset = 0
        for index, line_row in enumerate(message.signal_rows.tolist()):
            row = int(self.signal_rows[line_row])
            info = cache.signals[row]
            label = text.get(str(line_row))
            value: object = label if info.kind == "text" else (
                float(message.values[offset]) if info.width == 1 else message.values[offset:offset + info.width])
            offset += info.width
            cache.write_signal(row, value, status=int(message.status[index]),
                               source_time=float(message.source_time[index]),
                               server_time=float(message.server_time[index]),
                               label=None if info.kind == "text" else label)
        if message.transform_rows.size:
            cache.write_transforms(self.transform_rows[message.transform_rows.astype(np.int64)], message.matrices)
        for name, (active, matrices) in message.instances.items():
            instances = cache.instance_sets[name]
            transforms = instances.transforms.copy()
            mask = np.zeros(instances.capacity, bool)
            transforms[active], mask[active] = matrices, True
            cache.write_instances(name, transforms, mask)
