"""The simulated PLC: a real OPC-UA server (asyncua) on 127.0.0.1 running the sample line.

It owns its clock: its plant steps at `rate_hz`, and each step writes only the variables whose value
changed, with a source timestamp, so the server's subscriptions carry a realistic stream. Variables are
`ns=<urn:factory-twin:sample-plc>;s=Line.<Element>.<Name>` under Objects/Factory/Line/<Element>.

The plant is the kinematic line model (line_model.py), or with `--physics --layout FACTORY.usda` the line on
Newton physics (physics_line.py): the same variables derived from the physics run, plus `Line.Parts.Poses`,
every part's pose, so a twin mirroring this PLC shows physics (docs/physics.md, "The demo runs on physics").

    python -m twin.sample_factory.plc --port 4840      # runs until Ctrl-C or SIGTERM
    python -m twin.sample_factory.plc --physics --layout ~/.cache/twin/demo/factory.usda

Started by `twin demo` with --parent-pid, it stops when the demo does, however the demo ends
(SIGKILL included): a PLC left behind would hold its port and feed the next demo stale values.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import logging
import math
import os
import signal
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asyncua import Server, ua

from .line_model import LineModel

if TYPE_CHECKING:
    from .physics_line import PhysicsPlant

PHYSICS_WARM_UP_S = 120.0  # plant seconds run on physics before serving: seed 1 has parts in the bin from 102 s

NAMESPACE = "urn:factory-twin:sample-plc"
WRITABLE = {"SpeedSetpoint"}  # variables operators may write; the line follows them
log = logging.getLogger("twin.sample_plc")


def _variant_type(name: str, value) -> ua.VariantType:
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, str):
        return ua.VariantType.String
    if isinstance(value, list):
        return ua.VariantType.Double
    if isinstance(value, int):
        return ua.VariantType.Int32 if name.endswith(".State") else ua.VariantType.UInt32
    return ua.VariantType.Double


def _same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b, strict=True))
    return a == b


class SamplePlc:
    """The sample line behind an OPC-UA server; use `async with SamplePlc(port, seed) as plc:`.

    `warm_up_s` of plant time run before serving, so clients meet a line mid-shift with parts
    everywhere instead of an empty one (default: 90 s, PHYSICS_WARM_UP_S on physics); `speedup` is plant
    seconds per wall second. With `physics_layout` (the sample factory's USD) the plant is the line on
    physics (physics_line.PhysicsPlant) instead of the line model.
    """

    def __init__(self, port: int = 4840, seed: int = 1, *, rate_hz: float = 20.0, warm_up_s: float | None = None,
                 speedup: float = 1.0, physics_layout: str | os.PathLike | None = None):
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/factory/"
        self.rate_hz = rate_hz
        self.speedup = speedup
        self.model: LineModel | PhysicsPlant
        if physics_layout is not None:
            from .physics_line import PhysicsPlant  # loads Warp and Newton: only for the physics plant

            self.model = PhysicsPlant(physics_layout, seed=seed, dt=1.0 / rate_hz)
        else:
            self.model = LineModel(seed=seed, dt=1.0 / rate_hz)
        self.model.warm_up((PHYSICS_WARM_UP_S if physics_layout is not None else 90.0) if warm_up_s is None
                           else warm_up_s)
        self.server = Server()
        self.nodes: dict[str, ua.NodeId] = {}
        self.types: dict[str, ua.VariantType] = {}
        self.published: dict[str, object] = {}
        self._task: asyncio.Task | None = None
        self._step_debt = 0.0  # plant steps owed to the clock: a fractional speedup skips or doubles some ticks

    async def start(self) -> None:
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_server_name("Factory twin sample PLC")
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        index = await self.server.register_namespace(NAMESPACE)
        factory = await self.server.nodes.objects.add_folder(ua.NodeId("Factory", index), f"{index}:Factory")
        line = await factory.add_folder(ua.NodeId("Line", index), f"{index}:Line")
        elements = {}
        for name, value in self.model.values().items():
            _, element, variable = name.split(".")
            if element not in elements:
                elements[element] = await line.add_object(ua.NodeId(f"Line.{element}", index), f"{index}:{element}")
            kind = _variant_type(name, value)
            node = await elements[element].add_variable(ua.NodeId(name, index), f"{index}:{variable}",
                                                        ua.Variant(value, kind))
            if isinstance(value, list):
                await node.write_value_rank(1)
                await node.write_array_dimensions([len(value)])
            if variable in WRITABLE:
                await node.set_writable()
            await node.write_attribute(ua.AttributeIds.MinimumSamplingInterval,
                                       ua.DataValue(ua.Variant(1000.0 / self.rate_hz, ua.VariantType.Double)))
            self.nodes[name], self.types[name], self.published[name] = node.nodeid, kind, value
        await self.server.start()
        self._task = asyncio.create_task(self._run())
        log.info("sample PLC serving %d variables at %s", len(self.nodes), self.endpoint)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.server.stop()

    async def __aenter__(self) -> SamplePlc:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _run(self) -> None:
        """Step and publish on a fixed-rate clock (not sleep(period)) so plant time does not drift."""
        period = 1.0 / self.rate_hz
        next_time = time.monotonic()
        while True:
            await self.apply_setpoints()
            self._step_debt += self.speedup
            while self._step_debt >= 1.0:
                self.model.step()
                self._step_debt -= 1.0
            await self.publish()
            next_time += period
            delay = next_time - time.monotonic()
            if delay < -1.0:  # the machine stalled: resume the clock instead of bursting
                next_time = time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def apply_setpoints(self) -> None:
        """Take setpoints that clients wrote into the address space over to the line."""
        for name, conveyor in self.model.conveyors.items():
            key = f"Line.{name}.SpeedSetpoint"
            written = self.server.read_attribute_value(self.nodes[key]).Value.Value
            if written != self.published[key]:
                conveyor.set_speed(written)
                log.info("%s set to %.3f m/s", key, conveyor.speed)

    async def publish(self) -> None:
        """Write every variable whose value changed since the last publish."""
        now = datetime.now(UTC)
        for name, value in self.model.values().items():
            if _same(value, self.published[name]):
                continue
            self.published[name] = value
            variant = ua.Variant(value, self.types[name])
            data = ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
            await self.server.write_attribute_value(self.nodes[name], data)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel send SIGTERM when the parent dies, even by SIGKILL; exit if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before the request above: nobody would send the signal
        raise SystemExit(f"sample PLC: parent process {parent_pid} is gone; not starting")


async def _watch_parent(parent_pid: int, stop: asyncio.Event, interval_s: float = 0.5) -> None:
    """Where the kernel does not signal a parent's death: an orphan is adopted, its parent pid changes."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(interval_s)
    log.warning("parent process %d is gone: stopping", parent_pid)
    stop.set()


async def _serve(port: int, seed: int, speedup: float, parent_pid: int | None = None,
                 physics_layout: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watchdog = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid is not None else None
    async with SamplePlc(port, seed=seed, speedup=speedup, physics_layout=physics_layout) as plc:
        plant = "physics" if physics_layout is not None else "the line model"
        print(f"sample PLC: {len(plc.nodes)} variables at {plc.endpoint}, plant on {plant}", flush=True)
        await stop.wait()
    if watchdog is not None:
        watchdog.cancel()
    print("sample PLC: stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The sample factory's simulated PLC (OPC-UA server)")
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speedup", type=float, default=1.0, help="plant seconds per wall second")
    parser.add_argument("--parent-pid", type=int, help="stop when this process (the one starting the PLC) ends")
    parser.add_argument("--physics", action="store_true",
                        help="run the plant on Newton physics (needs --layout) instead of the line model")
    parser.add_argument("--layout", help="the sample factory's USD (factory.usda), for --physics")
    args = parser.parse_args(argv)
    if args.physics and not args.layout:
        parser.error("--physics needs --layout: the sample factory's USD (`twin demo` builds it)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    if not math.isfinite(args.speedup) or args.speedup <= 0:
        parser.error("--speedup must be positive")
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    try:
        asyncio.run(_serve(args.port, args.seed, args.speedup, args.parent_pid,
                           args.layout if args.physics else None))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        raise SystemExit(f"sample PLC: port {args.port} on 127.0.0.1 is in use: stop what listens there "
                         f"(an earlier sample PLC?) or choose another port with --port") from None
    # Served and stopped: nothing is left to clean up, but the interpreter's teardown of Warp, Newton and MuJoCo
    # (physics) takes 2.5 s more, which a demo killed and restarted at once would wait for. Leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
