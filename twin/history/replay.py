"""Replay: the twin as it was at a past instant, rebuilt from the historian as one binary snapshot frame.

The historian keeps signals, not poses. A replay frame therefore re-runs the live step's derivations
(robot links by forward kinematics, parts from line signals) over the signals as they were at the
instant, in a private shadow cache whose rows are the live cache's rows in the same order: the viewer
decodes replay frames with the schema it already holds from the live stream and applies them through
the same code path as live frames. Live KPIs need no re-derivation: the live step writes them as
signals, so the historian already has them as they were shown.

The frame is the stream's snapshot format (docs/protocol.md), stamped as a replay (`encode_frame`'s
`replay_of`): the REPLAY flag, the replayed instant as its time, ages counted from that instant.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from twin.core.cache import BAD_WAITING_FOR_INITIAL_DATA, RuntimeCache, state_name
from twin.history.store import Historian
from twin.sim.parts import PartTracker
from twin.sim.physics_runtime import RecordedPartPoses
from twin.sim.robots import SceneRobots
from twin.sim.runtime import Twin
from twin.stream.protocol import Scope, encode_frame


class _Shadow:
    """A cache with the live cache's rows, and the live step's derivations over it."""

    def __init__(self, twin: Twin):
        live = twin.cache
        with live.lock:  # one consistent copy of the registrations
            self.schema = live.schema
            signals = list(live.signals)
            transform_prims = list(live.transform_prims)
            transforms = live.transforms.copy()
            instance_sets = [(name, s.capacity) for name, s in live.instance_sets.items()]
        cache = RuntimeCache()
        for info in signals:
            cache.add_signal(info.prim, info.attr, width=info.width, unit=info.unit, kind=info.kind,
                             labels=info.labels)
        # Transforms that no derivation writes are not in the history: they keep the pose they had here.
        for prim, matrix in zip(transform_prims, transforms, strict=True):
            cache.add_transform(prim, matrix)
        for name, capacity in instance_sets:
            cache.add_instance_set(name, capacity)
        registered = cache.schema
        # add_signal and add_transform are idempotent: the derivations find their rows already there.
        self.robots = SceneRobots(twin.stage, cache, device=twin.device)
        # The live twin's links start at their authored poses, and a pose within 1e-7 of the one held is not
        # rewritten (RuntimeCache.write_transforms): each replay starts from the same poses, so it matches.
        link_rows = self.robots.all_link_rows if self.robots.batch is not None else np.zeros(0, np.int64)
        self.start_poses = np.array([twin.stage.local_transform(cache.transform_prims[row], authored=True)
                                     for row in link_rows]).reshape(-1, 4, 4)
        if twin.physics is not None:  # a physics run records its part poses as one signal
            self.parts = RecordedPartPoses(cache, twin.physics.poses_row, twin.physics.capacity)
        elif twin.recorded is not None:  # so does a twin posing its parts from a plant's physics poses
            self.parts = RecordedPartPoses(cache, twin.recorded.row, twin.recorded.capacity)
        else:
            self.parts = PartTracker(twin.stage, cache, self.robots, device=twin.device)
        if cache.schema != registered:
            raise RuntimeError("the replay's derivations registered rows that the live cache does not have")
        cache.schema = self.schema  # same rows, same schema id: frames decode with the stream's schema
        self.cache = cache
        self.keys = [info.key for info in signals]
        self.labels = [info.labels for info in signals]  # the history keeps codes: names are put back here

    def frame(self, instant: float, state: dict[str, dict]) -> bytes:
        """Fill the cache from `state` (Historian.state_at), derive poses, encode a replay snapshot."""
        cache = self.cache
        with cache.lock:
            cache.values[:] = math.nan
            cache.text = [None] * len(cache.signals)
            cache.status[:] = BAD_WAITING_FOR_INITIAL_DATA  # no value at the instant: waiting, as at start-up
            cache.source_time[:] = math.nan
            cache.server_time[:] = math.nan
            for row, key in enumerate(self.keys):
                entry = state.get(key)
                if entry is None:
                    continue
                value = entry["v"]
                if isinstance(value, str):
                    cache.text[row] = value
                elif value is not None:
                    start = cache.signal_offset[row]
                    cache.values[start:start + cache.signal_width[row]] = value
                    if self.labels[row] and isinstance(value, float):
                        cache.text[row] = state_name(self.labels[row], value)  # as the connector names live codes
                cache.status[row] = entry["s"]
                cache.source_time[row] = cache.server_time[row] = entry["t"]
        self._pose_robots()
        self.parts.update()
        data, _ = encode_frame(cache, None, Scope(), replay_of=instant)
        return data

    def _pose_robots(self) -> None:
        """Forward kinematics of the joints at the instant, from the zero pose the live twin starts in.

        The live step keeps a robot's last pose while its joint signal is bad; the cache keeps the last
        value under a bad status, and so does the history, so any finite value at the instant is that pose.
        """
        robots = self.robots
        if robots.batch is None:
            return
        robots.q[:] = 0.0
        self.cache.transforms[robots.all_link_rows] = self.start_poses
        for robot, q_slice in zip(robots.robots, robots.batch.q_slices, strict=True):
            values = self.cache.signal_values(robot.joint_row)
            if np.all(np.isfinite(values)):
                robots.q[q_slice] = values
        robots.update()


class Replay:
    """Past frames of one twin. `prepare()` on the thread that steps the twin, `frame_at()` on any thread."""

    def __init__(self, twin: Twin, historian: Historian):
        self.twin = twin
        self.historian = historian
        self._lock = threading.Lock()
        self._shadow: _Shadow | None = None

    def prepare(self) -> None:
        """Rebuild the shadow when rows were added to the live cache since the last build.

        This reads the stage, so it runs where the live step writes the live layer (the server's event
        loop), never beside it; frame_at then touches only the shadow, the historian and Warp.
        """
        shadow = self._shadow
        if shadow is None or shadow.schema != self.twin.cache.schema:
            self._shadow = _Shadow(self.twin)  # a frame being built keeps the shadow it started with

    def frame_at(self, instant: float) -> bytes:
        """A binary replay snapshot of every row as it was at `instant` (Unix seconds, source time)."""
        if not math.isfinite(instant):
            raise ValueError(f"a replay instant must be finite, got {instant}")
        shadow = self._shadow
        if shadow is None:
            raise RuntimeError("Replay.prepare() must run before frame_at()")
        state = self.historian.state_at(instant)
        with self._lock:  # one frame at a time: the shadow's cache, kinematics and part buffers are shared
            return shadow.frame(instant, state)
