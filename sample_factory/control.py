"""The sample line's control program: the control half of the simulated PLC, as a scan cycle over OPC-UA.

Each scan reads every input in one Read, runs the logic, and writes every output in one Write (writing all
of them each scan also feeds the server's watchdog). Against `twin commission --lockstep` it then calls
`Line.Simulation.Step(1)`, so each scan sees exactly one plant cycle. The logic is generic over the layout's
line (twin.line.model): belts run at their nominal speed, a stopper drops when the element after it can
take the part, stations process what they hold, robots pick and place when there is a part and a free
place, faults are reset. It counts rising edges of every photo-eye, as a PLC counts parts.

    python -m twin.sample_factory.control LAYOUT --endpoint opc.tcp://127.0.0.1:4841/twin/commission/ [--lockstep]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from asyncua import Client, Node, ua
from pxr import Usd

from twin.commission.address import NAMESPACE, Signal
from twin.commission.forcing import Forces
from twin.commission.plant import PROGRAM_PICK_AND_PLACE, Plant
from twin.line.model import CONVEYOR, ROBOT, SINK, STATION, Element, LineModel, read_line

log = logging.getLogger("twin.sample_control")
CONVEYOR_SIGNALS = {"Run", "SpeedSetpoint", "Stopper", "Speed", "Encoder", "PartAtStart", "PartAtEnd"}
TASK = "TaskControls.Program.ParameterSet"


class OpcUaIO:
    """The line's I/O over OPC-UA: one Read for the inputs, one Write for the outputs, the Step method."""

    def __init__(self, client: Client):
        self.client = client
        self._ns = 0
        self._inputs: list[Node] = []
        self._outputs: list[Node] = []
        self._types: list[ua.VariantType] = []
        self._simulation: Node | None = None
        self._step: Node | None = None

    def _node(self, name: str) -> Node:
        return self.client.get_node(f"ns={self._ns};s={name}")

    async def connect(self) -> None:
        self._ns = await self.client.get_namespace_index(NAMESPACE)
        self._simulation, self._step = self._node("Line.Simulation"), self._node("Line.Simulation.Step")

    async def children(self, name: str) -> list[str]:
        return [str((await child.read_browse_name()).Name) for child in await self._node(name).get_children()]

    async def bind(self, inputs: list[str], outputs: list[str]) -> dict[str, object]:
        """Fix the nodes each scan reads and writes; returns the outputs' values now."""
        self._inputs = [self._node(name) for name in inputs]
        self._outputs = [self._node(name) for name in outputs]
        values = {}
        for name, node in zip(outputs, self._outputs, strict=True):
            variant = (await node.read_data_value()).Value
            assert variant is not None, f"{name} has no value"
            self._types.append(variant.VariantType)
            values[name] = variant.Value
        return values

    async def read(self) -> list[object]:
        return await self.client.read_values(self._inputs)

    async def write(self, values: list[object]) -> None:
        await self.client.write_values(self._outputs, [ua.DataValue(ua.Variant(value, kind))
                                                       for value, kind in zip(values, self._types, strict=True)])

    async def step(self, cycles: int) -> int:
        assert self._simulation is not None and self._step is not None, "call connect() first"
        return await self._simulation.call_method(self._step, ua.Variant(cycles, ua.VariantType.UInt32))


class PlantIO:
    """The same I/O in-process, on a CommissionServer's plant without the network: a lock-step scan as the
    server runs it (outputs in, plant cycles, inputs out, forces applied), fast enough for hours of plant time.
    Runs of the OPC-UA path and this one agree cycle for cycle (tests/test_commission_lockstep.py)."""

    def __init__(self, plant: Plant, signals: list[Signal], forces: Forces | None = None):
        self.plant, self.forces = plant, forces
        self._by_name = {signal.node: signal for signal in signals}
        self._inputs: list[Signal] = []
        self._outputs: list[Signal] = []
        self._written: list[object] = []

    async def connect(self) -> None:
        pass

    async def children(self, name: str) -> list[str]:
        depth = name.count(".") + 1
        return [signal.path[depth] for signal in self._by_name.values()
                if signal.node.startswith(f"{name}.") and len(signal.path) == depth + 1]

    async def bind(self, inputs: list[str], outputs: list[str]) -> dict[str, object]:
        self._inputs = [self._by_name[name] for name in inputs]
        self._outputs = [self._by_name[name] for name in outputs]
        self._written = [signal.safe for signal in self._outputs]
        return dict(zip(outputs, self._written, strict=True))

    async def read(self) -> list[object]:
        if self.forces is None or not self.forces.active:
            return [signal.value() for signal in self._inputs]
        return [self.forces.value(signal, signal.value()) for signal in self._inputs]

    async def write(self, values: list[object]) -> None:
        self._written = list(values)

    async def step(self, cycles: int) -> int:
        for signal, value in zip(self._outputs, self._written, strict=True):
            signal.apply(value)
        for _ in range(cycles):
            self.plant.step()
        return self.plant.cycles


