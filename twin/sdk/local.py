"""The SDK on a twin in this process: the same methods as `TwinClient`, no server, no network.

For scripts, notebooks and tests that author or analyse a layout: open it, write signals as a
connector would, step the twin, read poses, query history, run kinematics and what-if studies.
Values and errors are the same types the remote client returns.

    import twin
    with twin.open("factory.usda", history="history.duckdb") as plant:
        plant.write("/Factory/Line/Robot1.twin:jointPositions", [0, -1.2, 1.1, 0, 0.6, 0])
"""

from __future__ import annotations

import functools
import getpass
import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from twin.core.cache import RuntimeCache
from twin.core.errors import KinematicsError, TwinError, UnknownSignalError
from twin.line.sweep import SweepParameter
from twin.physics.collision import DEFAULT_MAX_DISTANCE, MotionCheck, MotionCheckers
from twin.sdk.types import (
    Alarm,
    ConflictError,
    History,
    IkSolution,
    InvalidRequestError,
    NotFoundError,
    Robot,
    Sample,
    Update,
    prim_paths,
    update_from_frame,
)
from twin.sim.runtime import Twin
from twin.sim.scene_info import prim_details, scene_tree
from twin.stream.frames import signal_json
from twin.stream.protocol import Frame, Scope, StreamState, encode_frame, schema_id, schema_message

if TYPE_CHECKING:
    from twin.line.jobs import WhatIfJobs

NOT_COMMISSIONING = "this twin is not commissioning a line: start it with `twin commission` or use LocalCommission"

