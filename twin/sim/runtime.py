"""A running twin: the stage, the runtime cache, and the simulation step that derives poses.

`Twin.step()` is the simulation stage of the data flow: connectors have written
signals into the cache; the step turns joint signals into link transforms and line
signals into part poses (Warp) and line signals into live KPIs, evaluates the alarm rules, then lets
the live layer catch up at its bounded rate. With `physics=True` part poses come from the line run on Newton
physics instead (twin.sim.physics_runtime), at the runtime's clock or a simulated one. With `part_poses` the twin
runs no flow of its own: parts are posed from a bound `twin:physics:partPoses` signal, the poses a plant running on
physics publishes (the sample PLC on physics, docs/physics.md), as replay poses a recorded physics run.
"""

from __future__ import annotations

import time
from pathlib import Path

from twin.core.alarms import AlarmEngine, rules_from_stage
from twin.core.cache import RuntimeCache
from twin.core.stage import LiveLayerWriter, TwinStage
from twin.kinematics.device import default_device
from twin.sim.kpis import LiveKpis
from twin.sim.parts import PartTracker
from twin.sim.physics_runtime import POSES, PhysicsLine, RecordedPartPoses
from twin.sim.robots import SceneRobots


class Twin:
    def __init__(self, layout: str | Path, *, device: str | None = None, flush_hz: float = 4.0,
                 physics: bool = False, seed: int = 1, part_poses: tuple[str, int] | None = None):
        """`part_poses` (prim, capacity): pose parts from that prim's `twin:physics:partPoses` signal (capacity x 7
        values, NaN where no part is), which a binding feeds, instead of deriving them from line signals."""
        if physics and part_poses is not None:
            raise ValueError("a twin runs its own physics flow or poses parts from a plant's poses, not both")
        self.device = device or default_device()
        self.stage = TwinStage(layout)
        self.cache = RuntimeCache()
        self.robots = SceneRobots(self.stage, self.cache, device=self.device)
        self.physics: PhysicsLine | None = None
        self.parts: PartTracker | None = None
        self.recorded: RecordedPartPoses | None = None  # with part_poses
        self.started = time.time()
        if physics:
            self.physics = PhysicsLine(self.stage, self.cache, device=self.device, seed=seed, epoch=self.started)
            self.robots.follow(self.physics.joint_rows())  # robots that carry parts on physics are drawn from it
        elif part_poses is not None:
            prim, capacity = part_poses
            row = self.cache.add_signal(prim, POSES, width=capacity * 7, unit="m")
            self.recorded = RecordedPartPoses(self.cache, row, capacity)
        else:
            self.parts = PartTracker(self.stage, self.cache, self.robots, device=self.device)
        self.kpis = LiveKpis(self.stage, self.cache)
        self.alarms = AlarmEngine(self.cache, rules_from_stage(self.stage.stage, str(self.stage.path)))
        self.live_writer = LiveLayerWriter(self.stage, self.cache, max_rate_hz=flush_hz)
        self.steps = 0
        self.step_seconds = 0.0  # time spent in the last step

    def step(self, sim_time: float | None = None) -> None:
        """One tick; `sim_time` (seconds since the twin started) drives physics on a simulated clock."""
        started = time.perf_counter()
        if self.physics is not None:
            self.physics.advance(time.time() - self.started if sim_time is None else sim_time)
            self.robots.update()  # after physics: its robots drawn where its parts are
        else:
            self.robots.update()
            if self.recorded is not None:
                self.recorded.update()
            else:
                self.parts.update()
        self.kpis.update(None if sim_time is None else self.started + sim_time)
        self.alarms.evaluate()
        self.live_writer.maybe_flush()
        self.steps += 1
        self.step_seconds = time.perf_counter() - started
