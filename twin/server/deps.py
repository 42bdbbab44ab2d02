"""FastAPI dependencies: the objects the routes share, kept on `app.state` by create_app, and the role checks.

A route declares what it needs (`twin: TwinDep`, `principal: Operator`) rather than closing over create_app's
locals, so every router is a plain module-level APIRouter.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, Header, HTTPException
from pydantic import AllowInfNan, BaseModel, ConfigDict
from starlette.requests import HTTPConnection

from twin.history.store import Historian
from twin.server.auth import Access, Principal
from twin.server.clock import SimulationClock
from twin.sim.runtime import Twin
from twin.stream.hub import StreamHub

MAX_QUOTE = 80  # characters of a client's input that an error message may quote
MAX_BODY_BYTES = 2**20  # request bodies over this are refused with 413 (create_app's max_body_bytes)

# A float query parameter or body field that must be finite: NaN and infinities are a 422 like any bad number.
Finite = Annotated[float, AllowInfNan(False)]


class ApiModel(BaseModel):
    """Base of every request body: a non-finite number in any float field is refused (422), so that no range
    check is skipped by NaN (which compares false with everything) and no answer has to carry one."""

    model_config = ConfigDict(allow_inf_nan=False)


def quoted(text: object, limit: int = MAX_QUOTE) -> str:
    """`text` as an error message may quote it: at most `limit` characters, so that a client sending megabytes
    does not get them back (or fill a log with them)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class SignalWriter(Protocol):
    """What the server needs from a connector to write values back (connectors/opcua.py has it)."""

    def writable(self, prim: str, attr: str) -> bool: ...

    async def write(self, prim: str, attr: str, value: Any, *, user: str) -> Any: ...

    audit: Any


@dataclass(frozen=True)
class ServerSettings:
    """How create_app was configured, beyond the twin and its historian."""

    access: Access
    static_dir: Path
    glb_path: Path | None = None
    connector_health: Callable[[], dict] | None = None
    writer: SignalWriter | None = None
    on_startup: tuple[Callable, ...] = ()  # async callables: the connectors' start and stop
    on_shutdown: tuple[Callable, ...] = ()
    open_docs: bool = False  # serve /docs, /redoc and /openapi.json to anyone, even where the API needs a token
    ray_address: str | None = None  # what-if studies run on this Ray cluster, not in the server's process


async def get_twin(connection: HTTPConnection) -> Twin:
    return connection.app.state.twin


async def get_hub(connection: HTTPConnection) -> StreamHub:
    return connection.app.state.hub


async def get_settings(connection: HTTPConnection) -> ServerSettings:
    return connection.app.state.settings


async def get_clock(connection: HTTPConnection) -> SimulationClock:
    return connection.app.state.clock


async def need_historian(connection: HTTPConnection) -> Historian:
    """The twin's historian, or the 404 that every history route answers without one."""
    historian = connection.app.state.historian
    if historian is None:
        raise HTTPException(404, "this twin keeps no history: start it with --history FILE")
    return historian


TwinDep = Annotated[Twin, Depends(get_twin)]
HubDep = Annotated[StreamHub, Depends(get_hub)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
ClockDep = Annotated[SimulationClock, Depends(get_clock)]
HistorianDep = Annotated[Historian, Depends(need_historian)]


def require_role(role: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency answering who calls, or refusing with AuthError (401, 403) unless they have `role`."""

    async def principal(settings: SettingsDep, authorization: str | None = Header(default=None)) -> Principal:
        return settings.access.require(authorization, role)

    return principal


Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine's loopback (with or without a port)."""
    if not host:
        return False
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if name.count(":") > 1 and not host.startswith("["):
        name = host  # a bare IPv6 address without a port
    return name in _LOOPBACK_NAMES
