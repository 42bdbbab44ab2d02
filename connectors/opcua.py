"""OPC-UA connector: subscriptions on the bound nodes into the runtime cache, and writes back.

One session per server of the binding file, each with its own task: a server that is
down or slow never delays the others. A session connects (securely when the binding file
says so), resolves `nsu=` NodeIds and browse paths, subscribes to its readable bindings
and writes each data change (value scaled into twin units, status code, source and server
timestamps) into the cache. A binding the server refuses (unknown node, access denied) or
whose values do not fit (an array of the wrong length, text for a number) is reported with
the file and line and its signal marked bad; the other bindings keep streaming. When the
connection is lost the session's signals that had a usable value turn uncertain (last usable
value, stale; bad ones stay bad) and it reconnects with capped exponential backoff, recreating
its subscription.

Writes go the other way for bindings with direction write or both: limits are checked in
twin units, the value is converted to the node's data type, the server's answer is
returned as its status code, and every attempt is recorded in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import math
import time
import uuid
from collections import deque
from datetime import datetime
from pathlib import Path

import numpy as np
from asyncua import Client, Node, ua

from twin.core import heap
from twin.core.cache import UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache, quality_name, state_name

from .bindings import Binding, BindingFile, ServerConfig, qualified_name_parts
from .security import TwinClient, configure_client

log = logging.getLogger("twin.connectors.opcua")

BAD_NODE_ID_UNKNOWN = 0x80340000
BAD_TYPE_MISMATCH = 0x80740000
BAD_OUT_OF_RANGE = 0x803C0000
BAD_NOT_CONNECTED = 0x808A0000
BAD_NOT_WRITABLE = 0x803B0000

_INTEGER_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1), ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1), ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1), ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1), ua.VariantType.UInt64: (0, 2**64 - 1),
}


_UNIX_EPOCH = datetime(1970, 1, 1)


def _epoch(moment: datetime | None) -> float | None:
    """Seconds since 1970 of an OPC-UA time: asyncua decodes them as aware UTC; one without a zone is UTC too."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return (moment - _UNIX_EPOCH).total_seconds()  # not replace(tzinfo=UTC): that costs a new object
    return moment.timestamp()


def _jsonable(value):
    """OPC-UA values (structures, LocalizedText, Guid, ByteString...) as plain JSON data."""
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, ua.NodeId | ua.QualifiedName):
        return value.to_string()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_PLAIN_NUMBERS = (float, int)  # exact types: bool (a subclass of int) takes to_twin's path


def to_twin(binding: Binding, value):
    """A value from the server in the cache's terms, or ValueError naming what does not fit."""
    if value is None:
        return None
    if binding.kind == "json":
        return json.dumps(_jsonable(value), separators=(",", ":"))
    if binding.kind == "text":
        if isinstance(value, ua.LocalizedText):
            return value.Text or ""
        if isinstance(value, ua.XmlElement):
            return value.Value
        if isinstance(value, ua.NodeId | ua.QualifiedName):
            return value.to_string()  # the OPC-UA text forms: "ns=2;s=Tool", "2:Tool"
        if isinstance(value, str | uuid.UUID):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, bytes):
            return value.hex()
        raise ValueError(f"expected text, the server sent {type(value).__name__} {value!r}")
    if isinstance(value, ua.StatusCode):
        value = value.value
    if isinstance(value, datetime):
        value = _epoch(value)
    if isinstance(value, str | bytes | ua.LocalizedText) or dataclasses.is_dataclass(value):
        raise ValueError(f"expected a {binding.kind} value, the server sent {type(value).__name__} {value!r:.60}")
    try:
        array = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"expected a {binding.kind} value, the server sent {type(value).__name__}") from None
    if array.size != binding.width:
        raise ValueError(f"expected {binding.width} value(s), the server sent {array.size}")
    return array * binding.scale + binding.offset


