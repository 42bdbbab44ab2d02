"""Binding files: which OPC-UA node or MQTT topic feeds which prim attribute, and how.

YAML, validated strictly by pydantic models (unknown keys are errors), and every error names the file, the
line and the binding, because an integration engineer fixing a binding file of hundreds of entries needs to
land on the right line. The format is documented with a full example in docs/bindings.md;
sample_factory/bindings.yaml is a working one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from twin.core.alarms import AlarmRule, AlarmRuleError, parse_rule
from twin.core.cache import signal_key
from twin.core.documents import YamlDocument
from twin.core.errors import BindingError
from twin.core.schema import FieldError, Location, blamed, sentence

Kind = Literal["float", "int", "bool", "text", "json"]
Direction = Literal["read", "write", "both"]
SecurityPolicy = Literal["None", "Basic256Sha256"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
KINDS: tuple[str, ...] = get_args(Kind)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
SECURITY_POLICIES: tuple[str, ...] = get_args(SecurityPolicy)
SECURITY_MODES: tuple[str, ...] = get_args(SecurityMode)
NUMERIC_KINDS = ("float", "int")
_NAMESPACE_INDEX = re.compile(r"(?:ns=(\d+);)?")
_NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$")
_BROWSE_ELEMENT = re.compile(r"(?:\d{1,5}:.+|nsu=.+:[^:]+)", re.DOTALL)  # "2:Line", "nsu=http://x.example/UA/:Line"
_BROWSE_SPLIT = re.compile(r"/(?=\d+:|nsu=)")  # a "/" that starts the next qualified name, not one inside a URI
_BROKER_URL = re.compile(r"^mqtts?://[^/:\s]+(?::\d{1,5})?/?$")
_SPARKPLUG_NODE = re.compile(r"^[^/+#\s]+/[^/+#\s]+(?:/[^/+#\s]+)?$")  # group/edge node[/device]


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
class TlsConfig:
    """TLS towards a broker; paths are absolute. No `ca`: the system's trusted authorities."""

    ca: Path | None = None
    certificate: Path | None = None  # a client certificate, for brokers that ask for one
    private_key: Path | None = None
    insecure: bool = False  # skip the host name check (a test broker's certificate for another name)


@dataclass(frozen=True)
class BrokerConfig:
    name: str
    url: str  # mqtt://host:port or mqtts://host:port
    line: int
    client_id: str = ""  # "" : one is generated
    tls: TlsConfig | None = None  # set for mqtts:// (and only then)
    username: str | None = None
    password_env: str | None = None
    keepalive_s: float = 10.0  # the broker declares the twin gone after 1.5 times this without a packet

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        rest = self.url.split("://", 1)[1].rstrip("/")
        return int(rest.rsplit(":", 1)[1]) if ":" in rest else (8883 if self.tls else 1883)


@dataclass(frozen=True)
class PublishConfig:
    """What the twin publishes to a broker: as a Sparkplug B edge node (group/edge_node) or JSON (topic_root)."""

    broker: BrokerConfig
    format: str  # "sparkplug" or "json"
    group: str = "Twin"
    edge_node: str = ""
    topic_root: str = ""
    period_s: float = 1.0  # how often changes are published
    line: int = 0
    stream: bool = False  # also the runtime cache, at the stream rate, under topic_root/stream for relays


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
    history_ms: float = 0.0  # the historian records at most one sample per this many ms (0: every update)
    line: int = 0  # in the binding file, 1-based
    file: Path | None = None  # the binding file it was read from (merged files keep each binding's own)
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
    topic: str = ""  # MQTT: a topic with a JSON payload...
    value_path: str = ""  # ...the value's place in it ("" : the whole payload), e.g. "data.speed" or "axes.0"
    time_path: str = ""  # ...and the source time's (epoch seconds or ms, or ISO 8601 text), "" : none
    sparkplug: str = ""  # MQTT: a Sparkplug B edge node or device, "group/edge node[/device]"...
    metric: str = ""  # ...and the metric's name

    @property
    def source(self) -> str:
        if self.sparkplug:
            return f"{self.sparkplug}:{self.metric}"
        return self.node or self.topic or "/".join(self.browse_path)

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
    brokers: dict[str, BrokerConfig] = field(default_factory=dict)
    publish: PublishConfig | None = None

    def error(self, binding: Binding, message: str) -> BindingError:
        return BindingError(binding.file or self.path, f"{binding.describe()}: {message}", line=binding.line)

    def find(self, prim: str, attr: str) -> Binding:
        for binding in self.bindings:
            if (binding.prim, binding.attr) == (prim, attr):
                return binding
        raise KeyError(f"no binding feeds {prim}.{attr}")

    def history_intervals(self) -> dict[str, float]:
        """{signal key: seconds} of the bindings with a `history_ms`: the historian's `min_interval_s`."""
        return {signal_key(b.prim, b.attr): b.history_ms / 1000.0 for b in self.bindings if b.history_ms > 0}


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


