"""Binding files: which OPC-UA node feeds which prim attribute.

YAML, validated strictly, and every error names the file, the line and the binding,
because an integration engineer fixing a binding file of hundreds of entries needs to
land on the right line. Format (see sample_factory/bindings.yaml):

    servers:
      plc:
        endpoint: opc.tcp://127.0.0.1:4840/factory/
    bindings:
      - server: plc
        node: "nsu=urn:factory-twin:sample-plc;s=Line.Conveyor1.Speed"
        prim: /Factory/Line/Conveyor1
        attr: twin:speed
        unit: m/s            # optional
        kind: float          # float | int | bool | text (default float)
        width: 1             # values per update: 6 for a joint array (default 1)
        sampling_ms: 100     # optional, default 100
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from twin.errors import BindingError

KINDS = ("float", "int", "bool", "text")
_NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$")
_SERVER_KEYS = {"endpoint"}
_BINDING_KEYS = {"server", "node", "prim", "attr", "unit", "kind", "width", "sampling_ms"}


@dataclass(frozen=True)
class ServerConfig:
    name: str
    endpoint: str
    line: int


@dataclass(frozen=True)
class Binding:
    server: str
    node: str
    prim: str
    attr: str
    unit: str
    kind: str
    width: int
    sampling_ms: float
    line: int  # in the binding file, 1-based

    def describe(self) -> str:
        return f"binding {self.node} -> {self.prim}.{self.attr}"


@dataclass(frozen=True)
class BindingFile:
    path: Path
    servers: dict[str, ServerConfig]
    bindings: tuple[Binding, ...]

    def error(self, binding: Binding, message: str) -> BindingError:
        return BindingError(self.path, f"{binding.describe()}: {message}", line=binding.line)


def _plain(node: yaml.Node, path: Path):
    """A YAML node as plain Python, keeping mapping nodes for line-aware checks one level down."""
    if isinstance(node, yaml.ScalarNode):
        return yaml.safe_load(yaml.serialize(node))
    raise BindingError(path, f"expected a single value, found a {node.tag.rsplit(':', 1)[-1]}",
                       line=node.start_mark.line + 1)


def _mapping(node: yaml.Node, path: Path, what: str) -> list[tuple[str, yaml.Node, int]]:
    if not isinstance(node, yaml.MappingNode):
        raise BindingError(path, f"{what} must be a mapping", line=node.start_mark.line + 1)
    entries, seen = [], set()
    for key_node, value_node in node.value:
        key = key_node.value
        if key in seen:
            raise BindingError(path, f"{what}: key {key!r} appears twice", line=key_node.start_mark.line + 1)
        seen.add(key)
        entries.append((key, value_node, key_node.start_mark.line + 1))
    return entries


def load_bindings(path: str | Path, endpoint_overrides: dict[str, str] | None = None) -> BindingFile:
    """Read and validate a binding file; `endpoint_overrides` replaces servers' endpoints by name."""
    path = Path(path)
    try:
        root = yaml.compose(path.read_text())
    except FileNotFoundError:
        raise BindingError(path, "file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise BindingError(path, f"not valid YAML: {getattr(error, 'problem', error)}",
                           line=mark.line + 1 if mark else None) from None
    if root is None:
        raise BindingError(path, "the file is empty")
    sections = dict((key, (value, line)) for key, value, line in _mapping(root, path, "the file"))
    unknown = set(sections) - {"servers", "bindings"}
    if unknown:
        key = sorted(unknown)[0]
        raise BindingError(path, f"unknown section {key!r} (expected 'servers' and 'bindings')",
                           line=sections[key][1])
    for section in ("servers", "bindings"):
        if section not in sections:
            raise BindingError(path, f"missing section {section!r}", line=1)

    servers: dict[str, ServerConfig] = {}
    for name, node, line in _mapping(sections["servers"][0], path, "servers"):
        fields = {key: (_plain(value, path), key_line) for key, value, key_line in _mapping(node, path,
                                                                                           f"server {name!r}")}
        for key, (_, key_line) in fields.items():
            if key not in _SERVER_KEYS:
                raise BindingError(path, f"server {name!r}: unknown key {key!r}", line=key_line)
        endpoint = (endpoint_overrides or {}).get(name) or fields.get("endpoint", (None, line))[0]
        if not isinstance(endpoint, str) or not endpoint.startswith("opc.tcp://"):
            raise BindingError(path, f"server {name!r}: endpoint must be an opc.tcp:// URL, got {endpoint!r}",
                               line=fields.get("endpoint", (None, line))[1])
        servers[name] = ServerConfig(name, endpoint, line)
    for name in endpoint_overrides or {}:
        if name not in servers:
            raise BindingError(path, f"endpoint override for unknown server {name!r}; servers: {sorted(servers)}")

    node = sections["bindings"][0]
    if not isinstance(node, yaml.SequenceNode):
        raise BindingError(path, "'bindings' must be a list", line=node.start_mark.line + 1)
    bindings: list[Binding] = []
    targets: dict[tuple[str, str], Binding] = {}
    for item in node.value:
        line = item.start_mark.line + 1
        fields = {key: (_plain(value, path), key_line) for key, value, key_line in _mapping(item, path, "a binding")}
        label = f"binding {fields.get('node', ('?',))[0]}"
        for key, (_, key_line) in fields.items():
            if key not in _BINDING_KEYS:
                raise BindingError(path, f"{label}: unknown key {key!r} (allowed: {', '.join(sorted(_BINDING_KEYS))})",
                                   line=key_line)
        for key in ("server", "node", "prim", "attr"):
            if key not in fields:
                raise BindingError(path, f"{label}: missing {key!r}", line=line)

        def value(key, default=None, fields=fields):
            return fields[key][0] if key in fields else default

        def fail(key, message, fields=fields, line=line, label=label):
            return BindingError(path, f"{label}: {message}", line=fields.get(key, (None, line))[1])

        node_id, prim, attr = value("node"), value("prim"), value("attr")
        if value("server") not in servers:
            raise fail("server", f"unknown server {value('server')!r}; servers: {sorted(servers)}")
        if not isinstance(node_id, str) or not _NODE_ID.match(node_id):
            raise fail("node", f"malformed NodeId {node_id!r} (expected e.g. 'ns=2;s=Line.Speed', "
                               "'nsu=urn:...;s=...' or 'ns=0;i=2258')")
        if not isinstance(prim, str) or not prim.startswith("/"):
            raise fail("prim", f"prim must be an absolute path, got {prim!r}")
        if not isinstance(attr, str) or not attr:
            raise fail("attr", f"attr must be a name, got {attr!r}")
        kind = value("kind", "float")
        if kind not in KINDS:
            raise fail("kind", f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        width = value("width", 1)
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise fail("width", f"width must be a positive integer, got {width!r}")
        sampling = value("sampling_ms", 100)
        if not isinstance(sampling, int | float) or isinstance(sampling, bool) or sampling < 0:
            raise fail("sampling_ms", f"sampling_ms must be a number >= 0, got {sampling!r}")
        unit = value("unit", "")
        binding = Binding(value("server"), node_id, prim, attr, "" if unit is None else str(unit), kind, width,
                          float(sampling), line)
        if (prim, attr) in targets:
            first = targets[(prim, attr)]
            raise fail("attr", f"{prim}.{attr} is already fed by {first.node} (line {first.line})")
        targets[(prim, attr)] = binding
        bindings.append(binding)
    return BindingFile(path, servers, tuple(bindings))


def validate_against_stage(binding_file: BindingFile, stage) -> None:
    """Every binding's prim must exist in the layout (a pxr Usd.Stage)."""
    for binding in binding_file.bindings:
        if not stage.GetPrimAtPath(binding.prim):
            raise binding_file.error(binding, f"prim {binding.prim} is not in the layout")