@dataclasses.dataclass(frozen=True)
class WriteResult:
    ok: bool
    status: str  # the OPC-UA status code name, e.g. "Good" or "BadOutOfRange"
    status_code: int
    message: str = ""


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """Who wrote what, when, and what the server said: kept in memory and appended to a JSONL file."""

    time: float
    user: str
    prim: str
    attr: str
    server: str
    node: str
    old_value: object
    new_value: object
    status: str


class _Session:
    """One server: connect, subscribe, stream, write, and reconnect when the link drops."""

    def __init__(self, config: ServerConfig, bindings: list[Binding], rows: list[int], cache: RuntimeCache,
                 binding_file: BindingFile, min_backoff: float, max_backoff: float):
        self.config = config
        self.bindings = bindings
        self.rows = rows
        self.cache = cache
        self.binding_file = binding_file
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.connected = False
        self.subscribed = False  # connected, and every node resolved: writes can go out
        self.last_error: str | None = None
        self.updates = 0
        self.connects = 0
        self.binding_errors: dict[int, str] = {}  # binding index -> message
        self.impossible_server_time = False
        self.client: Client | None = None
        self.nodes: dict[int, Node] = {}  # binding index -> resolved node
        self.variant_types: dict[int, ua.VariantType] = {}  # writable binding index -> the node's type
        self._by_handle: dict[int, list[int]] = {}  # monitored item's client handle -> binding indexes
        # bindings a plain Python number can go to as is (the common case: no numpy on the hot path)
        self._plain_number = [b.width == 1 and b.kind in ("float", "int") for b in bindings]
        self._lost = asyncio.Event()

    # asyncua calls this for every data change of the subscription
    def datachange_notification(self, node, value, data) -> None:
        if not self.connected:
            return  # queued before the link was lost, run after its signals were marked stale: not news
        item = data.monitored_item
        for index in self._by_handle.get(item.ClientHandle, ()):  # one node may feed several attributes
            self._store(index, value, item.Value)

    def _store(self, index: int, value, data_value: ua.DataValue) -> None:
        binding, row = self.bindings[index], self.rows[index]
        status = data_value.StatusCode.value if data_value.StatusCode is not None else 0
        if type(value) in _PLAIN_NUMBERS and self._plain_number[index]:
            converted = value * binding.scale + binding.offset  # what to_twin does, without an array
        else:
            try:
                converted = to_twin(binding, value)
            except ValueError as error:
                self._binding_error(index, str(error), BAD_TYPE_MISMATCH)
                return
        if self.binding_errors:
            self.binding_errors.pop(index, None)
        server_time = _epoch(data_value.ServerTimestamp)
        if server_time is not None and server_time > time.time() + 86_400:
            # asyncua 2.1 misreads ServerTimestamp when a server also sends picoseconds (node-opcua does):
            # it arrives as 9999-12-31. An impossible time is recorded as unknown, never passed on.
            if not self.impossible_server_time:
                log.warning("server %s sends ServerTimestamps in the far future; recording them as unknown",
                            self.config.name)
            self.impossible_server_time = True
            server_time = math.nan
        label = None
        if binding.enum and converted is not None:
            label = state_name(binding.enum, converted if isinstance(converted, int | float) else converted[0])
        source_time = _epoch(data_value.SourceTimestamp)
        if source_time is None and server_time is not None and math.isfinite(server_time):
            source_time = server_time  # no source time sent: the server's is closer to the truth than arrival
        self.cache.write_signal(row, converted, status=status, source_time=source_time, server_time=server_time,
                                label=label)
        self.updates += 1

    def status_change_notification(self, status) -> None:
        self._lost.set()

    def _binding_error(self, index: int, message: str, status: int) -> None:
        text = str(self.binding_file.error(self.bindings[index], message))
        if self.binding_errors.get(index) != text:
            log.error("%s", text)
        self.binding_errors[index] = text
        self.cache.write_signal(self.rows[index], None, status=status)

    async def run(self) -> None:
        backoff = self.min_backoff
        while True:
            # asyncua reads the server's state every watchdog interval and gives the answer as long again;
            # at 1 s a busy server (10,000 first values after subscribing) was taken for a dead one
            client = TwinClient(self.config, timeout=max(5.0, self.config.health_check_s),
                                watchdog_intervall=self.config.health_check_s)
            try:
                self._lost.clear()
                await self._configure(client)
                await client.connect()

                async def on_lost(exc: Exception) -> None:
                    self._lost.set()

                client.connection_lost_callback = on_lost
                self.client = client
                self.connected = True
                self.connects += 1
                self.last_error = None
                await self._subscribe(client)
                self.subscribed = True
                heap.settle_soon()  # the subscription items live as long as the session: out of the GC's scans
                backoff = self.min_backoff
                log.info("connected to %s: %d bindings", self.config.endpoint, len(self.bindings))
                await self._lost.wait()
                self.last_error = "connection lost"
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure to connect or subscribe: stale, then retry
                where = f"{self.binding_file.path}:{self.config.line}"
                self.last_error = (f"{where}: server {self.config.name!r} ({self.config.endpoint}): "
                                   f"{type(error).__name__}: {error}")
                log.warning("%s; retrying in %.1f s", self.last_error, backoff)
            finally:
                was_connected, self.connected, self.client = self.connected, False, None
                self.subscribed = False
                if was_connected:  # stale: what had a usable value keeps it; what was bad (or never came) stays so
                    usable = [row for row in self.rows if quality_name(self.cache.status[row]) != "bad"]
                    self.cache.mark_status(usable, UNCERTAIN_LAST_USABLE_VALUE)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.disconnect(), 2.0)
                if was_connected:
                    heap.settle_soon(release_frozen=True)  # the dropped session was frozen: free its cycles
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2.0, self.max_backoff)

    async def _configure(self, client: Client) -> None:
        """Security and identity, when the binding file asks for them (connectors/security.py)."""
        if self.config.security.policy != "None" or self.config.username is not None:
            await configure_client(client, self.config, self.binding_file.path)

    async def _resolve(self, client: Client, namespaces: list[str], index: int) -> Node | None:
        binding = self.bindings[index]

        def namespace_index(uri: str) -> int | None:
            if uri not in namespaces:
                self._binding_error(index, f"the server has no namespace {uri!r}", BAD_NODE_ID_UNKNOWN)
                return None
            return namespaces.index(uri)

        if binding.node:
            node_id = binding.node
            if node_id.startswith("nsu="):
                uri, _, rest = node_id[4:].partition(";")
                ns = namespace_index(uri)
                if ns is None:
                    return None
                node_id = f"ns={ns};{rest}"
            return client.get_node(node_id)
        names = []
        for element in binding.browse_path:
            prefix, name = qualified_name_parts(element)
            if prefix.startswith("nsu="):
                ns = namespace_index(prefix[4:])
                if ns is None:
                    return None
                prefix = str(ns)
            names.append(f"{prefix}:{name}")
        try:
            return await client.nodes.objects.get_child(names)
        except ua.UaStatusCodeError as error:
            self._binding_error(index, f"browse path not found on the server ({ua.StatusCode(error.code).name})",
                                error.code)
            return None

    async def _subscribe(self, client: Client) -> None:
        namespaces = await client.get_namespace_array()
        if any(b.kind == "json" for b in self.bindings):
            with contextlib.suppress(Exception):  # servers without type definitions still stream the rest
                await client.load_data_type_definitions()
        self.nodes = {}
        for index, binding in enumerate(self.bindings):
            node = await self._resolve(client, namespaces, index)
            if node is None:
                continue
            self.nodes[index] = node
            if binding.writable:
                try:
                    self.variant_types[index] = await node.read_data_type_as_variant_type()
                except Exception as error:
                    self._binding_error(index, f"cannot read its data type: {error}", BAD_NODE_ID_UNKNOWN)
        readable = [i for i in self.nodes if self.bindings[i].readable]
        if not readable:
            return
        # one monitored item per node and settings: bindings that share both share its changes, and a
        # binding with its own sampling, queue or deadband on the same node gets an item of its own
        shared: dict[tuple, list[int]] = {}
        for i in readable:
            binding = self.bindings[i]
            deadband = (binding.deadband.kind, binding.deadband.value) if binding.deadband else None
            shared.setdefault((self.nodes[i].nodeid, binding.sampling_ms, binding.queue_size, deadband), []).append(i)
        self._by_handle = {indexes[0] + 1: indexes for indexes in shared.values()}  # before any notification
        groups: dict[tuple, list[int]] = {}
        for (_, *settings), indexes in shared.items():
            groups.setdefault(tuple(settings), []).append(indexes[0])
        subscription = await client.create_subscription(self.config.publishing_ms, self)
        for (sampling, queue_size, deadband), firsts in groups.items():
            requests = [_item_request(i + 1, self.nodes[i], sampling, queue_size, deadband) for i in firsts]
            handles = await _create_items(subscription, requests, one_by_one=deadband is not None)
            for first, handle in zip(firsts, handles, strict=True):
                if isinstance(handle, ua.StatusCode):
                    for index in self._by_handle[first + 1]:
                        self._binding_error(index, f"the server refused it: {handle.name}", handle.value)

    async def write(self, index: int, value) -> WriteResult:
        binding = self.bindings[index]
        if self.client is None or not self.connected:
            return WriteResult(False, "BadNotConnected", BAD_NOT_CONNECTED, f"server {self.config.name} is offline")
        node, variant_type = self.nodes.get(index), self.variant_types.get(index)
        if node is None or variant_type is None:
            if not self.subscribed:  # connected, its nodes still being resolved: not a refusal by the server
                return WriteResult(False, "BadNotConnected", BAD_NOT_CONNECTED,
                                   f"server {self.config.name} is reconnecting; try again in a moment")
            return WriteResult(False, "BadNodeIdUnknown", BAD_NODE_ID_UNKNOWN, self.binding_errors.get(index, ""))
        try:
            raw = from_twin(binding, value, variant_type)
        except ValueError as error:
            code = BAD_OUT_OF_RANGE if isinstance(error, OutOfRange) else BAD_TYPE_MISMATCH
            return WriteResult(False, ua.StatusCode(ua.UInt32(code)).name, code, str(error))
        try:
            await node.write_value(ua.DataValue(ua.Variant(raw, variant_type)))
        except ua.UaStatusCodeError as error:
            return WriteResult(False, ua.StatusCode(error.code).name, error.code,
                               f"the server refused the write: {error}")
        except (TimeoutError, ConnectionError, OSError) as error:
            return WriteResult(False, "BadNotConnected", BAD_NOT_CONNECTED,
                               f"server {self.config.name} did not answer: {type(error).__name__} {error}")
        except Exception as error:  # a value asyncua cannot encode for this node: never a crash
            return WriteResult(False, "BadTypeMismatch", BAD_TYPE_MISMATCH, f"cannot encode the value: {error}")
        return WriteResult(True, "Good", 0)