# ---------------------------------------------------------------- the schema: what a binding file may say
class _Spec(BaseModel):
    """Strict: YAML gives numbers, text and lists as they are written, and nothing is coerced or ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


class SecuritySpec(_Spec):
    policy: SecurityPolicy = "None"
    mode: SecurityMode = "None"
    certificate: str | None = Field(default=None, description="a file path")
    private_key: str | None = Field(default=None, description="a file path")
    trusted_server_certificates: list[str] = Field(default=[], description="a list of paths")

    @model_validator(mode="after")
    def _policy_matches_mode(self) -> SecuritySpec:
        if (self.policy == "None") != (self.mode == "None"):
            raise FieldError("mode", f"policy {self.policy} and mode {self.mode} contradict each other")
        return self

    def config(self, folder: Path) -> SecurityConfig:
        """Paths are resolved against the binding file's folder."""
        return SecurityConfig(
            policy=self.policy, mode=self.mode,
            certificate=(folder / self.certificate).resolve() if self.certificate else None,
            private_key=(folder / self.private_key).resolve() if self.private_key else None,
            trusted_server_certificates=tuple((folder / item).resolve() for item in self.trusted_server_certificates),
        )


class ServerSpec(_Spec):
    endpoint: str = Field(pattern=r"^opc\.tcp://", description="an opc.tcp:// URL")
    security: SecuritySpec = SecuritySpec()
    username: str | None = None
    password_env: str | None = None
    password: object = None  # a known key, so that the refusal says why
    publishing_ms: float = Field(default=100.0, ge=0)
    health_check_s: float = Field(default=5.0, ge=0.5)

    @field_validator("password")
    @classmethod
    def _never_a_password(cls, value: object) -> None:
        raise ValueError("passwords are never read from the binding file; put it in an environment variable and "
                         "name it with password_env")

    @field_validator("password_env")
    @classmethod
    def _environment_variable(cls, value: str | None) -> str | None:
        if value is not None and not value.isidentifier():
            raise ValueError(f"password_env must name an environment variable, got {value!r}")
        return value

    @model_validator(mode="after")
    def _credentials_go_together(self) -> ServerSpec:
        if (self.username is None) != (self.password_env is None):
            raise FieldError("username" if self.username is None else "password_env",
                             "username and password_env go together")
        return self

    def config(self, name: str, line: int, folder: Path) -> ServerConfig:
        return ServerConfig(name=name, endpoint=self.endpoint, line=line, security=self.security.config(folder),
                            username=self.username, password_env=self.password_env,
                            publishing_ms=self.publishing_ms, health_check_s=self.health_check_s)


class TlsSpec(_Spec):
    ca: str | None = Field(default=None, description="a file path")
    certificate: str | None = Field(default=None, description="a file path")
    private_key: str | None = Field(default=None, description="a file path")
    insecure: bool = False

    @model_validator(mode="after")
    def _key_with_certificate(self) -> TlsSpec:
        if (self.certificate is None) != (self.private_key is None):
            raise FieldError("private_key" if self.private_key is None else "certificate",
                             "certificate and private_key go together")
        return self

    def config(self, folder: Path) -> TlsConfig:
        def resolved(item: str | None) -> Path | None:
            return (folder / item).resolve() if item else None

        return TlsConfig(resolved(self.ca), resolved(self.certificate), resolved(self.private_key), self.insecure)


