from pathlib import Path

import pytest

from twin.connectors.bindings import load_bindings, merge_bindings, qualified_name_parts, validate_against_stage
from twin.core.errors import BindingError
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
    assert len(bindings.bindings) == 43
    assert bindings.servers["plc"].endpoint == "opc.tcp://127.0.0.1:5000/factory/"
    validate_against_stage(bindings, Usd.Stage.Open(str(sample_layout)))


def test_the_physics_plants_bindings_merge_with_the_samples(sample_layout, tmp_path):
    """`twin demo` reads bindings_physics.yaml besides bindings.yaml: one more binding, the same server; a later
    file may not feed a target twice, move a server elsewhere, or publish."""
    from pxr import Usd

    endpoint = {"plc": "opc.tcp://127.0.0.1:5000/factory/"}
    extra = load_bindings(SAMPLE.with_name("bindings_physics.yaml"), endpoint)
    validate_against_stage(extra, Usd.Stage.Open(str(sample_layout)))
    merged = merge_bindings(load_bindings(SAMPLE, endpoint), extra)
    assert len(merged.bindings) == 44 and merged.servers["plc"].endpoint == endpoint["plc"]
    poses = merged.find("/Factory/Line", "twin:physics:partPoses")
    assert poses.width % 7 == 0 and poses.history_ms == 100.0  # the historian keeps 10 poses a second
    # an error found later, at run time, names the file and line the binding came from, not the first file's
    error = str(merged.error(poses, "the server refused it"))
    assert error.startswith(f"{SAMPLE.with_name('bindings_physics.yaml')}:{poses.line}: ") and poses.line > 1
    speed = merged.find("/Factory/Line/Conveyor1", "twin:speed")
    assert str(merged.error(speed, "x")).startswith(f"{SAMPLE}:{speed.line}: ")
    with pytest.raises(BindingError, match=r"bindings.yaml:\d+: .*twin:speed is already fed by"):
        merge_bindings(load_bindings(SAMPLE, endpoint), load_bindings(write(tmp_path, GOOD), endpoint))
    with pytest.raises(BindingError, match="server 'plc' is opc.tcp://127.0.0.1:4840/factory/, but"):
        merge_bindings(load_bindings(SAMPLE, endpoint), load_bindings(write(tmp_path, GOOD)))


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
         9, "/Factory/Line/Conveyor1.twin:speed is already fed by ns=2;s=Line.Conveyor1.Speed (line 5)"),
        (lambda t: t.replace("width: 6", "width: six"), 13, "width must be a positive integer"),
        (lambda t: t.replace("/factory/\n", "/factory/\n    health_check_s: 0.1\n"), 4,
         "health_check_s must be >= 0.5, got 0.1"),
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


FULL = """servers:
  plc:
    endpoint: opc.tcp://127.0.0.1:4840/factory/
    security:
      policy: Basic256Sha256
      mode: SignAndEncrypt
      certificate: pki/twin-client-cert.der
      private_key: pki/twin-client-key.pem
      trusted_server_certificates: [pki/plc.der]
    username: operator
    password_env: PLC_PASSWORD
    publishing_ms: 50
    health_check_s: 8
bindings:
  - server: plc
    browse_path: 2:Factory/2:Line/2:Conveyor1/2:Speed
    prim: /Factory/Line/Conveyor1
    attr: twin:speed
    unit: m/s
    scale: 0.001
    offset: 0
    deadband: {absolute: 0.5}
    queue_size: 10
    direction: both
    limits: {min: 0, max: 1.2}
  - server: plc
    node: "ns=2;s=Line.Machining.State"
    prim: /Factory/Line/Machining
    attr: twin:state
    kind: int
    enum: {0: idle, 1: working, 2: blocked, 3: starved, 4: down}
    history_ms: 250
"""


def test_every_field_of_the_format_is_read(tmp_path):
    bindings = load_bindings(write(tmp_path, FULL))
    server = bindings.servers["plc"]
    assert server.security.policy == "Basic256Sha256" and server.security.mode == "SignAndEncrypt"
    assert server.security.certificate == (tmp_path / "pki/twin-client-cert.der").resolve()
    assert server.security.trusted_server_certificates == ((tmp_path / "pki/plc.der").resolve(),)
    assert (server.username, server.password_env, server.publishing_ms) == ("operator", "PLC_PASSWORD", 50.0)
    assert server.health_check_s == 8.0
    speed, state = bindings.bindings
    assert speed.browse_path == ("2:Factory", "2:Line", "2:Conveyor1", "2:Speed") and speed.node == ""
    assert (speed.scale, speed.deadband.kind, speed.deadband.value, speed.queue_size) == (0.001, "absolute", 0.5, 10)
    assert (speed.history_ms, state.history_ms) == (0.0, 250.0)
    assert speed.writable and speed.readable and (speed.minimum, speed.maximum) == (0.0, 1.2)
    assert state.enum[3] == "starved" and not state.writable


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("    password_env: PLC_PASSWORD\n", "    password: hunter2\n"),
         "passwords are never read from the binding file"),
        (lambda t: t.replace("mode: SignAndEncrypt", "mode: None"), "contradict each other"),
        (lambda t: t.replace("policy: Basic256Sha256", "policy: Basic128"), "policy must be one of"),
        (lambda t: t.replace("    username: operator\n", ""), "username and password_env go together"),
        (lambda t: t.replace("    direction: both\n", ""), "limits apply to writes"),
        (lambda t: t.replace("{min: 0, max: 1.2}", "{min: 2, max: 1.2}"), "min 2.0 is above max 1.2"),
        (lambda t: t.replace("{absolute: 0.5}", "{percent: 150}"), "within 0..100"),
        (lambda t: t.replace("    kind: int\n    enum", "    kind: text\n    enum"), "an enum map needs kind int"),
        (lambda t: t.replace("browse_path: 2:Factory", 'node: "ns=2;s=X"\n    browse_path: 2:Factory'),
         "exactly one of 'node' and 'browse_path'"),
        (lambda t: t.replace("2:Factory/2:Line", "Factory/Line"), "browse_path must be qualified names"),
        (lambda t: t.replace("scale: 0.001", "scale: 0"), "scale must not be 0"),
        (lambda t: t.replace("history_ms: 250", "history_ms: -1"), "history_ms must be >= 0, got -1"),
    ],
)
def test_contradictions_and_unsafe_settings_are_refused(tmp_path, change, message):
    path = write(tmp_path, change(FULL))
    with pytest.raises(BindingError, match=message) as caught:
        load_bindings(path)
    assert caught.value.line is not None and str(caught.value).startswith(f"{path}:{caught.value.line}: ")


