"""`twin opcua browse`: the address space as a tree, and a draft binding file matched to a scene."""

import asyncio

from pxr import Usd

from tests.conftest import free_port
from twin.cli import main
from twin.connectors.bindings import load_bindings, validate_against_stage
from twin.sample_factory.plc import SamplePlc


def test_browse_prints_the_tree_and_drafts_bindings_for_the_scene(sample_layout, tmp_path, capsys):
    async def scenario():
        async with SamplePlc(free_port(), warm_up_s=1) as plc:
            out = tmp_path / "draft.yaml"
            # the CLI runs its own event loop: give it a thread of its own
            code = await asyncio.to_thread(main, ["opcua", "browse", plc.endpoint, "--out", str(out),
                                                  "--scene", str(sample_layout)])
            return code, out

    code, out = asyncio.run(scenario())
    assert code == 0
    printed = capsys.readouterr().out
    assert "2:Conveyor1  (nsu=urn:factory-twin:sample-plc;s=Line.Conveyor1)" in printed
    assert "2:JointPositions  (nsu=urn:factory-twin:sample-plc;s=Line.Robot1.JointPositions)  Double[6]  r" in printed
    assert "2:SpeedSetpoint" in printed and "Double  rw" in printed
    draft = load_bindings(out)
    validate_against_stage(draft, Usd.Stage.Open(str(sample_layout)))  # every drafted prim exists
    speed = draft.find("/Factory/Line/Conveyor1", "twin:speed")
    assert speed.node == "nsu=urn:factory-twin:sample-plc;s=Line.Conveyor1.Speed" and speed.kind == "float"
    joints = draft.find("/Factory/Line/Robot1", "twin:jointPositions")
    assert joints.width == 6
    assert draft.find("/Factory/Line/Conveyor1", "twin:speedSetpoint").direction == "both"
    assert draft.find("/Factory/Line/Machining", "twin:state").kind == "int"
