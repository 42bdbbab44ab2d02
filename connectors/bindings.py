"""Binding files: which OPC-UA node feeds which prim attribute, and how.

YAML, validated strictly, and every error names the file, the line and the binding,
because an integration engineer fixing a binding file of hundreds of entries needs to
land on the right line. The format is documented with a full example in docs/bindings.md;
sample_factory/bindings.yaml is a working one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from twin.core.alarms import AlarmRule, AlarmRuleError, parse_rule
from twin.core.errors import BindingError

KINDS = ("float", "int", "bool", "text", "json")
DIRECTIONS = ("read", "write", "both")
SECURITY_POLICIES = ("None", "Basic256Sha256")
SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
_NAMESPACE_INDEX = re.compile(r"(?:ns=(\d+);)?")
_NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$")
_BROWSE_ELEMENT = re.compile(r"(?:\d{1,5}:.+|nsu=.+:[^:]+)", re.DOTALL)  # "2:Line", "nsu=http://x.example/UA/:Line"
_BROWSE_SPLIT = re.compile(r"/(?=\d+:|nsu=)")  # a "/" that starts the next qualified name, not one inside a URI
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: big files load 5x faster
_SERVER_KEYS = {"endpoint", "security", "username", "password_env", "password", "publishing_ms", "health_check_s"}
_SECURITY_KEYS = {"policy", "mode", "certificate", "private_key", "trusted_server_certificates"}
_BINDING_KEYS = {"server", "node", "browse_path", "prim", "attr", "unit", "kind", "width", "sampling_ms",
                 "queue_size", "deadband", "scale", "offset", "enum", "direction", "limits", "alarms"}


@dataclass(frozen=True)
class SecurityConfig:
    """How a session secures itself; paths are absolute (resolved against the binding file's folder)."""

    policy: str = "None"  # one of SECURITY_POLICIES
    mode: str = "None"  # one of SECURITY_MODES
    certificate: Path | None = None  # the twin's client certificate (DER or PEM)
    private_key: Path | None = None  # its private key (PEM)
    trusted_server_certificates: tuple[Path, ...] = ()  # if given, the server's certificate must be one of these


@dataclass(frozen=True)
class ServerConfig:
    name: str
    endpoint: str
    line: int
    security: SecurityConfig = SecurityConfig()
    username: str | None = None
    password_env: str | None = None  # the environment variable that holds the password
    publishing_ms: float = 100.0
    # how often a session checks its link (a read of the server's state) and how long the answer may take
    # before the link counts as lost; a closed socket is noticed at once regardless
    health_check_s: float = 5.0


@dataclass(frozen=True)
class Deadband:
    kind: str  # "absolute" or "percent" (of the node's EURange)
    value: float


@dataclass(frozen=True)
class Binding:
    server: str
    node: str  # a NodeId string, or "" when the node is found by `browse_path`
    prim: str
    attr: str
    unit: str = ""
    kind: str = "float"
    width: int = 1
    sampling_ms: float = 100.0
    line: int = 0  # in the binding file, 1-based
    browse_path: tuple[str, ...] = ()  # qualified names from the Objects folder, e.g. ("2:Factory", "2:Line")
    queue_size: int = 1
    deadband: Deadband | None = None
    scale: float = 1.0  # twin value = server value * scale + offset
    offset: float = 0.0
    enum: dict[int, str] = field(default_factory=dict)  # state codes -> names
    direction: str = "read"
    minimum: float | None = None  # write limits, in twin units
    maximum: float | None = None
    alarms: tuple[AlarmRule, ...] = ()  # rules on this binding's signal (twin/alarms.py)

    @property
    def source(self) -> str:
        return self.node or "/".join(self.browse_path)

    @property
    def readable(self) -> bool:
        return self.direction in ("read", "both")

    @property
    def writable(self) -> bool:
        return self.direction in ("write", "both")

    def describe(self) -> str:
        return f"binding {self.source} -> {self.prim}.{self.attr}"


@dataclass(frozen=True)
class BindingFile:
    path: Path
    servers: dict[str, ServerConfig]
    bindings: tuple[Binding, ...]

    def error(self, binding: Binding, message: str) -> BindingError:
        return BindingError(self.path, f"{binding.describe()}: {message}", line=binding.line)

    def find(self, prim: str, attr: str) -> Binding:
        for binding in self.bindings:
            if (binding.prim, binding.attr) == (prim, attr):
                return binding
        raise KeyError(f"no binding feeds {prim}.{attr}")


class _Fields:
    """A YAML mapping's entries with the line of each key, for errors that point at the right line."""

    def __init__(self, node: yaml.Node, data, path: Path, what: str):
        """`node` is the composed YAML (for lines), `data` the same part loaded as Python (for values)."""
        if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
            raise BindingError(path, f"{what} must be a mapping", line=node.start_mark.line + 1)
        self.path, self.what, self.line = path, what, node.start_mark.line + 1
        self.values: dict[str, object] = {}
        self.nodes: dict[str, yaml.Node] = {}
        self.lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in self.values:
                raise BindingError(path, f"{what}: key {key!r} appears twice", line=key_node.start_mark.line + 1)
            self.values[key] = data.get(key)
            self.nodes[key] = value_node
            self.lines[key] = key_node.start_mark.line + 1

    def sub(self, key: str, what: str) -> _Fields:
        return _Fields(self.nodes[key], self.values[key], self.path, what)

    def check_keys(self, allowed: set[str]) -> None:
        for key, line in self.lines.items():
            if key not in allowed:
                allowed_text = ", ".join(sorted(allowed))
                raise BindingError(self.path, f"{self.what}: unknown key {key!r} (allowed: {allowed_text})", line=line)

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def error(self, key: str | None, message: str) -> BindingError:
        return BindingError(self.path, f"{self.what}: {message}", line=self.lines.get(key, self.line))

    def number(self, key: str, default: float | None, *, minimum: float | None = None) -> float | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"{key} must be a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"{key} must be >= {minimum}, got {value!r}")
        return float(value)


def qualified_name_parts(element: str) -> tuple[str, str]:
    """A browse path element's namespace (an index, or "nsu=URI") and name.

    An index ends at the first colon ("2:a:b" is name "a:b" in namespace 2); a URI, which has colons of its
    own, at the last ("nsu=http://plant.example/UA/:Line").
    """
    if element.startswith("nsu="):
        namespace, _, name = element.rpartition(":")
    else:
        namespace, _, name = element.partition(":")
    return namespace, name


def _read_yaml(path: Path) -> tuple[yaml.Node, object]:
    """The file composed (nodes carry lines) and loaded (plain values), each done once."""
    try:
        text = path.read_text()
        root = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)
    except FileNotFoundError:
        raise BindingError(path, "file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise BindingError(path, f"not valid YAML: {getattr(error, 'problem', error)}",
                           line=mark.line + 1 if mark else None) from None
    if root is None:
        raise BindingError(path, "the file is empty")
    return root, data


