"""`twin opcua browse`: the address space as a tree, and a draft binding file matched to a scene."""

import asyncio

from pxr import Usd

from tests.helpers import free_port
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


def test_the_draft_loads_whatever_the_node_ids_and_names_hold(tmp_path):
    """Node ids with quotes, ': ', ' #' or backslashes, and names that clean to the same attribute."""
    from twin.connectors.browse import BrowsedNode, draft_bindings

    odd_ids = ['nsu=http://plant.example/UA/;s=Press "7": speed # mm/s', "ns=3;s=C:\\line\\tag",
               "ns=3;s=Speed\x7f\x85\u2028end"]
    variables = [BrowsedNode(node_id, f"3:{name}", name, "Variable", 1, "Double", "rw", kind="float",
                             parents=("Press 7",))
                 for node_id, name in zip(odd_ids, ["Speed", "Speed!", "speed"], strict=True)]
    tree = [BrowsedNode("ns=3;s=Press", "3:Press 7", "Press 7", "Object", 0, children=variables)]
    path = tmp_path / "draft.yaml"
    path.write_text(draft_bindings(tree, "opc.tcp://127.0.0.1:4840/a #b/"))
    draft = load_bindings(path)
    assert draft.servers["plc"].endpoint == "opc.tcp://127.0.0.1:4840/a #b/"
    assert [b.node for b in draft.bindings] == odd_ids
    assert [b.attr for b in draft.bindings] == ["twin:speed", "twin:speed2", "twin:speed3"]
    assert {b.prim for b in draft.bindings} == {"/Unmapped/Press_7"}
