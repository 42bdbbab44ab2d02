"""SITE.yaml: the broker the lines publish to, the lines (layout, bindings, port, publish format) and the site server.

Validated strictly by pydantic models like binding files, and every error names the file, the line and the field,
because a site file is edited by hand. Each line's own binding file is checked here too (with its own file and
line numbers), then copied with the site's broker and a `publish:` section added, so that each `twin serve`
publishes under its own Sparkplug edge node (or JSON topic root) without the user writing that twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from twin.connectors.bindings import BrokerConfig, BrokerSpec, TlsSpec, load_bindings
from twin.core.documents import YamlDocument
from twin.core.errors import FileError
from twin.core.schema import FieldError, blamed, sentence

SITE_BROKER = "site"  # the site broker's name in each line's generated binding file
LINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # a URL path segment, a Sparkplug id and a topic level at once


class SiteError(FileError):
    """A site file that is malformed, or a line whose files cannot be used."""


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class LineSpec(_Spec):
    name: str = Field(pattern=LINE_NAME, description="letters, digits, '-' and '_' (it names a URL and a topic)")
    layout: str = Field(description="a path to the line's .usda layout")
    bindings: str | None = Field(default=None, description="a path to the line's binding file")
    port: int | Literal["auto"] = Field(default="auto", description="a TCP port (1024 to 65535) or 'auto'")
    publish: Literal["sparkplug", "json"] = "sparkplug"
    relays: bool = Field(default=False, description="true or false: also publish the line's stream for relays")

    @model_validator(mode="after")
    def _port_in_range(self) -> LineSpec:
        if self.port != "auto" and not 1024 <= self.port <= 65535:
            raise FieldError("port", f"port must be 1024 to 65535 or 'auto', got {self.port}")
        return self


class SiteServerSpec(_Spec):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tokens: str | None = Field(default=None, description="a path to a tokens file (docs/auth)")


class SiteSpec(_Spec):
    broker: BrokerSpec
    group: str = Field(default="Site", pattern=r"^[^/+#\s]+$", description="a Sparkplug id without '/', '+' or '#'")
    topic_root: str = Field(default="site", pattern=r"^[^+#\s]+$", description="a topic prefix without wildcards")
    period_s: float = Field(default=1.0, ge=0.05)
    server: SiteServerSpec = SiteServerSpec()
    lines: list[LineSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> SiteSpec:
        seen: dict[str, int] = {}
        ports: dict[int, int] = {}
        for index, line in enumerate(self.lines):
            if line.name in seen:
                raise FieldError(("lines", index, "name"), f"line {line.name!r} is already lines[{seen[line.name]}]")
            seen[line.name] = index
            if line.port != "auto":
                if line.port in ports or line.port == self.server.port:
                    raise FieldError(("lines", index, "port"), f"port {line.port} is taken twice")
                ports[line.port] = index
        return self


@dataclass(frozen=True)
class Line:
    """One line of the site, paths absolute; `port` 0 until the site picks one."""

    name: str
    layout: Path
    bindings: Path | None
    port: int
    publish: str  # sparkplug | json
    relays: bool = False  # the line's runtime cache on the broker too, for `twin relay` (docs/scale.md)


@dataclass(frozen=True)
class Site:
    path: Path
    broker: BrokerConfig
    group: str
    topic_root: str
    period_s: float
    host: str
    port: int
    tokens: Path | None
    lines: tuple[Line, ...]
    broker_spec: BrokerSpec  # as written, for the lines' binding files

    def line(self, name: str) -> Line | None:
        return next((line for line in self.lines if line.name == name), None)

    def edge_node(self, line: Line) -> str:
        return line.name

    def line_topic_root(self, line: Line) -> str:
        return f"{self.topic_root.strip('/')}/{line.name}"


_MODELS: dict[str, type[BaseModel]] = {"broker": BrokerSpec, "server": SiteServerSpec, "lines": LineSpec}


class _Document(YamlDocument):
    """The site file with the line of every field, to turn a location such as ("lines", 1, "port") into a line."""

    def __init__(self, path: Path):
        super().__init__(path, SiteError)
        if not isinstance(self.data, dict):
            raise SiteError(path, "the file must be a mapping with 'broker' and 'lines'", line=1)
        if duplicate := self.duplicate_key():
            loc, line = duplicate
            raise SiteError(self.path, f"key {loc[-1]!r} appears twice", line=line)

    def error(self, error: ErrorDetails) -> SiteError:
        loc = blamed(error)
        fields = [step for step in loc if isinstance(step, str)]
        name = fields[-1] if fields else ""
        model: type[BaseModel] = TlsSpec if fields[:2] == ["broker", "tls"] and len(fields) > 2 else \
            _MODELS.get(fields[0], SiteSpec) if len(fields) > 1 else SiteSpec
        where = ".".join(f"[{step}]" if isinstance(step, int) else str(step) for step in loc).replace(".[", "[")
        if len(loc) > 1 and loc[0] == "lines" and isinstance(loc[1], int):
            line_name = self.value(("lines", loc[1], "name"))
            where += f" ({line_name})" if isinstance(line_name, str) else ""
        if error["type"] == "extra_forbidden":
            message = f"unknown key {name!r} (allowed: {', '.join(sorted(model.model_fields))})"
        else:
            message = sentence(error, model, name, self.value(loc))
        return SiteError(self.path, f"{where}: {message}" if where else message, line=self.line(loc))


def load_site(path: str | Path) -> Site:
    """Read and validate a site file, and each line's layout path and binding file."""
    path = Path(path).resolve()
    document = _Document(path)
    try:
        spec = SiteSpec.model_validate(document.data)
    except ValidationError as error:
        raise document.error(error.errors(include_url=False)[0]) from None
    folder = path.parent
    lines = []
    for index, line in enumerate(spec.lines):
        layout = (folder / line.layout).resolve()
        if not layout.is_file():
            raise SiteError(path, f"lines[{index}] ({line.name}): layout {layout} does not exist",
                            line=document.line(("lines", index, "layout")))
        bindings = (folder / line.bindings).resolve() if line.bindings else None
        if bindings is not None:
            binding_file = load_bindings(bindings)  # its own errors name its own file and line
            if binding_file.publish is not None:
                raise SiteError(bindings, f"line {line.name}: the site publishes each line to its broker; remove this "
                                          "file's publish: section", line=binding_file.publish.line)
            if SITE_BROKER in binding_file.brokers:
                raise SiteError(bindings, f"line {line.name}: the broker name {SITE_BROKER!r} is the site's own; "
                                          "rename this one", line=binding_file.brokers[SITE_BROKER].line)
        lines.append(Line(line.name, layout, bindings, 0 if line.port == "auto" else line.port, line.publish,
                          line.relays))
    tokens = (folder / spec.server.tokens).resolve() if spec.server.tokens else None
    return Site(path, spec.broker.config(SITE_BROKER, document.line(("broker",)), folder), spec.group,
                spec.topic_root.strip("/"), spec.period_s, spec.server.host, spec.server.port, tokens, tuple(lines),
                _absolute_broker(spec.broker, folder))