def _item_request(handle: int, node: Node, sampling_ms: float, queue_size: int,
                  deadband: tuple[str, float] | None) -> ua.MonitoredItemCreateRequest:
    """One monitored item as the binding asks for it, sampling interval included (also with a deadband)."""
    parameters = ua.MonitoringParameters(ClientHandle=handle, SamplingInterval=sampling_ms, QueueSize=queue_size,
                                         DiscardOldest=True)
    if deadband is not None:
        kind, amount = deadband
        parameters.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                                DeadbandType=1 if kind == "absolute" else 2, DeadbandValue=amount)
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=parameters)


# A call-wide refusal with one of these is about the session, not the items: the session reconnects.
_LINK_CODES = frozenset(getattr(ua.StatusCodes, name) for name in (
    "BadSessionIdInvalid", "BadSessionClosed", "BadSessionNotActivated", "BadSubscriptionIdInvalid",
    "BadSecureChannelIdInvalid", "BadSecureChannelClosed", "BadConnectionClosed", "BadServerHalted",
    "BadShutdown", "BadTimeout", "BadResourceUnavailable", "BadOutOfMemory", "BadCommunicationError",
    "BadServerNotConnected", "BadNoCommunication", "BadTooManySessions") if hasattr(ua.StatusCodes, name))
