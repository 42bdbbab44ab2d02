"""The commissioning nodeset in another stack: `twin commission --export-nodeset` loaded by node-opcua.

tests/interop/nodeset_server.mjs serves the standard nodeset plus the exported file; an asyncua client
browses the robots' OPC 40010 axes and program variables, the stations' OPC 40001 nodes, the belts' ranges and the
Step method's arguments there.
"""

from __future__ import annotations

import asyncio

import pytest
from asyncua import Client, ua

from tests.test_interop_node_opcua import node_opcua
from twin.cli import main
from twin.commission.address import NAMESPACE

ROBOT = "Line.MotionDeviceSystem.MotionDevices.Robot1"
PROGRAM = "Line.MotionDeviceSystem.Controllers.Robot1.TaskControls.Program.ParameterSet"
STATION = "Line.Stations.Machining"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_node_opcua_imports_the_exported_nodeset_and_serves_robots_and_stations(sample_layout, tmp_path):
    nodeset = tmp_path / "line.xml"
    assert main(["commission", str(sample_layout), "--export-nodeset", str(nodeset)]) == 0

    async def browse(endpoint: str):
        async with Client(endpoint, timeout=10) as client:
            ns = await client.get_namespace_index(NAMESPACE)

            def node(name: str):
                return client.get_node(f"ns={ns};s={name}")

            axes = [(await axis.read_browse_name()).Name for axis in await node(f"{ROBOT}.Axes").get_children()]
            program = {(await child.read_browse_name()).Name: await child.read_data_type()
                       for child in await node(PROGRAM).get_children()}
            station = {(await child.read_browse_name()).Name for child in await node(STATION).get_children()}
            position = node(f"{ROBOT}.Axes.joint_a2.ParameterSet.ActualPosition")
            unit = await position.get_child(ua.QualifiedName("EngineeringUnits", 0))
            state = await node(f"{STATION}.MachineryItemState.CurrentState").read_value()
            start_level = (await node(f"{PROGRAM}.Start").read_attribute(ua.AttributeIds.AccessLevel)).Value.Value
            speed_range = await node("Line.Conveyors.Conveyor1.SpeedSetpoint.EURange").read_value()
            step = node("Line.Simulation.Step")
            arguments = await step.get_child(ua.QualifiedName("InputArguments", 0))
            return (axes, program, station, await unit.read_value(), state, start_level, speed_range.High,
                    await step.read_node_class(), (await arguments.read_value())[0].DataType)

    with node_opcua("nodeset_server.mjs", str(nodeset), log=tmp_path / "server.log") as endpoint:
        axes, program, station, unit, state, start_level, speed_high, step_class, step_argument = \
            asyncio.run(browse(endpoint))
    assert axes == [f"joint_a{i}" for i in range(1, 7)]
    assert program["ProgramNumber"] == ua.NodeId(ua.ObjectIds.UInt16)
    assert program["Start"] == program["ProgramDone"] == program["AtHome"] == ua.NodeId(ua.ObjectIds.Boolean)
    assert {"Identification", "MachineryItemState", "PartPresent", "Done", "Start", "Unload"} <= station
    assert unit == "rad"
    assert state == "NotExecuting"
    assert start_level & ua.AccessLevel.CurrentWrite.mask
    assert speed_high == pytest.approx(0.7)  # ExtensionObjects too (twin.commission.nodeset)
    assert step_class == ua.NodeClass.Method and step_argument == ua.NodeId(ua.ObjectIds.UInt32)
