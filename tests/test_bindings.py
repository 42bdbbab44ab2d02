from pathlib import Path

import pytest

from twin.connectors.bindings import load_bindings, validate_against_stage
from twin.errors import BindingError
from twin.sample_factory import plc

SAMPLE = Path(plc.__file__).with_name("bindings.yaml")

GOOD = """servers:
  plc:
    endpoint: opc.tcp://127.0.0.1:4840/factory/
bindings:
  - server: plc
    node: "ns=2;s=Line.Conveyor1.Speed"
    prim: /Factory/Line/Conveyor1
    attr: twin:speed
  - server: plc
    node: "ns=2;s=Line.Robot1.JointPositions"
    prim: /Factory/Line/Robot1
    attr: twin:jointPositions
    width: 6
"""


def write(tmp_path, text):
    path = tmp_path / "bindings.yaml"
    path.write_text(text)
    return path


def test_sample_bindings_load_and_match_the_sample_layout(sample_layout):
    from pxr import Usd

    bindings = load_bindings(SAMPLE, {"plc": "opc.tcp://127.0.0.1:5000/factory/"})
    assert len(bindings.bindings) == 39
    assert bindings.servers["plc"].endpoint == "opc.tcp://127.0.0.1:5000/factory/"
    validate_against_stage(bindings, Usd.Stage.Open(str(sample_layout)))


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (lambda t: t.replace("    attr: twin:speed\n", "    attr: twin:speed\n    colour: red\n"), 9,
         "binding ns=2;s=Line.Conveyor1.Speed: unknown key 'colour'"),
        (lambda t: t.replace("    prim: /Factory/Line/Conveyor1\n", ""), 5, "missing 'prim'"),
        (lambda t: t.replace("ns=2;s=Line.Conveyor1.Speed", "ns=two;Speed"), 6, "malformed NodeId 'ns=two;Speed'"),
        (lambda t: t.replace("/Factory/Line/Conveyor1", "Factory/Line/Conveyor1"), 7, "must be an absolute path"),
        (lambda t: t.replace('plc\n    node: "ns=2;s=Line.Robot1', 'scada\n    node: "ns=2;s=Line.Robot1'), 9,
         "unknown server 'scada'"),
        (lambda t: t.replace("attr: twin:jointPositions", "attr: twin:speed")
         .replace("/Factory/Line/Robot1", "/Factory/Line/Conveyor1"),
         12, "/Factory/Line/Conveyor1.twin:speed is already fed by ns=2;s=Line.Conveyor1.Speed (line 5)"),
        (lambda t: t.replace("width: 6", "width: six"), 13, "width must be a positive integer"),
        (lambda t: t.replace("    attr: twin:speed\n", "    attr: twin:speed\n   kind: [float\n"), 9, "not valid YAML"),
    ],
)
def test_bad_bindings_name_file_line_and_binding(tmp_path, change, line, message):
    path = write(tmp_path, change(GOOD))
    with pytest.raises(BindingError) as caught:
        load_bindings(path)
    assert caught.value.path == path
    assert caught.value.line == line, str(caught.value)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_prims_missing_from_the_layout_are_named(tmp_path, sample_layout):
    from pxr import Usd

    path = write(tmp_path, GOOD.replace("/Factory/Line/Robot1", "/Factory/Line/Robot9"))
    with pytest.raises(BindingError, match=r"bindings.yaml:9: .*prim /Factory/Line/Robot9 is not in the layout"):
        validate_against_stage(load_bindings(path), Usd.Stage.Open(str(sample_layout)))


def test_missing_file_and_sections(tmp_path):
    with pytest.raises(BindingError, match="nowhere.yaml: file not found"):
        load_bindings(tmp_path / "nowhere.yaml")
    with pytest.raises(BindingError, match="missing section 'servers'"):
        load_bindings(write(tmp_path, "bindings: []\n"))
