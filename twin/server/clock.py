"""The live simulation's clock: one asyncio task steps the twin at `tick_hz` and wakes the stream's clients.

Each client then sends itself a frame of what changed since its own last frame (twin/stream/hub.py), so a
slow client slows only itself. A value written between ticks (a connector, the write API) wakes the stream
within `WRITE_CHECK_S` instead of waiting for the next tick: that wait was most of what the twin added to a
PLC value's way to the page. A twin with physics steps in a worker thread, so the event loop keeps serving
while the solver runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from twin.sim.runtime import Twin
from twin.stream.hub import StreamHub

log = logging.getLogger("twin.server")

WRITE_CHECK_S = 0.005  # between ticks, how often the cache's version is compared (only while clients listen)


@dataclass
class SimulationClock:
    """What the tick loop does (running, tick_hz: set by the simulation route) and what it did (for /api/health)."""

    tick_hz: float
    running: bool = True
    ticks: int = 0
    tick_seconds: float = 0.0
    started: float = field(default_factory=time.time)


async def run_ticks(twin: Twin, hub: StreamHub, clock: SimulationClock) -> None:
    """Step the twin (unless paused) and notify the hub, at the clock's rate, until cancelled."""
    next_time = time.monotonic()
    while True:
        period = 1.0 / clock.tick_hz
        started = time.perf_counter()
        try:
            if clock.running and twin.physics is not None:  # physics steps off the event loop
                await asyncio.to_thread(twin.step)
            elif clock.running:
                twin.step()
        except Exception:  # keep serving; the error is in the log with its traceback
            log.exception("simulation step failed")
        clock.tick_seconds = time.perf_counter() - started
        clock.ticks += 1
        hub.notify()
        next_time += period
        if next_time - time.monotonic() < -period:  # fell behind: don't try to catch up with a burst
            next_time = time.monotonic()
        await _until(next_time, twin, hub)


async def _until(deadline: float, twin: Twin, hub: StreamHub) -> None:
    """Wait for the next tick; meanwhile notify the hub whenever the cache changed (no step: the simulation
    keeps its rate, the stream carries the written value at once)."""
    notified = twin.cache.version
    while (delay := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(delay, WRITE_CHECK_S) if hub.sessions else delay)
        if twin.cache.version != notified:
            notified = twin.cache.version
            hub.notify()
    await asyncio.sleep(0)  # a tick under way still yields to the event loop
