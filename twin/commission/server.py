"""The commissioning server: the plant behind an asyncua server, in free-run or lock-step time.

Each cycle takes the outputs the controller wrote, steps the plant, and publishes the inputs that changed.
Free-run cycles on a wall clock (`speedup` plant seconds per wall second); lock-step cycles only when the
controller calls `Line.Simulation.Step(cycles)`, so every input read after a Step reflects exactly the
outputs written before it. Writes are checked before they land: the wrong type is BadTypeMismatch, a value
outside the signal's range BadOutOfRange, an input BadNotWritable. A watchdog puts the outputs to their safe
values when the controller neither writes nor steps for `watchdog_s`, and raises WatchdogTripped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal as os_signal
import time
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Node, Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from pxr import Usd

from twin.core.errors import LayoutError

from .address import INPUT, NAMESPACE, OUTPUT, Signal, line_signals
from .forcing import ALL, OFFLINE, Force, Forces
from .nodeset import use_xml_encoding_type_ids
from .plant import Plant
from .security import EndpointSecurity, require_security, secure_endpoint

log = logging.getLogger("twin.commission")
ADMIN = User(role=UserRole.Admin)  # asyncua's own default for in-process writes
MAX_STEP_CYCLES = 1_000_000  # one Step call at most; the controller scans between Steps anyway


def open_layout(layout: str | Path) -> Usd.Stage:
    stage = Usd.Stage.Open(str(layout)) if Path(layout).is_file() else None
    if stage is None:
        raise LayoutError(str(layout), "cannot be opened as a USD layout")
    return stage


class CommissionServer:
    """`async with CommissionServer(layout, port=...) as server:` serves the layout's line until the block ends."""

    def __init__(self, layout: str | Path | Usd.Stage, *, port: int = 4841, host: str = "127.0.0.1",
                 cycle_s: float = 0.05, lockstep: bool = False, speedup: float = 1.0, watchdog_s: float = 1.0,
                 seed: int = 1, security: EndpointSecurity | None = None, physics: bool = False):
        require_security(host, security)  # before the plant is built: the mistake is the command line's
        if not cycle_s > 0 or not speedup > 0 or not watchdog_s > 0:
            raise ValueError("cycle_s, speedup and watchdog_s must be positive")
        stage = layout if isinstance(layout, Usd.Stage) else open_layout(layout)
        if physics:  # Newton is imported only for a line on physics
            from .physics_plant import PhysicsPlant

            self.plant: Plant = PhysicsPlant(stage, dt=cycle_s, seed=seed)
        else:
            self.plant = Plant(stage, dt=cycle_s, seed=seed)
        self.signals = line_signals(self.plant)
        self.forces = Forces(self.plant, self.signals)
        self.lockstep, self.speedup, self.watchdog_s = lockstep, speedup, watchdog_s
        self.host, self.security = host, security
        self.endpoint = f"opc.tcp://{host}:{port}/twin/commission/"
        self.server = Server()
        self.namespace_index = 0
        self.nodes: dict[str, Node] = {}  # every node of the line by its string id, folders included
        self._by_nodeid: dict[ua.NodeId, Signal] = {}
        self._published: dict[str, object] = {}
        self._last_alive: float | None = None  # the watchdog is armed by the controller's first write or step
        self._tasks: list[asyncio.Task] = []
        self._cycle_lock = asyncio.Lock()

    # ----------------------------------------------------------------- lifecycle
    async def build(self) -> None:
        """The address space, without serving it (enough to export the nodeset)."""
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_server_name("Factory twin virtual commissioning")
        await secure_endpoint(self.server, self.security, self.host)
        self.namespace_index = await self.server.register_namespace(NAMESPACE)
        await self._build()

    async def start(self) -> None:
        await self.build()
        service = self.server.iserver.attribute_service
        checked_write = self._checked_write(service.write)
        service.write = checked_write  # type: ignore[method-assign]
        await self.server.start()
        await self._publish()
        if not self.lockstep:
            self._tasks.append(asyncio.create_task(self._free_run()))
        self._tasks.append(asyncio.create_task(self._watchdog()))
        log.info("commissioning %d signals at %s (%s)", len(self.signals), self.endpoint,
                 "lock-step" if self.lockstep else f"free-run x{self.speedup:g}")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.server.stop()

    async def __aenter__(self) -> CommissionServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ----------------------------------------------------------------- address space
    async def _folder(self, path: tuple[str, ...]) -> Node:
        key = ".".join(path)
        if key not in self.nodes:
            parent = self.server.nodes.objects if len(path) == 1 else await self._folder(path[:-1])
            self.nodes[key] = await parent.add_object(ua.NodeId(key, self.namespace_index),
                                                      ua.QualifiedName(path[-1], self.namespace_index))
        return self.nodes[key]

    async def _build(self) -> None:
        for signal in self.signals:
            if signal.node in self.nodes:
                raise LayoutError(self.plant.model.source_file, f"two signals are both named {signal.node}")
            parent = await self._folder(signal.path[:-1])
            value = signal.safe if signal.direction == OUTPUT else signal.value()
            kind = ua.VariantType[signal.type]
            node = await parent.add_variable(ua.NodeId(signal.node, self.namespace_index),
                                             ua.QualifiedName(signal.path[-1], self.namespace_index),
                                             ua.Variant(value, kind), datatype=ua.NodeId(kind.value, 0))
            await node.write_attribute(ua.AttributeIds.Description,
                                       ua.DataValue(ua.Variant(ua.LocalizedText(signal.description))))
            if signal.unit:
                await node.add_property(ua.NodeId(f"{signal.node}.Unit", self.namespace_index),
                                        ua.QualifiedName("EngineeringUnits", 0), signal.unit)
            if signal.direction == OUTPUT:
                await node.set_writable()
                if signal.low is not None and signal.high is not None:
                    await node.add_property(ua.NodeId(f"{signal.node}.EURange", self.namespace_index),
                                            ua.QualifiedName("EURange", 0), ua.Range(signal.low, signal.high))
            self.nodes[signal.node] = node
            self._by_nodeid[node.nodeid] = signal
            self._published[signal.node] = value
        simulation = await self._folder(("Line", "Simulation"))
        step = await simulation.add_method(
            ua.NodeId("Line.Simulation.Step", self.namespace_index), ua.QualifiedName("Step", self.namespace_index),
            self._step_method, [ua.VariantType.UInt32], [ua.VariantType.UInt64])
        self.nodes["Line.Simulation.Step"] = step

    def node_id(self, node: str) -> str:
        """The NodeId text a client uses for a signal, e.g. 'ns=2;s=Line.Conveyors.Conveyor1.Run'."""
        return f"ns={self.namespace_index};s={node}"

    async def export_nodeset(self, path: str | Path) -> None:
        """The line's address space as UANodeSet XML, for other stacks to import: every node with its properties
        (units, ranges, the Step method's arguments), or the importer finds references to nodes it never got."""
        nodes = list(self.nodes.values())
        for node in list(nodes):
            nodes += await node.get_children(refs=ua.ObjectIds.HasProperty)
        await self.server.export_xml(nodes, str(path), export_values=True)
        use_xml_encoding_type_ids(path)

    # ----------------------------------------------------------------- writes
    def _checked_write(self, write):
        """Wrap the server's Write service: refuse writes of the wrong type, out of range, or to inputs."""

        async def checked(params: ua.WriteParameters, user: User = ADMIN) -> list[ua.StatusCode]:
            results: list[ua.StatusCode | None] = []
            passed = []
            for write_value in params.NodesToWrite:
                signal = self._by_nodeid.get(write_value.NodeId)
                status = None if signal is None or write_value.AttributeId != ua.AttributeIds.Value \
                    else self._refusal(signal, write_value.Value)
                results.append(status)
                if status is None:
                    passed.append(write_value)
                elif signal is not None:
                    log.info("write to %s refused: %s", signal.node, status.name)
            answers = iter(await write(dataclasses.replace(params, NodesToWrite=passed), user) if passed else [])
            merged = [status if status is not None else next(answers) for status in results]
            if any(self._by_nodeid.get(w.NodeId) is not None and s.is_good()
                   for w, s in zip(params.NodesToWrite, merged, strict=True)):
                self._alive()
            return merged

        return checked

    @staticmethod
    def _refusal(signal: Signal, value: ua.DataValue) -> ua.StatusCode | None:
        if signal.direction == INPUT:
            return ua.StatusCode(ua.StatusCodes.BadNotWritable)
        variant = value.Value
        if variant is None or variant.VariantType != ua.VariantType[signal.type]:
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        if signal.out_of_range(variant.Value):
            return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
        return None

    def _alive(self) -> None:
        self._last_alive = time.monotonic()
        self.plant.watchdog_tripped = False

    # ----------------------------------------------------------------- cycles
    def _apply_outputs(self) -> None:
        for signal in self.signals:
            if signal.direction == OUTPUT:
                written = self.server.read_attribute_value(self.nodes[signal.node].nodeid).Value
                assert written is not None, f"{signal.node} lost its value"
                signal.apply(written.Value)

    async def _publish(self) -> None:
        now = datetime.now(UTC)
        for signal in self.signals:
            if signal.direction != INPUT:
                continue
            value = self.forces.value(signal, signal.value())
            if value == self._published[signal.node]:
                continue
            self._published[signal.node] = value
            if value is OFFLINE:  # a read answers Bad, as for a sensor whose I/O module dropped off the bus
                data = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadNoCommunication),
                                    SourceTimestamp=now, ServerTimestamp=now)
            else:
                data = ua.DataValue(ua.Variant(value, ua.VariantType[signal.type]), SourceTimestamp=now,
                                    ServerTimestamp=now)
            await self.server.write_attribute_value(self.nodes[signal.node].nodeid, data)

    async def cycle(self, cycles: int = 1) -> int:
        """Outputs in, `cycles` plant steps, inputs out; returns the cycle count."""
        async with self._cycle_lock:
            self._apply_outputs()
            for _ in range(cycles):
                self.plant.step()
            await self._publish()
            return self.plant.cycles

    async def force(self, node: str, mode: str = "value", value: object = None, *, period_s: float | None = None,
                    user: str) -> Force:
        """Force an input or fail a drive or station (twin.commission.forcing); the controller reads it at once."""
        async with self._cycle_lock:
            force = self.forces.force(node, mode, value, period_s=period_s, user=user)
            await self._publish()
        return force

    async def release(self, node: str = ALL, *, user: str) -> list[str]:
        """Lift the force on `node`, or every force with "all"."""
        async with self._cycle_lock:
            released = self.forces.release(node, user=user)
            await self._publish()
        return released

    async def _step_method(self, parent: ua.NodeId, cycles: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
        """Step(cycles: UInt32) -> CycleCount: UInt64; refused (not raised: asyncua would say BadUnexpectedError)
        in free-run, where the clock steps the plant, and for a count out of range."""
        if not self.lockstep:
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)
        if cycles.VariantType != ua.VariantType.UInt32:
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        if not 1 <= cycles.Value <= MAX_STEP_CYCLES:
            return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
        self._alive()
        return [ua.Variant(await self.cycle(cycles.Value), ua.VariantType.UInt64)]

    async def _free_run(self) -> None:
        """A fixed-rate clock (not sleep(period)), so plant time keeps pace with wall time."""
        period = self.plant.dt / self.speedup
        next_time = time.monotonic()
        while True:
            await self.cycle()
            next_time += period
            delay = next_time - time.monotonic()
            if delay < -1.0:  # the machine stalled: resume the clock instead of bursting
                next_time = time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(self.watchdog_s / 4, 0.25))  # watchdog_s may change while running
            if self._last_alive is None or self.plant.watchdog_tripped:
                continue
            if time.monotonic() - self._last_alive > self.watchdog_s:
                await self.trip_watchdog()

    async def trip_watchdog(self) -> None:
        """Outputs to their safe values (belts stop, stoppers up, nothing starts) and the plant told so."""
        log.warning("controller silent for %.2f s: outputs to safe values", self.watchdog_s)
        async with self._cycle_lock:
            for signal in self.signals:
                if signal.direction == OUTPUT:
                    safe = ua.DataValue(ua.Variant(signal.safe, ua.VariantType[signal.type]))
                    await self.server.write_attribute_value(self.nodes[signal.node].nodeid, safe)
            self._apply_outputs()
            self.plant.watchdog_tripped = True
            await self._publish()


async def serve(layout: str | Path, *, port: int, lockstep: bool, speedup: float, cycle_s: float,
                watchdog_s: float, seed: int, export_nodeset: Path | None = None, host: str = "127.0.0.1",
                security: EndpointSecurity | None = None, physics: bool = False) -> None:
    """`twin commission`: serve until SIGINT or SIGTERM; with `export_nodeset`, write the UANodeSet instead."""
    server = CommissionServer(layout, port=port, lockstep=lockstep, speedup=speedup, cycle_s=cycle_s,
                              watchdog_s=watchdog_s, seed=seed, host=host, security=security, physics=physics)
    if export_nodeset is not None:
        await server.build()
        await server.export_nodeset(export_nodeset)
        print(f"twin commission: {len(server.nodes)} nodes written to {export_nodeset}", flush=True)
        return
    async with server:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (os_signal.SIGINT, os_signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        mode = "lock-step: call Line.Simulation.Step" if lockstep else f"free-run at {speedup:g}x real time"
        print(f"twin commission: {len(server.signals)} signals at {server.endpoint} ({mode}); "
              f"namespace {NAMESPACE} is ns={server.namespace_index}", flush=True)
        await stop.wait()