def _absolute_broker(broker: BrokerSpec, folder: Path) -> BrokerSpec:
    """The broker as written, its TLS files made absolute: the lines' binding files live elsewhere."""
    if broker.tls is None:
        return broker
    tls = broker.tls.model_copy(update={key: str((folder / value).resolve()) for key in ("ca", "certificate",
                                                                                          "private_key")
                                        if (value := getattr(broker.tls, key))})
    return broker.model_copy(update={"tls": tls})


_PATH_KEYS = {"servers": ("security", ("certificate", "private_key", "trusted_server_certificates")),
              "brokers": ("tls", ("ca", "certificate", "private_key"))}


def line_bindings(site: Site, line: Line) -> dict:
    """The binding file `twin serve` gets for `line`: its own (file paths made absolute) plus the site's broker and
    a publish section naming the line's edge node (or topic root)."""
    data: dict = yaml.safe_load(line.bindings.read_text()) if line.bindings else {"bindings": []}
    folder = line.bindings.parent if line.bindings else site.path.parent
    for section, (nested, keys) in _PATH_KEYS.items():
        for entry in (data.get(section) or {}).values():
            block = entry.get(nested) if isinstance(entry, dict) else None
            for key in keys if isinstance(block, dict) else ():
                if isinstance(block.get(key), str):
                    block[key] = str((folder / block[key]).resolve())
                elif isinstance(block.get(key), list):
                    block[key] = [str((folder / item).resolve()) for item in block[key]]
    data.setdefault("brokers", {})[SITE_BROKER] = site.broker_spec.model_dump(exclude_defaults=True)
    publish = {"broker": SITE_BROKER, "format": line.publish, "period_s": site.period_s}
    if line.publish == "sparkplug":
        publish |= {"group": site.group, "edge_node": site.edge_node(line)}
    if line.publish == "json" or line.relays:  # relays read TOPIC_ROOT/NAME/stream, whatever the format
        publish["topic_root"] = site.line_topic_root(line)
    if line.relays:
        publish["stream"] = True
    data["publish"] = publish
    return data