# ... and with one of these the call was too big: it is split in halves.
_TOO_MANY_CODES = frozenset(getattr(ua.StatusCodes, name) for name in (
    "BadTooManyOperations", "BadTooManyMonitoredItems", "BadRequestTooLarge", "BadResponseTooLarge",
    "BadEncodingLimitsExceeded") if hasattr(ua.StatusCodes, name))


async def _create_items(subscription, requests: list[ua.MonitoredItemCreateRequest], *,
                        one_by_one: bool) -> list[int | ua.StatusCode]:
    """Create monitored items in one call; an item the server refuses is its status code.

    A call refused as too big is split in halves (a server's MaxMonitoredItemsPerCall). With filters
    (`one_by_one`), a call the server fails over one filter it cannot take is asked again item by item, so
    that only that binding fails. Link and session failures, and anything else about a call of plain items,
    propagate: the session reconnects, as it does for a failed connect.
    """
    try:
        return await subscription.create_monitored_items(requests)
    except (TimeoutError, ConnectionError, OSError):
        raise  # the link, not an item
    except ua.UaStatusCodeError as error:
        if error.code in _LINK_CODES:
            raise
        if error.code in _TOO_MANY_CODES and len(requests) > 1:
            half = len(requests) // 2
            return (await _create_items(subscription, requests[:half], one_by_one=one_by_one)
                    + await _create_items(subscription, requests[half:], one_by_one=one_by_one))
        if len(requests) == 1 and (one_by_one or error.code not in _TOO_MANY_CODES):
            return [ua.StatusCode(error.code)]  # the server's answer about this one item
        if not one_by_one:
            raise
    except Exception:
        if not one_by_one:
            raise
        if len(requests) == 1:  # a filter asyncua cannot send, or the server cannot take
            return [ua.StatusCode(ua.UInt32(ua.StatusCodes.BadMonitoredItemFilterUnsupported))]
    handles = []
    for request in requests:
        handles += await _create_items(subscription, [request], one_by_one=True)
    return handles