def _security(fields: _Fields, path: Path) -> SecurityConfig:
    if "security" not in fields.values:
        return SecurityConfig()
    security = fields.sub("security", f"{fields.what} security")
    security.check_keys(_SECURITY_KEYS)
    policy, mode = security.get("policy", "None"), security.get("mode", "None")
    if policy not in SECURITY_POLICIES:
        raise security.error("policy", f"policy must be one of {', '.join(SECURITY_POLICIES)}, got {policy!r}")
    if mode not in SECURITY_MODES:
        raise security.error("mode", f"mode must be one of {', '.join(SECURITY_MODES)}, got {mode!r}")
    if (policy == "None") != (mode == "None"):
        raise security.error("mode", f"policy {policy} and mode {mode} contradict each other")

    def file(key: str) -> Path | None:
        value = security.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise security.error(key, f"{key} must be a file path, got {value!r}")
        return (path.parent / value).resolve()

    trusted = security.get("trusted_server_certificates", [])
    if not isinstance(trusted, list) or not all(isinstance(item, str) for item in trusted):
        raise security.error("trusted_server_certificates", "trusted_server_certificates must be a list of paths")
    return SecurityConfig(policy, mode, file("certificate"), file("private_key"),
                          tuple((path.parent / item).resolve() for item in trusted))


def _server(name: str, node: yaml.Node, data, line: int, path: Path, overrides: dict[str, str]) -> ServerConfig:
    fields = _Fields(node, data, path, f"server {name!r}")
    fields.check_keys(_SERVER_KEYS)
    if "password" in fields.values:
        raise fields.error("password", "passwords are never read from the binding file; put it in an environment "
                                       "variable and name it with password_env")
    endpoint = overrides.get(name) or fields.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith("opc.tcp://"):
        raise fields.error("endpoint", f"endpoint must be an opc.tcp:// URL, got {endpoint!r}")
    username, password_env = fields.get("username"), fields.get("password_env")
    if username is not None and not isinstance(username, str):
        raise fields.error("username", f"username must be text, got {username!r}")
    if (username is None) != (password_env is None):
        raise fields.error("username" if username is None else "password_env",
                           "username and password_env go together")
    if password_env is not None and not (isinstance(password_env, str) and password_env.isidentifier()):
        raise fields.error("password_env", f"password_env must name an environment variable, got {password_env!r}")
    return ServerConfig(name, endpoint, line, _security(fields, path), username, password_env,
                        fields.number("publishing_ms", 100.0, minimum=0.0),
                        fields.number("health_check_s", 5.0, minimum=0.5))