class BrokerSpec(_Spec):
    url: str = Field(pattern=_BROKER_URL.pattern, description="an mqtt://host:port or mqtts://host:port URL")
    client_id: str = ""
    tls: TlsSpec | None = None
    username: str | None = None
    password_env: str | None = None
    password: object = None  # a known key, so that the refusal says why
    keepalive_s: float = Field(default=10.0, ge=1)

    @field_validator("password")
    @classmethod
    def _never_a_password(cls, value: object) -> None:
        return ServerSpec._never_a_password(value)

    @field_validator("password_env")
    @classmethod
    def _environment_variable(cls, value: str | None) -> str | None:
        return ServerSpec._environment_variable(value)

    @model_validator(mode="after")
    def _consistent(self) -> BrokerSpec:
        if (self.username is None) != (self.password_env is None):
            raise FieldError("username" if self.username is None else "password_env",
                             "username and password_env go together")
        if self.tls is not None and not self.url.startswith("mqtts://"):
            raise FieldError("tls", "tls settings need an mqtts:// url")
        return self

    def config(self, name: str, line: int, folder: Path) -> BrokerConfig:
        tls = (self.tls or TlsSpec()).config(folder) if self.url.startswith("mqtts://") else None
        return BrokerConfig(name=name, url=self.url, line=line, client_id=self.client_id, tls=tls,
                            username=self.username, password_env=self.password_env, keepalive_s=self.keepalive_s)


class PublishSpec(_Spec):
    broker: str
    format: Literal["sparkplug", "json"] = "sparkplug"
    group: str = Field(default="Twin", pattern=r"^[^/+#\s]+$", description="an id without '/', '+' or '#'")
    edge_node: str = Field(default="", pattern=r"^[^/+#\s]*$", description="an id without '/', '+' or '#'")
    topic_root: str = Field(default="", pattern=r"^[^+#]*$", description="a topic prefix without wildcards")
    period_s: float = Field(default=1.0, ge=0.05)
    stream: bool = False

    @model_validator(mode="after")
    def _named(self) -> PublishSpec:
        if self.format == "sparkplug" and not self.edge_node:
            raise FieldError("edge_node", "a Sparkplug B publisher needs its edge_node id")
        if self.format == "json" and not self.topic_root.strip("/"):
            raise FieldError("topic_root", "a JSON publisher needs a topic_root, e.g. 'twin/line1'")
        if self.stream and not self.topic_root.strip("/"):
            raise FieldError("topic_root", "stream: true needs a topic_root (relays read ROOT/stream), "
                                           "e.g. 'twin/line1'")
        return self