class OutOfRange(ValueError):
    """A value outside a binding's limits or its node type's range."""


def from_twin(binding: Binding, value, variant_type: ua.VariantType):
    """A value in twin units as the node's data type: limits first, then scale, offset and type."""
    if binding.kind in ("text", "json"):
        if not isinstance(value, str):
            raise ValueError(f"{binding.prim}.{binding.attr} takes text, got {value!r}")
        if variant_type == ua.VariantType.LocalizedText:
            return ua.LocalizedText(value)
        if variant_type != ua.VariantType.String:
            raise ValueError(f"writing text to a {variant_type.name} node is not supported")
        return value
    if binding.enum and isinstance(value, str):
        names = {name: code for code, name in binding.enum.items()}
        if value not in names:
            raise ValueError(f"{value!r} is not one of {sorted(names)}")
        value = names[value]
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{binding.prim}.{binding.attr} takes a finite number, got {value!r}")
    if binding.minimum is not None and value < binding.minimum:
        raise OutOfRange(f"{value} is below the lower limit {binding.minimum}")
    if binding.maximum is not None and value > binding.maximum:
        raise OutOfRange(f"{value} is above the upper limit {binding.maximum}")
    raw: int | float
    if isinstance(value, int) and binding.scale == 1.0 and binding.offset == 0.0:
        raw = value  # integers stay exact, 64-bit ones included
    else:
        raw = (value - binding.offset) / binding.scale
    if variant_type == ua.VariantType.Boolean:
        return bool(raw)
    if variant_type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[variant_type]
        whole = round(raw)
        if abs(raw - whole) > 1e-9 * max(1.0, abs(whole)):  # 0.043 / 0.001 is 42.99999999999999: still 43
            raise ValueError(f"the node holds {variant_type.name} and {raw} is not a whole number")
        if not low <= whole <= high:
            raise OutOfRange(f"{whole} is out of the range of {variant_type.name}")
        return int(whole)
    if variant_type in (ua.VariantType.Float, ua.VariantType.Double):
        return float(raw)
    raise ValueError(f"writing numbers to a {variant_type.name} node is not supported")