def _binding(node: yaml.Node, data, path: Path, servers: dict[str, ServerConfig]) -> Binding:
    probe = data if isinstance(data, dict) else {}
    label = f"binding {probe.get('node') or probe.get('browse_path') or '?'}"
    fields = _Fields(node, data, path, label)
    fields.check_keys(_BINDING_KEYS)
    for key in ("server", "prim", "attr"):
        if key not in fields.values:
            raise fields.error(None, f"missing {key!r}")
    if ("node" in fields.values) == ("browse_path" in fields.values):
        raise fields.error("browse_path", "give exactly one of 'node' and 'browse_path'")
    if fields.get("server") not in servers:
        raise fields.error("server", f"unknown server {fields.get('server')!r}; servers: {sorted(servers)}")
    node_id = fields.get("node", "")
    if "node" in fields.values and (not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id)
                                    or int(_NAMESPACE_INDEX.match(node_id).group(1) or 0) > 65535):
        raise fields.error("node", f"malformed NodeId {node_id!r} (expected e.g. 'ns=2;s=Line.Speed', "
                                   "'nsu=urn:...;s=...' or 'ns=0;i=2258')")
    browse_path: tuple[str, ...] = ()
    if "browse_path" in fields.values:  # a list, or one string with "/" between the qualified names
        raw = fields.get("browse_path")
        elements = _BROWSE_SPLIT.split(raw.strip("/")) if isinstance(raw, str) else raw

        def valid(element) -> bool:
            if not isinstance(element, str) or not _BROWSE_ELEMENT.fullmatch(element):
                return False
            namespace, name = qualified_name_parts(element)
            if namespace.isdigit() and int(namespace) > 65535:
                return False
            return not isinstance(raw, str) or "/" not in name  # one string: "/" only inside a namespace URI

        if not isinstance(elements, list) or not elements or not all(valid(e) for e in elements):
            raise fields.error("browse_path", f"browse_path must be qualified names from Objects like "
                                              f"'2:Factory/2:Line/2:Speed' (namespace index up to 65535, or "
                                              f"nsu=URI; a name with '/' needs the list form), got {raw!r}")
        browse_path = tuple(elements)
    prim, attr = fields.get("prim"), fields.get("attr")
    if not isinstance(prim, str) or not prim.startswith("/"):
        raise fields.error("prim", f"prim must be an absolute path, got {prim!r}")
    if not isinstance(attr, str) or not attr:
        raise fields.error("attr", f"attr must be a name, got {attr!r}")
    kind = fields.get("kind", "float")
    if kind not in KINDS:
        raise fields.error("kind", f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    width = fields.get("width", 1)
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise fields.error("width", f"width must be a positive integer, got {width!r}")
    queue_size = fields.get("queue_size", 1)
    if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
        raise fields.error("queue_size", f"queue_size must be a positive integer, got {queue_size!r}")
    direction = fields.get("direction", "read")
    if direction not in DIRECTIONS:
        raise fields.error("direction", f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    deadband = None
    if "deadband" in fields.values:
        spec = fields.sub("deadband", f"{label} deadband")
        spec.check_keys({"absolute", "percent"})
        if len(spec.values) != 1:
            raise spec.error(None, "deadband takes one of 'absolute' or 'percent'")
        (deadband_kind,) = spec.values
        amount = spec.number(deadband_kind, None, minimum=0.0)
        if amount is None:
            raise spec.error(deadband_kind, f"a {deadband_kind} deadband needs a number")
        deadband = Deadband(deadband_kind, amount)
        if deadband_kind == "percent" and deadband.value > 100:
            raise spec.error("percent", f"a percent deadband must be within 0..100, got {deadband.value}")
        if kind in ("text", "json", "bool"):
            raise fields.error("deadband", f"a deadband needs a numeric kind, not {kind}")
    enum = fields.get("enum", {})
    if not isinstance(enum, dict) or not all(isinstance(k, int) and isinstance(v, str) for k, v in enum.items()):
        raise fields.error("enum", f"enum must map integer codes to names, got {enum!r}")
    if enum and kind != "int":
        raise fields.error("enum", f"an enum map needs kind int, not {kind}")
    limits = {}
    if "limits" in fields.values:
        spec = fields.sub("limits", f"{label} limits")
        spec.check_keys({"min", "max"})
        limits = {key: spec.number(key, None) for key in ("min", "max")}
        if None not in limits.values() and limits["min"] > limits["max"]:
            raise spec.error("min", f"min {limits['min']} is above max {limits['max']}")
        if direction == "read":
            raise fields.error("limits", "limits apply to writes, but this binding's direction is read")
    scale = fields.number("scale", 1.0)
    if scale == 0:
        raise fields.error("scale", "scale must not be 0 (writes divide by it)")
    if (scale != 1.0 or "offset" in fields.values) and kind not in ("float", "int"):
        raise fields.error("scale", f"scale and offset need a numeric kind, not {kind}")
    unit = fields.get("unit", "")
    return Binding(
        fields.get("server"), node_id, prim, attr, "" if unit is None else str(unit), kind, width,
        fields.number("sampling_ms", 100.0, minimum=0.0), fields.line, browse_path, queue_size, deadband,
        scale, fields.number("offset", 0.0), dict(enum), direction, limits.get("min"), limits.get("max"),
        _alarms(fields, f"{prim}.{attr}", kind, width, enum),
    )


def _alarms(fields: _Fields, key: str, kind: str, width: int, enum: dict[int, str]) -> tuple[AlarmRule, ...]:
    """The binding's `alarms:` list, each entry checked against the binding (numeric limits need a
    numeric scalar, a state name needs the enum to have it)."""
    if "alarms" not in fields.values:
        return ()
    node, data = fields.nodes["alarms"], fields.values["alarms"]
    if not isinstance(node, yaml.SequenceNode) or not isinstance(data, list):
        raise fields.error("alarms", "alarms must be a list of rules, e.g. [{high: 60, deadband: 2}]")
    rules = []
    for item, item_data in zip(node.value, data, strict=True):
        entry = _Fields(item, item_data, fields.path, f"{fields.what} alarm")
        try:
            rule = parse_rule(entry.values, key, where=f"{fields.path}:{entry.line}")
        except AlarmRuleError as error:
            raise entry.error(error.field, str(error)) from None
        if rule.kind in ("high", "low", "rate") and (kind not in ("float", "int") or width != 1):
            raise entry.error(rule.kind, f"a {rule.kind} alarm needs a numeric scalar signal, not {kind} "
                                         f"of width {width}")
        if isinstance(rule.equals, str) and kind != "text" and rule.equals not in enum.values():
            raise entry.error("equals", f"state {rule.equals!r} is not in this binding's enum "
                                        f"({', '.join(enum.values()) or 'none: a name needs kind int with an enum, '}"
                                        f"{'' if enum else 'or kind text'})")
        if any(other.name == rule.name for other in rules):
            raise entry.error("name", f"two alarms named {rule.name!r} on {key}: give each a name")
        rules.append(rule)
    return tuple(rules)


def load_bindings(path: str | Path, endpoint_overrides: dict[str, str] | None = None) -> BindingFile:
    """Read and validate a binding file; `endpoint_overrides` replaces servers' endpoints by name."""
    path = Path(path)
    overrides = endpoint_overrides or {}
    root, data = _read_yaml(path)
    sections = _Fields(root, data, path, "the file")
    for key, line in sections.lines.items():
        if key not in ("servers", "bindings"):
            raise BindingError(path, f"unknown section {key!r} (expected 'servers' and 'bindings')", line=line)
    for section in ("servers", "bindings"):
        if section not in sections.values:
            raise BindingError(path, f"missing section {section!r}", line=1)
    servers_node = sections.nodes["servers"]
    if not isinstance(servers_node, yaml.MappingNode) or not servers_node.value:
        raise BindingError(path, "'servers' must map names to servers", line=sections.lines["servers"])
    servers = {
        key.value: _server(key.value, value, sections.values["servers"].get(key.value), key.start_mark.line + 1,
                           path, overrides)
        for key, value in servers_node.value
    }
    for name in overrides:
        if name not in servers:
            raise BindingError(path, f"endpoint override for unknown server {name!r}; servers: {sorted(servers)}")
    bindings_node = sections.nodes["bindings"]
    if not isinstance(bindings_node, yaml.SequenceNode):
        raise BindingError(path, "'bindings' must be a list", line=sections.lines["bindings"])
    bindings: list[Binding] = []
    targets: dict[tuple[str, str], Binding] = {}
    for item, item_data in zip(bindings_node.value, sections.values["bindings"], strict=True):
        binding = _binding(item, item_data, path, servers)
        first = targets.get((binding.prim, binding.attr))
        if first is not None:
            raise BindingError(path, f"{binding.describe()}: {binding.prim}.{binding.attr} is already fed by "
                                     f"{first.source} (line {first.line})", line=binding.line)
        targets[(binding.prim, binding.attr)] = binding
        bindings.append(binding)
    return BindingFile(path, servers, tuple(bindings))


def validate_against_stage(binding_file: BindingFile, stage) -> None:
    """Every binding's prim must exist in the layout (a pxr Usd.Stage)."""
    for binding in binding_file.bindings:
        if not stage.GetPrimAtPath(binding.prim):
            raise binding_file.error(binding, f"prim {binding.prim} is not in the layout")