class DeadbandSpec(_Spec):
    absolute: float | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, ge=0)  # of the node's EURange

    @field_validator("percent")
    @classmethod
    def _within_range(cls, value: float | None) -> float | None:
        if value is not None and value > 100:
            raise ValueError(f"a percent deadband must be within 0..100, got {value}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> DeadbandSpec:
        if len(self.model_fields_set) != 1 or (self.absolute is None and self.percent is None):
            raise FieldError((), "deadband takes one of 'absolute' or 'percent'")
        return self

    def deadband(self) -> Deadband:
        if self.absolute is not None:
            return Deadband("absolute", self.absolute)
        return Deadband("percent", self.percent or 0.0)


class LimitsSpec(_Spec):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LimitsSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldError("min", f"min {self.min} is above max {self.max}")
        return self


class BindingSpec(_Spec):
    server: str
    node: str = ""
    browse_path: tuple[str, ...] = ()
    prim: str = Field(pattern="^/", description="an absolute path")
    attr: str = Field(min_length=1, description="a name")
    unit: str = ""
    kind: Kind = "float"
    width: int = Field(default=1, ge=1, description="a positive integer")
    sampling_ms: float = Field(default=100.0, ge=0)
    history_ms: float = Field(default=0.0, ge=0, description="the historian's minimum interval between samples "
                              "(the last of each interval is kept; 0: every update)")
    queue_size: int = Field(default=1, ge=1, description="a positive integer")
    deadband: DeadbandSpec | None = None
    scale: float = 1.0  # twin value = server value * scale + offset
    offset: float = 0.0
    enum: dict[int, str] = Field(default={}, description="a map of integer codes to names")
    direction: Direction = "read"
    limits: LimitsSpec | None = None
    alarms: list[dict[str, object]] = Field(default=[], description="a list of rules, e.g. [{high: 60, deadband: 2}]")
    topic: str = ""
    value_path: str = ""
    time_path: str = ""
    sparkplug: str = Field(default="", pattern=_SPARKPLUG_NODE.pattern + "|^$",
                           description="'group/edge node' or 'group/edge node/device'")
    metric: str = ""

    @field_validator("topic")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if value and (not value.strip() or "#" in value or "+" in value or value.startswith("spBv1.0/")):
            raise ValueError(f"topic must be one plain MQTT topic (no wildcards; Sparkplug B metrics are bound "
                             f"with sparkplug and metric), got {value!r}")
        return value

    @field_validator("node")
    @classmethod
    def _node_id(cls, value: str) -> str:
        namespace = _NAMESPACE_INDEX.match(value)
        if not _NODE_ID.fullmatch(value) or (namespace is not None and int(namespace.group(1) or 0) > 65535):
            raise ValueError(f"malformed NodeId {value!r} (expected e.g. 'ns=2;s=Line.Speed', 'nsu=urn:...;s=...' "
                             "or 'ns=0;i=2258')")
        return value

    @field_validator("browse_path", mode="before")
    @classmethod
    def _qualified_names(cls, raw: object) -> tuple[str, ...]:
        """A list, or one string with "/" between the qualified names."""
        elements = _BROWSE_SPLIT.split(raw.strip("/")) if isinstance(raw, str) else raw

        def valid(element: object) -> bool:
            if not isinstance(element, str) or not _BROWSE_ELEMENT.fullmatch(element):
                return False
            namespace, name = qualified_name_parts(element)
            if namespace.isdigit() and int(namespace) > 65535:
                return False
            return not isinstance(raw, str) or "/" not in name  # one string: "/" only inside a namespace URI

        if not isinstance(elements, list) or not elements or not all(valid(e) for e in elements):
            raise ValueError(f"browse_path must be qualified names from Objects like '2:Factory/2:Line/2:Speed' "
                             f"(namespace index up to 65535, or nsu=URI; a name with '/' needs the list form), "
                             f"got {raw!r}")
        return tuple(elements)

    @field_validator("unit", mode="before")
    @classmethod
    def _text(cls, value: object) -> str:
        return "" if value is None else str(value)

    @field_validator("scale")
    @classmethod
    def _not_zero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale must not be 0 (writes divide by it)")
        return value

    @property
    def over_mqtt(self) -> bool:
        return bool(self.model_fields_set & {"topic", "sparkplug"})

    @model_validator(mode="after")
    def _consistent(self) -> BindingSpec:
        given = self.model_fields_set
        if self.over_mqtt:
            self._mqtt_consistent(given)
        elif given & {"value_path", "time_path", "metric"}:
            key = sorted(given & {"value_path", "time_path", "metric"})[0]
            raise FieldError(key, f"{key} belongs to a binding with a topic or sparkplug")
        elif ("node" in given) == ("browse_path" in given):
            raise FieldError("browse_path", "give exactly one of 'node' and 'browse_path'")
        if self.deadband is not None and self.kind not in NUMERIC_KINDS:
            raise FieldError("deadband", f"a deadband needs a numeric kind, not {self.kind}")
        if self.enum and self.kind != "int":
            raise FieldError("enum", f"an enum map needs kind int, not {self.kind}")
        if self.limits is not None and self.direction == "read":
            raise FieldError("limits", "limits apply to writes, but this binding's direction is read")
        if (self.scale != 1.0 or "offset" in given) and self.kind not in NUMERIC_KINDS:
            raise FieldError("scale" if "scale" in given else "offset",
                             f"scale and offset need a numeric kind, not {self.kind}")
        return self

    def _mqtt_consistent(self, given: set[str]) -> None:
        """A topic (JSON) or a Sparkplug metric, never a node too; MQTT bindings only read."""
        sources = [key for key in ("node", "browse_path", "topic", "sparkplug") if key in given]
        if len(sources) > 1:
            raise FieldError(sources[1], f"give one of 'topic' and 'sparkplug' (not {' and '.join(sources)})")
        if "sparkplug" in given and not self.metric:
            raise FieldError("metric", "a sparkplug binding needs the metric's name")
        if "topic" in given and "metric" in given:
            raise FieldError("metric", "metric belongs to a sparkplug binding; a topic's value is found by value_path")
        if "sparkplug" in given and given & {"value_path", "time_path"}:
            raise FieldError(sorted(given & {"value_path", "time_path"})[0],
                             "a Sparkplug metric carries its own value and time; value_path and time_path are for "
                             "JSON topics")
        for key in ("deadband", "limits", "sampling_ms", "queue_size"):
            if key in given:
                raise FieldError(key, f"{key} is an OPC-UA setting; an MQTT binding takes what the broker sends")
        if self.direction != "read":
            raise FieldError("direction", "MQTT bindings read; writing to the plant goes through OPC-UA")

    def binding(self, line: int, alarms: tuple[AlarmRule, ...], file: Path | None = None) -> Binding:
        limits = self.limits or LimitsSpec()
        return Binding(server=self.server, node=self.node, prim=self.prim, attr=self.attr, unit=self.unit,
                       kind=self.kind, width=self.width, sampling_ms=self.sampling_ms,
                       history_ms=self.history_ms, line=line, file=file,
                       browse_path=self.browse_path, queue_size=self.queue_size,
                       deadband=self.deadband.deadband() if self.deadband else None, scale=self.scale,
                       offset=self.offset, enum=dict(self.enum), direction=self.direction, minimum=limits.min,
                       maximum=limits.max, alarms=alarms, topic=self.topic, value_path=self.value_path,
                       time_path=self.time_path, sparkplug=self.sparkplug, metric=self.metric)


class BindingFileSpec(_Spec):
    servers: dict[str, ServerSpec] = {}
    brokers: dict[str, BrokerSpec] = {}
    publish: PublishSpec | None = None
    bindings: list[BindingSpec]

    @model_validator(mode="after")
    def _known_servers(self) -> BindingFileSpec:
        if not self.servers and not self.brokers:
            raise FieldError("servers", "missing section 'servers' (OPC-UA) or 'brokers' (MQTT)")
        for name in self.servers.keys() & self.brokers.keys():
            raise FieldError(("brokers", name), f"{name!r} names both a server and a broker; bindings refer to "
                                                "either by name, so each name is given once")
        if self.publish is not None and self.publish.broker not in self.brokers:
            raise FieldError(("publish", "broker"), f"unknown broker {self.publish.broker!r}; brokers: "
                                                    f"{sorted(self.brokers)}")
        for index, binding in enumerate(self.bindings):
            if binding.server in self.brokers and not binding.over_mqtt:
                raise FieldError(("bindings", index, "server"), f"{binding.server!r} is an MQTT broker: bind a "
                                                                "'topic' or a 'sparkplug' metric, not an OPC-UA node")
            if binding.server in self.servers and binding.over_mqtt:
                raise FieldError(("bindings", index, "server"), f"{binding.server!r} is an OPC-UA server: bind a "
                                                                "'node' or 'browse_path'; topics come from brokers")
            if binding.server not in self.servers and binding.server not in self.brokers:
                raise FieldError(("bindings", index, "server"),
                                 f"unknown server {binding.server!r}; servers: {sorted(self.servers)}"
                                 + (f", brokers: {sorted(self.brokers)}" if self.brokers else ""))
        return self


_NESTED: dict[str, type[_Spec]] = {"security": SecuritySpec, "deadband": DeadbandSpec, "limits": LimitsSpec,
                                   "tls": TlsSpec}
_SECTION_ERRORS = {"servers": "'servers' must map names to servers", "brokers": "'brokers' must map names to brokers",
                   "publish": "'publish' must be a mapping",
                   "bindings": "'bindings' must be a list"}


class _Document(YamlDocument):
    """A binding file with the line of every field, to turn a location in the data, such as
    ("bindings", 3, "limits", "min"), into an error that names the line and the binding."""

    def __init__(self, path: Path):
        super().__init__(path, BindingError)
        if self.root is None:
            raise BindingError(path, "the file is empty")
        if duplicate := self.duplicate_key():
            loc, line = duplicate
            raise self.error(loc, f"key {loc[-1]!r} appears twice", line=line)

    def label(self, loc: Location) -> str:
        """What the error is about: "server 'plc'", "binding ns=2;s=Speed limits", "binding 2:A/2:B alarm"."""
        if loc[0] == "servers":
            return f"server {loc[1]!r}" + (" security" if len(loc) > 3 else "")
        if loc[0] == "brokers":
            return f"broker {loc[1]!r}" + (" tls" if len(loc) > 3 else "")
        entry = self.value(loc[:2])
        probe = entry if isinstance(entry, dict) else {}
        source = (probe.get("node") or probe.get("browse_path") or probe.get("topic")
                  or (f"{probe.get('sparkplug')}:{probe.get('metric')}" if probe.get("sparkplug") else None))
        label = f"binding {source or '?'}"
        if len(loc) > 3 and loc[2] == "alarms":
            label += " alarm"
        elif len(loc) > 3 and loc[2] in _NESTED:
            label += f" {loc[2]}"
        return label

    def error(self, loc: Location, message: str, *, line: int | None = None) -> BindingError:
        """An error about the field at `loc`, at its line unless `line` says otherwise. A field of a server or
        a binding is labelled with it; a section, or an entry of one, is not."""
        label = f"{self.label(loc)}: " if len(loc) > 2 else ""
        return BindingError(self.path, f"{label}{message}", line=line or self.line(loc))

    def validate(self, endpoint_overrides: dict[str, str]) -> BindingFileSpec:
        servers = self.data.get("servers") if isinstance(self.data, dict) else None
        brokers = self.data.get("brokers") if isinstance(self.data, dict) else None
        for name, endpoint in endpoint_overrides.items():  # checked like the file's own endpoints (or URLs)
            if endpoint and isinstance(servers, dict) and isinstance(servers.get(name), dict):
                servers[name]["endpoint"] = endpoint
            elif endpoint and isinstance(brokers, dict) and isinstance(brokers.get(name), dict):
                brokers[name]["url"] = endpoint
        try:
            return BindingFileSpec.model_validate(self.data)
        except ValidationError as error:
            raise self.explain(error.errors(include_url=False)[0]) from None

    def explain(self, error: ErrorDetails) -> BindingError:
        """pydantic's error as ours: the binding or server, the field, what it must be and what it got."""
        loc = _trim(blamed(error))
        kind, name = error["type"], str(loc[-1]) if loc else ""
        if not loc:
            return BindingError(self.path, "the file must be a mapping", line=1)
        if len(loc) == 1:
            if kind == "extra_forbidden":
                return self.error(loc, f"unknown section {name!r} (expected 'servers', 'brokers', 'publish' and "
                                       "'bindings')")
            if kind == "missing":
                return BindingError(self.path, f"missing section {name!r}", line=1)
            if kind == "value_error":  # no servers and no brokers
                return BindingError(self.path, sentence(error, None, name, None), line=1)
            return self.error(loc, _SECTION_ERRORS[name])
        if loc[0] == "publish":
            if kind == "extra_forbidden":
                return self.error(loc, f"publish: unknown key {name!r} (allowed: "
                                       f"{', '.join(sorted(PublishSpec.model_fields))})")
            return self.error(loc, "publish: " + sentence(error, PublishSpec, name, self.value(loc)))
        if len(loc) == 2 and kind != "value_error":
            return BindingError(self.path, f"{self.label(loc)} must be a mapping", line=self.line(loc))
        model: type[_Spec] = (_NESTED[str(loc[2])] if len(loc) == 4 else ServerSpec if loc[0] == "servers"
                              else BrokerSpec if loc[0] == "brokers" else BindingSpec)
        if kind == "extra_forbidden":
            return self.error(loc, f"unknown key {name!r} (allowed: {', '.join(sorted(model.model_fields))})")
        return self.error(loc, sentence(error, model, name, self.value(loc)))


def _trim(loc: Location) -> Location:
    """A location down to the field that the file spells (not an item of a list or a key of a map inside it;
    alarm rules are checked by parse_rule, so here `alarms` is one field)."""
    if len(loc) > 3 and loc[2] in _NESTED:
        return loc[:4]
    return loc[:3]


def load_bindings(path: str | Path, endpoint_overrides: dict[str, str] | None = None) -> BindingFile:
    """Read and validate a binding file; `endpoint_overrides` replaces servers' endpoints by name."""
    path = Path(path)
    document = _Document(path)
    spec = document.validate(endpoint_overrides or {})
    for name in endpoint_overrides or {}:
        if name not in spec.servers and name not in spec.brokers:
            raise BindingError(path, f"endpoint override for unknown server {name!r}; servers: {sorted(spec.servers)}")
    servers = {name: server.config(name, document.line(("servers", name)), path.parent)
               for name, server in spec.servers.items()}
    brokers = {name: broker.config(name, document.line(("brokers", name)), path.parent)
               for name, broker in spec.brokers.items()}
    bindings: list[Binding] = []
    targets: dict[tuple[str, str], Binding] = {}
    for index, binding_spec in enumerate(spec.bindings):
        loc = ("bindings", index)
        binding = binding_spec.binding(document.line(loc), _alarms(document, loc, binding_spec), path)
        first = targets.setdefault((binding.prim, binding.attr), binding)
        if first is not binding:
            raise document.error(loc, f"{binding.prim}.{binding.attr} is already fed by {first.source} "
                                      f"(line {first.line})")
        bindings.append(binding)
    publish = None
    if spec.publish is not None:
        p = spec.publish
        publish = PublishConfig(brokers[p.broker], p.format, p.group, p.edge_node, p.topic_root.strip("/"),
                                p.period_s, document.line(("publish",)), p.stream)
    return BindingFile(path, servers, tuple(bindings), brokers, publish)


def merge_bindings(first: BindingFile, *more: BindingFile) -> BindingFile:
    """Binding files read as one: `first`'s servers, brokers and publish section, and every file's bindings.

    A later file adds bindings (and servers or brokers of its own); one it names that `first` has must be the
    same (after endpoint overrides), each (prim, attr) is still fed once, and only `first` may publish.
    """
    servers, brokers, bindings = dict(first.servers), dict(first.brokers), list(first.bindings)
    for other in more:
        for name, server in other.servers.items():
            known = servers.setdefault(name, server)
            if known.endpoint != server.endpoint:
                raise BindingError(other.path, f"server {name!r} is {server.endpoint}, but {first.path.name} has it "
                                               f"at {known.endpoint}", line=server.line)
        for name, broker in other.brokers.items():
            brokers.setdefault(name, broker)
        if other.publish is not None:
            raise BindingError(other.path, f"only the first binding file ({first.path.name}) may publish",
                               line=other.publish.line)
        targets = {(binding.prim, binding.attr): binding for binding in bindings}
        for binding in other.bindings:
            if (binding.prim, binding.attr) in targets:
                raise other.error(binding, f"{binding.prim}.{binding.attr} is already fed by "
                                           f"{targets[(binding.prim, binding.attr)].source} ({first.path.name})")
        bindings += other.bindings
    return BindingFile(first.path, servers, tuple(bindings), brokers, first.publish)


def _alarms(document: _Document, loc: Location, spec: BindingSpec) -> tuple[AlarmRule, ...]:
    """The binding's `alarms:` list, each entry checked against the binding (numeric limits need a
    numeric scalar, a state name needs the enum to have it)."""
    key, rules = f"{spec.prim}.{spec.attr}", list[AlarmRule]()
    for index, entry in enumerate(spec.alarms):
        at = (*loc, "alarms", index)
        try:
            rule = parse_rule(entry, key, where=f"{document.path}:{document.line(at)}")
        except AlarmRuleError as error:
            raise document.error((*at, error.field) if error.field else at, str(error)) from None
        if rule.kind in ("high", "low", "rate") and (spec.kind not in NUMERIC_KINDS or spec.width != 1):
            raise document.error((*at, rule.kind), f"a {rule.kind} alarm needs a numeric scalar signal, not "
                                                   f"{spec.kind} of width {spec.width}")
        names = spec.enum.values()
        if isinstance(rule.equals, str) and spec.kind != "text" and rule.equals not in names:
            raise document.error((*at, "equals"), f"state {rule.equals!r} is not in this binding's enum "
                                                  f"({', '.join(names) or 'none: a name needs kind int with an enum, '}"
                                                  f"{'' if names else 'or kind text'})")
        if any(other.name == rule.name for other in rules):
            raise document.error((*at, "name"), f"two alarms named {rule.name!r} on {key}: give each a name")
        rules.append(rule)
    return tuple(rules)


def validate_against_stage(binding_file: BindingFile, stage) -> None:
    """Every binding's prim must exist in the layout (a pxr Usd.Stage)."""
    for binding in binding_file.bindings:
        if not stage.GetPrimAtPath(binding.prim):
            raise binding_file.error(binding, f"prim {binding.prim} is not in the layout")