class LocalTwin:
    """A twin of `layout` in this process. `history` keeps every update in a DuckDB file (docs/history.md)."""

    def __init__(self, layout: str | Path, *, history: str | Path | None = None, device: str | None = None):
        self.twin = Twin(layout, device=device)
        self.twin.alarms.check()  # a limit on an array or a text is an error here too
        self.historian = None
        try:
            self.user = getpass.getuser()
        except (KeyError, OSError):  # a container without a user entry
            self.user = "local"
        self._jobs: WhatIfJobs | None = None
        self._motion_checkers: MotionCheckers | None = None
        if history is not None:
            from twin.history.store import Historian

            self.historian = Historian(history, self.twin.cache)
            self.historian.attach_alarms(self.twin.alarms)
            self.historian.start()

    def __enter__(self) -> LocalTwin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.historian is not None:
            self.historian.close()
            self.historian = None
        if self._jobs is not None:
            self._jobs.shutdown()

    @property
    def cache(self) -> RuntimeCache:
        return self.twin.cache

    def step(self) -> None:
        """One simulation step: link poses from joints, part poses, live KPIs, alarms."""
        self.twin.step()

    # ------------------------------------------------------------------ scene
    def health(self) -> dict:
        return {"status": "ok", "layout": str(self.twin.stage.path), "device": self.twin.device,
                "signals": len(self.cache.signals), "transforms": len(self.cache.transform_prims)}

    def scene(self) -> dict:
        return scene_tree(self.twin)

    def prims(self, kind: str | None = None) -> list[str]:
        return prim_paths(self.scene(), kind)

    def prim(self, path: str) -> dict:
        try:
            return prim_details(self.twin, "/" + path.strip("/"))
        except KeyError as error:
            raise NotFoundError(404, str(error.args[0]), f"prim {path}") from None

    # ------------------------------------------------------------------ signals
    def _info(self, key: str):
        try:
            return self.cache.find_signal(key)
        except KeyError as error:
            raise NotFoundError(404, str(error.args[0]), f"signal {key}") from None

    def read(self, key: str) -> Sample:
        """The stored value itself, unrounded (the server rounds only what it sends as JSON)."""
        return Sample.from_json(key, signal_json(self.cache, self._info(key).row, exact=True))

    def read_many(self, keys: Sequence[str] | None = None) -> dict[str, Sample]:
        infos = self.cache.signals if keys is None else [self._info(key) for key in keys]
        return {info.key: Sample.from_json(info.key, signal_json(self.cache, info.row, exact=True))
                for info in infos}

    def write(self, key: str, value: float | int | bool | str | Sequence[float]) -> dict:
        """Set a signal of this twin (there is no plant behind an in-process twin) and step, so poses,
        KPIs and alarms follow at once."""
        info = self._info(key)
        try:
            self.cache.write_signal(info.row, value)
        except ValueError as error:
            raise InvalidRequestError(422, str(error), f"write {key}") from None
        self.step()
        return {"ok": True, "status": "Good", "status_code": 0, "message": "written to the in-process twin"}

    # Forcing belongs to a commissioned line (twin.sdk.commission.LocalCommission in-process, `twin commission`
    # served); an in-process twin answers as a server that does not commission one does: not found.
    def force(self, node: str, value: object = None, *, mode: str | None = None,
              period_s: float | None = None) -> dict:
        """Refused: this twin commissions no line (use `LocalCommission`, docs/commissioning.md)."""
        raise NotFoundError(404, NOT_COMMISSIONING, f"force {node}")

    def release(self, node: str = "all") -> list[str]:
        """Refused: this twin commissions no line (use `LocalCommission`, docs/commissioning.md)."""
        raise NotFoundError(404, NOT_COMMISSIONING, f"release {node}")

    def forces(self) -> list[dict]:
        """Refused: this twin commissions no line (use `LocalCommission`, docs/commissioning.md)."""
        raise NotFoundError(404, NOT_COMMISSIONING, "forces")

    def subscribe(self, signals: Sequence[str] = (), subtrees: Sequence[str] = (), *,
                  idle_timeout: float = 30.0, poll_s: float = 0.01) -> Iterator[Update]:
        """Updates as the cache changes (from other threads, connectors, or your own writes): the same
        frames the stream sends, decoded the same way."""
        try:
            scope = Scope.parse({"signals": list(signals), "subtrees": list(subtrees)}, self.cache)
        except ValueError as error:
            raise InvalidRequestError(400, f"subscribe: {error}", "stream") from None
        state, base, schema, seq = StreamState(), None, None, self.twin.alarms.last_seq
        quiet_since = time.monotonic()
        while True:
            if schema != schema_id(self.cache):
                schema, base = schema_id(self.cache), None
                state.receive(json.dumps(schema_message(self.cache, schema)))
            data, version = encode_frame(self.cache, base, scope)
            events = self.twin.alarms.events_since(seq)
            if events:
                seq = events[-1].seq
                yield Update(state.version, time.time(), alarm_events=[event.to_json() for event in events])
            if data is not None:
                frame = state.receive(data)
                base = version
                quiet_since = time.monotonic()
                assert isinstance(frame, Frame)
                yield update_from_frame(frame, state)
            elif time.monotonic() - quiet_since > idle_timeout:
                raise TwinError(f"no update for {idle_timeout} s")
            else:
                time.sleep(poll_s)

    # ------------------------------------------------------------------ history
    def _historian(self):
        if self.historian is None:
            raise NotFoundError(404, "this twin keeps no history: open it with history=FILE", "history")
        return self.historian

    def history(self, key: str, start: float, end: float, *, step: float | None = None,
                how: str = "last") -> History:
        store = self._historian()
        try:
            if step is None:
                raw = store.series(key, start, end)
                return History(key, raw["times"], raw["values"], raw["status"])
            found = store.resample(key, start, end, step, how)
        except TwinError as error:
            kind = NotFoundError if isinstance(error, UnknownSignalError) else InvalidRequestError
            raise kind(404 if kind is NotFoundError else 422, str(error), f"history {key}") from None
        return History(key, found["times"], found["values"])

    def state_at(self, instant: float) -> dict[str, Sample]:
        return {key: Sample.from_json(key, data) for key, data in self._historian().state_at(instant).items()}

    def export(self, path: str | Path, *, keys: Sequence[str] | None = None, start: float | None = None,
               end: float | None = None) -> Path:
        path = Path(path)
        store = self._historian()
        writer = {".parquet": store.export_parquet, ".csv": store.export_csv}.get(path.suffix)
        if writer is None:
            raise ValueError(f"export to a .parquet or .csv file, not {path.name!r}")
        try:
            writer(path, list(keys) if keys else None, -math.inf if start is None else start,
                   math.inf if end is None else end)
        except TwinError as error:
            raise NotFoundError(404, str(error), f"export {path.name}") from None
        return path

    # ------------------------------------------------------------------ alarms
    def alarms(self) -> list[Alarm]:
        return [Alarm.from_json(alarm) for alarm in self.twin.alarms.open_alarms()]

    def acknowledge(self, alarm_id: int, comment: str = "") -> Alarm:
        try:
            return Alarm.from_json(self.twin.alarms.acknowledge(alarm_id, self.user, comment).to_json())
        except KeyError as error:
            raise NotFoundError(404, error.args[0], f"alarm {alarm_id}") from None
        except ValueError as error:
            raise ConflictError(409, str(error), f"alarm {alarm_id}") from None

    def alarm_history(self, start: float | None = None, end: float | None = None,
                      key: str | None = None) -> list[dict]:
        return self._historian().alarm_events(-math.inf if start is None else start,
                                              math.inf if end is None else end, key)

    # ------------------------------------------------------------------ robots
    def robots(self) -> list[Robot]:
        return [Robot.from_json(robot) for robot in self.twin.robots.describe()]

    def _kinematics(self, call, *args):
        try:
            return call(*args)
        except KeyError as error:
            raise NotFoundError(404, error.args[0], "robot") from None
        except (KinematicsError, ValueError) as error:
            raise InvalidRequestError(422, str(error), "kinematics") from None

    def fk(self, robot: str, q) -> np.ndarray:
        return self._kinematics(self.twin.robots.forward_world, robot, q)

    def ik(self, robot: str, targets, *, link: str | None = None, seeds: int = 8) -> IkSolution:
        result = self._kinematics(self.twin.robots.inverse_world, robot, targets, link, seeds)
        return IkSolution(result.q, result.success, result.position_error, result.rotation_error)

    def check_motion(self, robot: str, trajectory, *, times=None, distance: bool = True,
                     max_distance: float = DEFAULT_MAX_DISTANCE) -> MotionCheck | list[MotionCheck]:
        """First contact of a joint trajectory (T, n), or of each of a batch (B, T, n), with the cell or the robot
        itself; clearance when free. See docs/robots.md."""
        if self._motion_checkers is None:
            self._motion_checkers = MotionCheckers(self.twin.stage.authored_stage,
                                                   [r.path for r in self.twin.robots.robots], device=self.twin.device)
        check = functools.partial(self._motion_checkers.check_motion, times=times, distance=distance,
                                  max_distance=max_distance)
        return self._kinematics(check, robot, trajectory)

    # ------------------------------------------------------------------ what-if
    def whatif(self, *, sweep: Sequence[SweepParameter] = (), replications: int = 30, hours: float = 8.0,
               warmup_hours: float = 0.0, seed: int = 1, start: str = "empty", wait: bool = True,
               timeout: float = 600.0) -> dict:
        """The same job queue and limits as the server's; a study far beyond them belongs in `run_whatif`."""
        from twin.line.jobs import WhatIfJobs, WhatIfRequest
        from twin.line.live import LiveStart
        from twin.line.model import read_line

        if self._jobs is None:
            model = read_line(self.twin.stage.stage)
            self._jobs = WhatIfJobs(model, lambda: LiveStart.from_cache(model, self.cache), device=self.twin.device)
        try:
            job = self._jobs.submit(WhatIfRequest(list(sweep), replications, hours, warmup_hours, seed, start),
                                    self.user)
        except TwinError as error:
            raise InvalidRequestError(422, str(error), "what-if") from None
        deadline = time.monotonic() + timeout
        while wait and job.status not in ("done", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"what-if job {job.id} still {job.status} after {timeout} s")
            time.sleep(0.05)
        if job.status == "failed":
            raise TwinError(f"what-if job {job.id} failed: {job.error}")
        return job.as_dict()


def open_twin(layout: str | Path, *, history: str | Path | None = None, device: str | None = None) -> LocalTwin:
    """The twin of `layout` in this process, with the same methods as `twin.connect(...)`."""
    return LocalTwin(layout, history=history, device=device)