class OpcUaConnector:
    """All servers of a binding file feeding one runtime cache, and taking writes back."""

    def __init__(self, binding_file: BindingFile, cache: RuntimeCache, *, min_backoff: float = 0.5,
                 max_backoff: float = 10.0, audit_path: Path | None = None):
        self.binding_file = binding_file
        self.cache = cache
        self.audit: deque[AuditRecord] = deque(maxlen=10_000)
        self.audit_path = audit_path
        self.sessions: dict[str, _Session] = {}
        self._writable: dict[tuple[str, str], tuple[_Session, int]] = {}
        for name, config in binding_file.servers.items():
            bindings = [b for b in binding_file.bindings if b.server == name]
            rows = [cache.add_signal(b.prim, b.attr, width=b.width, unit=b.unit,
                                     kind="text" if b.kind == "json" else b.kind, labels=b.enum or None)
                    for b in bindings]
            session = _Session(config, bindings, rows, cache, binding_file, min_backoff, max_backoff)
            self.sessions[name] = session
            for index, binding in enumerate(bindings):
                if binding.writable:
                    self._writable[(binding.prim, binding.attr)] = (session, index)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(session.run(), name=f"opcua:{name}")
                       for name, session in self.sessions.items()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def writable(self, prim: str, attr: str) -> bool:
        return (prim, attr) in self._writable

    async def write(self, prim: str, attr: str, value, *, user: str) -> WriteResult:
        """Send a value (in twin units) to the bound node; the attempt is audited whatever the outcome."""
        if (prim, attr) not in self._writable:
            raise KeyError(f"{prim}.{attr} has no writable binding")
        session, index = self._writable[(prim, attr)]
        binding = session.bindings[index]
        old = self.cache.signal_value(session.rows[index])
        result = WriteResult(False, "BadInternalError", 0x80020000, "the write did not complete")
        try:
            result = await session.write(index, value)
        finally:  # every attempt is recorded, whatever happened to it
            record = AuditRecord(time.time(), user, prim, attr, session.config.name, binding.source,
                                 _jsonable(old.tolist() if isinstance(old, np.ndarray) else old), _jsonable(value),
                                 result.status)
            self.audit.append(record)
            if self.audit_path is not None:
                try:
                    with self.audit_path.open("a") as handle:
                        handle.write(json.dumps(dataclasses.asdict(record)) + "\n")
                except OSError as error:
                    log.error("audit file %s: %s (the record is kept in memory)", self.audit_path, error)
        log.info("write by %s: %s.%s = %r -> %s", user, prim, attr, value, result.status)
        return result

    @property
    def errors(self) -> list[str]:
        """Every binding's current error (file:line: binding node -> prim.attr: what is wrong)."""
        return [message for session in self.sessions.values() for message in session.binding_errors.values()]

    def health(self) -> dict:
        """Per server: reachable or not, why not, and which bindings fail, for /api/health and the log."""
        return {
            name: {"endpoint": s.config.endpoint, "connected": s.connected, "subscribed": s.subscribed,
                   "last_error": s.last_error,
                   "n_bindings": len(s.bindings), "n_errors": len(s.binding_errors),
                   "errors": sorted(s.binding_errors.values()), "updates": s.updates, "connects": s.connects}
            for name, s in self.sessions.items()
        }