def test_browse_paths_with_namespace_uris_keep_their_slashes_and_colons(tmp_path):
    uri = "http://plant.example/UA/Line1/"
    path = write(tmp_path, f"""servers:
  plc:
    endpoint: opc.tcp://127.0.0.1:4840/
bindings:
  - server: plc
    browse_path: nsu={uri}:Line/2:Press:7/nsu={uri}:Speed
    prim: /P
    attr: twin:a
  - server: plc
    browse_path: ["nsu={uri}:Line", "2:A/B"]
    prim: /P
    attr: twin:b
""")
    first, second = load_bindings(path).bindings
    assert first.browse_path == (f"nsu={uri}:Line", "2:Press:7", f"nsu={uri}:Speed")
    assert second.browse_path == (f"nsu={uri}:Line", "2:A/B")  # the list form takes names with a slash
    assert [qualified_name_parts(e) for e in first.browse_path] == [
        (f"nsu={uri}", "Line"), ("2", "Press:7"), (f"nsu={uri}", "Speed")]


@pytest.mark.parametrize("target", [
    "browse_path: 2:Factory/Line/2:Speed",  # a forgotten namespace index
    "browse_path: 2:Factory//2:Line",
    "browse_path: 70000:Factory",  # namespace indexes are UInt16
    'node: "ns=70000;s=Speed"',
    'node: "ns=2;s=Speed\\n"',
])
def test_malformed_node_ids_and_browse_paths_are_refused_at_load(tmp_path, target):
    path = write(tmp_path, f"""servers:
  plc:
    endpoint: opc.tcp://127.0.0.1:4840/
bindings:
  - server: plc
    {target}
    prim: /P
    attr: twin:a
""")
    with pytest.raises(BindingError, match=r"(?s)bindings.yaml:\d+: .*(malformed NodeId|browse_path must be)"):
        load_bindings(path)


@pytest.mark.parametrize(("change", "line", "message"), [
    # YAML keeps the last of two equal keys; the schema refuses them wherever they are
    (lambda t: t.replace("bindings:\n", "  plc:\n    endpoint: opc.tcp://10.0.0.9:4840/\nbindings:\n"), 14,
     "key 'plc' appears twice"),
    (lambda t: t.replace("{0: idle, 1: working", "{0: idle, 0: working"), 31,
     "binding ns=2;s=Line.Machining.State: key '0' appears twice"),
    (lambda t: t.replace("{0: idle", "{zero: idle"), 31, "enum must be a map of integer codes to names"),
    (lambda t: t.replace("{min: 0, max: 1.2}", "{min: 0, top: 1.2}"), 25,
     "binding 2:Factory/2:Line/2:Conveyor1/2:Speed limits: unknown key 'top' (allowed: max, min)"),
    (lambda t: t.replace("{absolute: 0.5}", "{absolute: -1}"), 22, "deadband: absolute must be >= 0, got -1"),
    (lambda t: t.replace("queue_size: 10", "queue_size: 10.0"), 23, "queue_size must be a positive integer, got 10.0"),
    (lambda t: t.replace("publishing_ms: 50", "publishing_ms: true"), 12, "publishing_ms must be a number, got True"),
    (lambda t: t.replace("      mode: SignAndEncrypt\n", "      mode: SignAndEncrypt\n      pin: 1234\n"), 7,
     "server 'plc' security: unknown key 'pin'"),
    (lambda t: t.replace("    kind: int\n", "    kind: int\n    alarms: [{high: 3, colour: red}]\n"), 31,
     "binding ns=2;s=Line.Machining.State alarm: unknown alarm field 'colour'"),
])
def test_schema_errors_point_at_the_line_of_the_key(tmp_path, change, line, message):
    path = write(tmp_path, change(FULL))
    with pytest.raises(BindingError) as caught:
        load_bindings(path)
    assert (caught.value.line, message in str(caught.value)) == (line, True), str(caught.value)