class ControlProgram:
    """Scans the line served at `io` (an asyncua Client, or an OpcUaIO or PlantIO); `edges` counts rising
    edges per photo-eye node."""

    def __init__(self, io: Client | OpcUaIO | PlantIO, model: LineModel):
        self.io = OpcUaIO(io) if isinstance(io, Client) else io
        self.model = model
        self.inputs: dict[str, object] = {}
        self.outputs: dict[str, object] = {}
        self.edges: dict[str, int] = {}
        self.scans = 0
        self._input_names: list[str] = []
        self._output_names: list[str] = []
        self._eyes: list[str] = []
        self._faults: list[str] = []
        self._bases = {element.path: self._name(element) for element in model.elements}
        self._neighbours = [([model.elements[j] for j in model.predecessors(index)],
                             [model.elements[j] for j in model.successors(index)])
                            for index in range(len(model.elements))]

    def _name(self, element: Element) -> str:
        kind = {CONVEYOR: "Conveyors", STATION: "Stations"}.get(element.kind)
        if element.kind == ROBOT:
            return f"Line.MotionDeviceSystem.Controllers.{element.name}.{TASK}"
        return f"Line.{kind}.{element.name}" if kind else ""

    async def setup(self) -> None:
        """Find the I/O: outputs by name, photo-eyes by browsing each conveyor."""
        await self.io.connect()
        outputs, inputs = ["Line.Reset"], []
        for element in self.model.elements:
            base = self._name(element)
            if element.kind == CONVEYOR:
                outputs += [f"{base}.Run", f"{base}.SpeedSetpoint", f"{base}.Stopper"]
                inputs += [f"{base}.PartAtStart", f"{base}.PartAtEnd"]
                self._eyes += [f"{base}.{name}" for name in await self.io.children(base)
                               if name not in CONVEYOR_SIGNALS]
            elif element.kind == STATION:
                outputs += [f"{base}.Start", f"{base}.Unload"]
                inputs += [f"{base}.PartPresent", f"{base}.Done", f"{base}.Fault"]
            elif element.kind == ROBOT:
                outputs += [f"{base}.ProgramNumber", f"{base}.Start"]
                inputs += [f"{base}.Busy", f"{base}.ProgramDone", f"{base}.AtHome", f"{base}.Fault"]
        inputs += self._eyes
        self._faults = [name for name in inputs if name.endswith(".Fault")]
        self._input_names, self._output_names = inputs, outputs
        self.outputs = await self.io.bind(inputs, outputs)
        self.edges = dict.fromkeys(self._eyes, 0)

    async def scan(self) -> None:
        values = await self.io.read()
        previous = self.inputs
        self.inputs = dict(zip(self._input_names, values, strict=True))
        for eye in self._eyes:
            if self.inputs[eye] and not previous.get(eye, False):
                self.edges[eye] += 1
        self.logic()
        await self.io.write([self.outputs[name] for name in self._output_names])
        self.scans += 1

    async def step(self, cycles: int = 1) -> int:
        """Lock-step only: advance the plant; returns its cycle count."""
        return await self.io.step(cycles)

    async def run(self, scans: int, *, lockstep: bool, scan_s: float = 0.05) -> None:
        for _ in range(scans):
            await self.scan()
            if lockstep:
                await self.step()
            else:
                await asyncio.sleep(scan_s)

    # ----------------------------------------------------------------- the logic
    def _can_take(self, element: Element) -> bool:
        base = self._bases[element.path]
        if element.kind == STATION:
            return not self.inputs[f"{base}.PartPresent"] and not self.inputs[f"{base}.Fault"]
        if element.kind == CONVEYOR:
            return not self.inputs[f"{base}.PartAtStart"]
        return element.kind == SINK

    def _has_part_ready(self, element: Element) -> bool:
        base = self._bases[element.path]
        if element.kind == CONVEYOR:
            return bool(self.inputs[f"{base}.PartAtEnd"])
        return element.kind == STATION and bool(self.inputs[f"{base}.Done"] and not self.inputs[f"{base}.Fault"])

    def logic(self) -> None:
        i, o = self.inputs, self.outputs
        faulted = any(i[name] for name in self._faults)
        o["Line.Reset"] = faulted and not o["Line.Reset"]  # pulse while anything is faulted
        for element, (before, after) in zip(self.model.elements, self._neighbours, strict=True):
            base = self._bases[element.path]
            if element.kind == CONVEYOR:
                o[f"{base}.Run"] = True
                o[f"{base}.SpeedSetpoint"] = element.parameters["twin:speed"]
                handed_on = [e for e in after if e.kind != ROBOT]  # robots pick at the raised stopper
                o[f"{base}.Stopper"] = not any(self._can_take(e) for e in handed_on)
            elif element.kind == STATION:
                o[f"{base}.Start"] = bool(i[f"{base}.PartPresent"] and not i[f"{base}.Done"])
                o[f"{base}.Unload"] = bool(i[f"{base}.Done"]) and any(e.kind != ROBOT for e in after)
            elif element.kind == ROBOT:
                o[f"{base}.ProgramNumber"] = PROGRAM_PICK_AND_PLACE
                if i[f"{base}.ProgramDone"]:
                    o[f"{base}.Start"] = False  # acknowledge
                elif not o[f"{base}.Start"]:
                    o[f"{base}.Start"] = bool(
                        i[f"{base}.AtHome"] and not i[f"{base}.Busy"] and not i[f"{base}.Fault"]
                        and any(self._has_part_ready(e) for e in before) and any(self._can_take(e) for e in after))


async def _main(layout: str, endpoint: str, lockstep: bool, scans: int) -> None:
    stage = Usd.Stage.Open(layout)
    async with Client(endpoint) as client:
        program = ControlProgram(client, read_line(stage))
        await program.setup()
        await program.run(scans, lockstep=lockstep)
        print(f"{program.scans} scans; photo-eye rising edges: {program.edges}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The sample line's control program (an OPC-UA client)")
    parser.add_argument("layout", type=Path)
    parser.add_argument("--endpoint", default="opc.tcp://127.0.0.1:4841/twin/commission/")
    parser.add_argument("--lockstep", action="store_true", help="call Step after every scan")
    parser.add_argument("--scans", type=int, default=10_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    asyncio.run(_main(str(args.layout), args.endpoint, args.lockstep, args.scans))


if __name__ == "__main__":
    main()
