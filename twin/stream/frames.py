"""Stream frames: what changed in the runtime cache since a client's last frame.

A client is just a version number. Each frame carries every row whose version is
newer, so a client that falls behind gets one coalesced frame with the latest values
instead of a backlog; the server's memory does not grow with slow clients.
Format: docs/architecture.md ("Stream protocol").
"""

from __future__ import annotations

import math
import time

import numpy as np

from twin.core.cache import RuntimeCache, quality_name

DECIMALS = 5  # 10 micrometres / 1e-5 rad: far below what the viewer can show


def _number(value: float, exact: bool = False) -> float | None:
    if not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value if exact else round(value, DECIMALS)


def signal_json(cache: RuntimeCache, row: int, *, exact: bool = False) -> dict:
    """A signal as {"v", "q", "s", "t", "l"?}: rounded for the wire, or `exact` (the in-process SDK's values)."""
    value = cache.signal_value(row)
    if isinstance(value, np.ndarray):
        value = [_number(float(v), exact) for v in value]
    elif isinstance(value, float):
        value = _number(value, exact)
    status = int(cache.status[row])
    source_time = float(cache.source_time[row])
    frame = {"v": value, "q": quality_name(status), "s": status,
             "t": None if math.isnan(source_time) else source_time if exact else round(source_time, 3)}
    if cache.signals[row].kind != "text" and cache.text[row] is not None:
        frame["l"] = cache.text[row]  # the name of an enum code, e.g. a station state
    return frame


def build_frame(cache: RuntimeCache, since: int | None, seq: int) -> tuple[dict | None, int]:
    """The frame for a client that has seen version `since` (None: it needs a snapshot).

    Returns the frame (None when nothing changed) and the version it brings the client to.
    """
    with cache.lock:
        version = cache.version
        snapshot = since is None
        if since is not None and since >= version:
            return None, version
        transform_rows = range(len(cache.transform_prims)) if since is None else cache.changed_transforms(since)
        signal_rows = range(len(cache.signals)) if since is None else cache.changed_signals(since)
        transforms = {
            cache.transform_prims[row]: np.round(cache.transforms[row], DECIMALS).ravel().tolist()
            for row in transform_rows
        }
        signals = {cache.signals[row].key: signal_json(cache, int(row)) for row in signal_rows}
        if snapshot:  # units and kinds never change: the snapshot carries them once
            for row in signal_rows:
                info = cache.signals[row]
                signals[info.key].update(u=info.unit, k=info.kind)
        instances = {}
        for name, instance_set in cache.instance_sets.items():
            if since is None or instance_set.version > since:
                matrices = instance_set.transforms[instance_set.active]
                instances[name] = {"count": int(matrices.shape[0]),
                                   "matrices": np.round(matrices, 4).ravel().tolist()}
    frame = {"type": "snapshot" if snapshot else "delta", "seq": seq, "time": round(time.time(), 3),
             "version": version, "transforms": transforms, "signals": signals, "instances": instances}
    return frame, version
