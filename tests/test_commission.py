"""Virtual commissioning (issue 16): the sample line served over OPC-UA to its control program.

One lock-step server (a background event loop) serves the fast tests; the control program gets its own.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import Client, Server, ua
from pxr import Usd

from twin.cli import free_port, main
from twin.commission.address import NAMESPACE, OUTPUT, markdown_table
from twin.commission.plant import Plant
from twin.commission.server import CommissionServer
from twin.core.errors import LayoutError
from twin.line.model import read_line
from twin.sample_factory.control import ControlProgram

CYCLE_S = 0.05
C1 = "Line.Conveyors.Conveyor1"
PROGRAM = "Line.MotionDeviceSystem.Controllers.Robot1.TaskControls.Program.ParameterSet.ProgramNumber"


class ServedLine:
    """A CommissionServer on its own event loop in a thread, so each test can use asyncio.run."""

    def __init__(self, server: CommissionServer):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(server.start())

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def line(sample_layout) -> Iterator[ServedLine]:
    served = ServedLine(CommissionServer(sample_layout, port=free_port(), cycle_s=CYCLE_S, lockstep=True,
                                         watchdog_s=60.0))
    yield served
    served.close()


async def _client_nodes(client: Client, *names: str):
    ns = await client.get_namespace_index(NAMESPACE)
    return [client.get_node(f"ns={ns};s={name}") for name in names]


async def _write(node, value, kind: ua.VariantType) -> None:
    await node.write_value(ua.DataValue(ua.Variant(value, kind)))


async def _step(client: Client, cycles: int) -> int:
    simulation, step = await _client_nodes(client, "Line.Simulation", "Line.Simulation.Step")
    return await simulation.call_method(step, ua.Variant(cycles, ua.VariantType.UInt32))


def test_lockstep_inputs_reflect_exactly_the_outputs_written_before_the_step(line):
    async def scenario():
        async with Client(line.server.endpoint) as client:
            run, setpoint, speed, encoder, count, virtual_time = await _client_nodes(
                client, f"{C1}.Run", f"{C1}.SpeedSetpoint", f"{C1}.Speed", f"{C1}.Encoder",
                "Line.Simulation.CycleCount", "Line.Simulation.VirtualTime")
            start_count, start_encoder = await count.read_value(), await encoder.read_value()
            await _write(run, True, ua.VariantType.Boolean)
            await _write(setpoint, 0.3, ua.VariantType.Double)
            assert await speed.read_value() == 0.0  # written, not yet stepped: the plant has not seen it
            assert await _step(client, 1) == start_count + 1
            assert await speed.read_value() == 0.3
            assert await encoder.read_value() == start_encoder + 15  # 0.3 m/s * 0.05 s, 1 count per mm
            await _write(run, False, ua.VariantType.Boolean)
            assert await _step(client, 3) == start_count + 4
            assert await speed.read_value() == 0.0
            assert await encoder.read_value() == start_encoder + 15
            assert await count.read_value() == start_count + 4
            assert math.isclose(await virtual_time.read_value(), (start_count + 4) * CYCLE_S)

    asyncio.run(scenario())


def test_wrong_type_out_of_range_and_input_writes_are_refused_with_status_codes(line):
    async def scenario():
        async with Client(line.server.endpoint) as client:
            run, setpoint, program, encoder = await _client_nodes(
                client, f"{C1}.Run", f"{C1}.SpeedSetpoint", PROGRAM, f"{C1}.Encoder")
            await _write(setpoint, 0.2, ua.VariantType.Double)
            refused = [
                (run, ua.Variant(1, ua.VariantType.Int32), "BadTypeMismatch"),
                (setpoint, ua.Variant(1, ua.VariantType.Int32), "BadTypeMismatch"),
                (program, ua.Variant(1.0, ua.VariantType.Double), "BadTypeMismatch"),
                (setpoint, ua.Variant(5.0, ua.VariantType.Double), "BadOutOfRange"),  # the drive allows 0.7 m/s
                (setpoint, ua.Variant(-0.1, ua.VariantType.Double), "BadOutOfRange"),
                (setpoint, ua.Variant(math.nan, ua.VariantType.Double), "BadOutOfRange"),
                (program, ua.Variant(7, ua.VariantType.UInt16), "BadOutOfRange"),
                (encoder, ua.Variant(5, ua.VariantType.UInt32), "BadNotWritable"),
            ]
            for node, variant, status in refused:
                with pytest.raises(ua.UaStatusCodeError) as error:
                    await node.write_value(ua.DataValue(variant))
                assert ua.StatusCode(error.value.code).name == status, (node, variant)
            assert await setpoint.read_value() == 0.2  # nothing refused landed
            simulation, step = await _client_nodes(client, "Line.Simulation", "Line.Simulation.Step")
            with pytest.raises(ua.UaStatusCodeError) as error:
                await simulation.call_method(step, ua.Variant(0, ua.VariantType.UInt32))
            assert ua.StatusCode(error.value.code).name == "BadOutOfRange"

    asyncio.run(scenario())


def test_watchdog_puts_outputs_to_safe_values_when_the_controller_stops_stepping(line):
    server = line.server

    async def scenario():
        async with Client(server.endpoint) as client:
            run, setpoint, stopper, tripped, speed = await _client_nodes(
                client, f"{C1}.Run", f"{C1}.SpeedSetpoint", f"{C1}.Stopper", "Line.Simulation.WatchdogTripped",
                f"{C1}.Speed")
            await _write(run, True, ua.VariantType.Boolean)
            await _write(setpoint, 0.3, ua.VariantType.Double)
            await _write(stopper, False, ua.VariantType.Boolean)
            await _step(client, 1)
            assert await speed.read_value() == 0.3 and await tripped.read_value() is False
            server.watchdog_s = 0.3
            try:
                deadline = time.monotonic() + 5.0
                while not await tripped.read_value():  # the controller is silent: no writes, no steps
                    assert time.monotonic() < deadline, "the watchdog did not trip"
                    await asyncio.sleep(0.05)
            finally:
                server.watchdog_s = 60.0
            safe = [await run.read_value(), await setpoint.read_value(), await stopper.read_value()]
            assert safe == [False, 0.0, True]
            assert await speed.read_value() == 0.0  # the belt stopped without another step
            await _write(run, True, ua.VariantType.Boolean)  # the controller is back
            await _step(client, 1)
            assert await tripped.read_value() is False

    asyncio.run(scenario())


def test_nodeset_export_imports_into_another_server(line, tmp_path):
    path = tmp_path / "line.xml"
    line.call(line.server.export_nodeset(path))
    outputs = [signal for signal in line.server.signals if signal.direction == OUTPUT]

    async def scenario():
        other = Server()
        await other.init()
        other.set_endpoint(f"opc.tcp://127.0.0.1:{free_port()}/other/")
        await other.import_xml(str(path))
        ns = await other.get_namespace_index(NAMESPACE)
        for signal in line.server.signals:
            node = other.get_node(f"ns={ns};s={signal.node}")
            assert (await node.read_browse_name()).Name == signal.path[-1]
            assert await node.read_data_type() == ua.NodeId(ua.VariantType[signal.type].value, 0), signal.node
            if signal.unit:
                unit = await node.get_child(ua.QualifiedName("EngineeringUnits", 0))
                assert await unit.read_value() == signal.unit, signal.node
        for signal in outputs:
            level = await other.get_node(f"ns={ns};s={signal.node}").read_attribute(ua.AttributeIds.AccessLevel)
            assert level.Value.Value & ua.AccessLevel.CurrentWrite.mask, signal.node
        axis = other.get_node(f"ns={ns};s=Line.MotionDeviceSystem.MotionDevices.Robot2.Axes")
        assert len(await axis.get_children()) == 6
        speed_range = other.get_node(f"ns={ns};s={C1}.SpeedSetpoint.EURange")
        assert (await speed_range.read_value()).High == pytest.approx(0.7)
        step = other.get_node(f"ns={ns};s=Line.Simulation.Step")
        assert await step.read_node_class() == ua.NodeClass.Method
        arguments = await step.get_child(ua.QualifiedName("InputArguments", 0))
        assert (await arguments.read_value())[0].DataType == ua.NodeId(ua.ObjectIds.UInt32)

    asyncio.run(scenario())


def test_layout_the_plant_cannot_run_is_refused_naming_the_prim(sample_layout):
    stage = Usd.Stage.Open(str(sample_layout))
    stage.GetPrimAtPath("/Factory/Line/Conveyor2").GetAttribute("twin:partPitch").Set(0.15)
    with pytest.raises(LayoutError, match=r"Conveyor2: twin:partLength 0.2 is not shorter than twin:partPitch"):
        Plant(stage)


def test_cli_refuses_a_missing_layout_and_a_speedup_that_is_not_positive(tmp_path, capsys):
    assert main(["commission", str(tmp_path / "none.usda"), "--export-nodeset", str(tmp_path / "x.xml")]) == 2
    assert "none.usda: cannot be opened as a USD layout" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["commission", str(tmp_path / "none.usda"), "--speedup", "0"])
    assert "--speedup: expected a number > 0, got '0'" in capsys.readouterr().err


def test_docs_list_every_node_of_the_sample_with_type_direction_and_unit(line):
    docs = (Path(__file__).parents[1] / "docs" / "commissioning.md").read_text()
    assert markdown_table(line.server.signals) in docs


@pytest.mark.slow
def test_control_program_runs_the_line_in_lockstep_and_counts_every_part_at_each_eye(sample_layout):
    served = ServedLine(CommissionServer(sample_layout, port=free_port(), cycle_s=0.2, lockstep=True))
    plant = served.server.plant
    try:
        async def scenario():
            async with Client(served.server.endpoint) as client:
                program = ControlProgram(client, read_line(Usd.Stage.Open(str(sample_layout))))
                await program.setup()
                await program.run(600, lockstep=True)  # 120 s of plant time
                (parts_in,) = await _client_nodes(client, "Line.Sinks.Sink.PartsIn")
                return program, await parts_in.read_value()

        program, parts_in = asyncio.run(scenario())
    finally:
        served.close()
    assert plant.cycles == 600
    assert parts_in == plant.sinks["Sink"].parts_in >= 1  # parts went the whole way
    assert all(robot.cycles >= 1 for robot in plant.robots.values())
    passed = {f"Line.Conveyors.{name}.{eye.name}": eye.parts_passed
              for name, conveyor in plant.conveyors.items() for eye in conveyor.eyes}
    assert passed == program.edges  # no rising edge missed, none counted twice
    assert all(count >= 1 for count in passed.values())


@pytest.mark.slow
def test_free_run_moves_the_line_on_its_own_clock_and_stops_it_when_the_controller_disconnects(sample_layout):
    served = ServedLine(CommissionServer(sample_layout, port=free_port(), cycle_s=0.05, speedup=20.0,
                                         watchdog_s=0.3))
    plant = served.server.plant
    try:
        async def scenario():
            async with Client(served.server.endpoint) as client:
                program = ControlProgram(client, read_line(Usd.Stage.Open(str(sample_layout))))
                await program.setup()
                started = time.monotonic()
                while plant.sources["Source"].parts_out < 2:  # the plant's clock, not the scans, moves time
                    assert time.monotonic() - started < 30, "no parts in 30 s at 20x real time"
                    await program.run(1, lockstep=False, scan_s=0.01)
                return program.scans

        scans = asyncio.run(scenario())
        assert plant.cycles > scans and plant.conveyors["Conveyor1"].travel > 0
        deadline = time.monotonic() + 5.0
        while not plant.watchdog_tripped:  # the controller disconnected
            assert time.monotonic() < deadline, "the watchdog did not trip after the controller left"
            time.sleep(0.05)
        assert all(not conveyor.run and conveyor.speed == 0.0 for conveyor in plant.conveyors.values())
        assert all(conveyor.stopper for conveyor in plant.conveyors.values())
    finally:
        served.close()
