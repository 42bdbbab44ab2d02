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

from twin.commission.address import NAMESPACE
from twin.commission.plant import PROGRAM_PICK_AND_PLACE
from twin.line.model import CONVEYOR, ROBOT, SINK, STATION, Element, LineModel, read_line

log = logging.getLogger("twin.sample_control")
CONVEYOR_SIGNALS = {"Run", "SpeedSetpoint", "Stopper", "Speed", "Encoder", "PartAtStart", "PartAtEnd"}
TASK = "TaskControls.Program.ParameterSet"


class ControlProgram:
    """Scans the line served at `client`; `edges` counts rising edges per photo-eye node."""

    def __init__(self, client: Client, model: LineModel):
        self.client = client
        self.model = model
        self.inputs: dict[str, object] = {}
        self.outputs: dict[str, object] = {}
        self.edges: dict[str, int] = {}
        self.scans = 0
        self._input_nodes: list[Node] = []
        self._input_names: list[str] = []
        self._output_nodes: dict[str, Node] = {}
        self._output_types: dict[str, ua.VariantType] = {}
        self._eyes: list[str] = []
        self._step: Node | None = None
        self._simulation: Node | None = None

    def _name(self, element: Element) -> str:
        kind = {CONVEYOR: "Conveyors", STATION: "Stations"}.get(element.kind)
        if element.kind == ROBOT:
            return f"Line.MotionDeviceSystem.Controllers.{element.name}.{TASK}"
        return f"Line.{kind}.{element.name}" if kind else ""

    async def setup(self) -> None:
        """Find the I/O: outputs by name, photo-eyes by browsing each conveyor."""
        ns = await self.client.get_namespace_index(NAMESPACE)

        def node(name: str) -> Node:
            return self.client.get_node(f"ns={ns};s={name}")

        outputs, inputs = ["Line.Reset"], []
        for element in self.model.elements:
            base = self._name(element)
            if element.kind == CONVEYOR:
                outputs += [f"{base}.Run", f"{base}.SpeedSetpoint", f"{base}.Stopper"]
                inputs += [f"{base}.PartAtStart", f"{base}.PartAtEnd"]
                for child in await node(base).get_children():
                    name = str((await child.read_browse_name()).Name)
                    if name not in CONVEYOR_SIGNALS:
                        self._eyes.append(f"{base}.{name}")
            elif element.kind == STATION:
                outputs += [f"{base}.Start", f"{base}.Unload"]
                inputs += [f"{base}.PartPresent", f"{base}.Done", f"{base}.Fault"]
            elif element.kind == ROBOT:
                outputs += [f"{base}.ProgramNumber", f"{base}.Start"]
                inputs += [f"{base}.Busy", f"{base}.ProgramDone", f"{base}.AtHome", f"{base}.Fault"]
        inputs += self._eyes
        self._input_names = inputs
        self._input_nodes = [node(name) for name in inputs]
        self._output_nodes = {name: node(name) for name in outputs}
        for name, output in self._output_nodes.items():
            variant = (await output.read_data_value()).Value
            assert variant is not None, f"{name} has no value"
            self._output_types[name], self.outputs[name] = variant.VariantType, variant.Value
        self.edges = dict.fromkeys(self._eyes, 0)
        self._simulation = node("Line.Simulation")
        self._step = node("Line.Simulation.Step")

    async def scan(self) -> None:
        values = await self.client.read_values(self._input_nodes)
        previous = self.inputs
        self.inputs = dict(zip(self._input_names, values, strict=True))
        for eye in self._eyes:
            if self.inputs[eye] and not previous.get(eye, False):
                self.edges[eye] += 1
        self.logic()
        names = list(self._output_nodes)
        await self.client.write_values(
            [self._output_nodes[name] for name in names],
            [ua.DataValue(ua.Variant(self.outputs[name], self._output_types[name])) for name in names])
        self.scans += 1

    async def step(self, cycles: int = 1) -> int:
        """Lock-step only: advance the plant; returns its cycle count."""
        assert self._simulation is not None and self._step is not None, "call setup() first"
        return await self._simulation.call_method(self._step, ua.Variant(cycles, ua.VariantType.UInt32))

    async def run(self, scans: int, *, lockstep: bool, scan_s: float = 0.05) -> None:
        for _ in range(scans):
            await self.scan()
            if lockstep:
                await self.step()
            else:
                await asyncio.sleep(scan_s)

    # ----------------------------------------------------------------- the logic
    def _can_take(self, element: Element) -> bool:
        base = self._name(element)
        if element.kind == STATION:
            return not self.inputs[f"{base}.PartPresent"] and not self.inputs[f"{base}.Fault"]
        if element.kind == CONVEYOR:
            return not self.inputs[f"{base}.PartAtStart"]
        return element.kind == SINK

    def _has_part_ready(self, element: Element) -> bool:
        base = self._name(element)
        if element.kind == CONVEYOR:
            return bool(self.inputs[f"{base}.PartAtEnd"])
        return element.kind == STATION and bool(self.inputs[f"{base}.Done"] and not self.inputs[f"{base}.Fault"])

    def logic(self) -> None:
        model, i, o = self.model, self.inputs, self.outputs
        faulted = any(i[name] for name in i if name.endswith(".Fault"))
        o["Line.Reset"] = faulted and not o["Line.Reset"]  # pulse while anything is faulted
        for index, element in enumerate(model.elements):
            base = self._name(element)
            after = [model.elements[j] for j in model.successors(index)]
            if element.kind == CONVEYOR:
                o[f"{base}.Run"] = True
                o[f"{base}.SpeedSetpoint"] = element.parameters["twin:speed"]
                handed_on = [e for e in after if e.kind != ROBOT]  # robots pick at the raised stopper
                o[f"{base}.Stopper"] = not any(self._can_take(e) for e in handed_on)
            elif element.kind == STATION:
                o[f"{base}.Start"] = bool(i[f"{base}.PartPresent"] and not i[f"{base}.Done"])
                o[f"{base}.Unload"] = bool(i[f"{base}.Done"]) and any(e.kind != ROBOT for e in after)
            elif element.kind == ROBOT:
                before = [model.elements[j] for j in model.predecessors(index)]
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
