"""OPC-UA connector: subscriptions on the bound nodes, values into the runtime cache.

One session per server of the binding file, each with its own task: a server that is
down or slow never delays the others. A session connects, resolves `nsu=` NodeIds
through the server's namespace array, subscribes to its bindings, and writes each data
change (value, status code, source and server timestamps) into the cache. A binding the
server refuses (unknown node, access denied) or whose values do not fit (an array of the
wrong length, text for a number) is reported with the file and line, its signal marked
bad, and the other bindings keep streaming. When the connection is lost the session's
signals turn uncertain (last usable value, stale) and it reconnects with capped
exponential backoff, recreating its subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import numpy as np
from asyncua import Client, ua

from twin.cache import UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache

from .bindings import Binding, BindingFile, ServerConfig

log = logging.getLogger("twin.connectors.opcua")

BAD_NODE_ID_UNKNOWN = 0x80340000
BAD_TYPE_MISMATCH = 0x80740000
BAD_NOT_CONNECTED = 0x808A0000


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class _Session:
    """One server: connect, subscribe, stream, and reconnect when the link drops."""

    def __init__(self, config: ServerConfig, bindings: list[Binding], rows: list[int], cache: RuntimeCache,
                 binding_file: BindingFile, min_backoff: float, max_backoff: float):
        self.config = config
        self.bindings = bindings
        self.rows = rows
        self.cache = cache
        self.binding_file = binding_file
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.connected = False
        self.last_error: str | None = None
        self.updates = 0
        self.connects = 0
        self.binding_errors: dict[int, str] = {}  # binding index -> message
        self._by_node: dict[ua.NodeId, int] = {}  # node id -> binding index
        self._lost = asyncio.Event()

    # asyncua calls this for every data change of the subscription
    def datachange_notification(self, node, value, data) -> None:
        index = self._by_node.get(node.nodeid)
        if index is None:
            return
        binding, row = self.bindings[index], self.rows[index]
        data_value = data.monitored_item.Value
        status = data_value.StatusCode.value if data_value.StatusCode is not None else 0
        try:
            converted = self._convert(binding, value)
        except ValueError as error:
            self._binding_error(index, str(error), BAD_TYPE_MISMATCH)
            return
        self.binding_errors.pop(index, None)
        self.cache.write_signal(row, converted, status=status, source_time=_epoch(data_value.SourceTimestamp),
                                server_time=_epoch(data_value.ServerTimestamp))
        self.updates += 1

    def status_change_notification(self, status) -> None:
        self._lost.set()

    @staticmethod
    def _convert(binding: Binding, value):
        if value is None:
            return None
        if binding.kind == "text":
            if not isinstance(value, str):
                raise ValueError(f"expected text, the server sent {type(value).__name__} {value!r}")
            return value
        if isinstance(value, str):
            raise ValueError(f"expected a {binding.kind} value, the server sent text {value!r}")
        array = np.asarray(value, dtype=np.float64).ravel()
        if array.size != binding.width:
            raise ValueError(f"expected {binding.width} value(s), the server sent {array.size}")
        return array

    def _binding_error(self, index: int, message: str, status: int) -> None:
        binding = self.bindings[index]
        text = str(self.binding_file.error(binding, message))
        if self.binding_errors.get(index) != text:
            log.error("%s", text)
        self.binding_errors[index] = text
        self.cache.write_signal(self.rows[index], None, status=status)

    async def run(self) -> None:
        backoff = self.min_backoff
        while True:
            client = Client(self.config.endpoint, timeout=5, watchdog_intervall=1.0)
            try:
                self._lost.clear()
                await client.connect()

                async def on_lost(exc: Exception) -> None:
                    self._lost.set()

                client.connection_lost_callback = on_lost
                self.connected = True
                self.connects += 1
                self.last_error = None
                await self._subscribe(client)
                backoff = self.min_backoff
                log.info("connected to %s: %d bindings", self.config.endpoint, len(self.bindings))
                await self._lost.wait()
                self.last_error = "connection lost"
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure to connect or subscribe: stale, then retry
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("server %s (%s): %s; retrying in %.1f s", self.config.name, self.config.endpoint,
                            self.last_error, backoff)
            finally:
                was_connected, self.connected = self.connected, False
                if was_connected:
                    self.cache.mark_status(self.rows, UNCERTAIN_LAST_USABLE_VALUE)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.disconnect(), 2.0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2.0, self.max_backoff)

    async def _subscribe(self, client: Client) -> None:
        namespaces = await client.get_namespace_array()
        nodes, indexes = [], []
        for index, binding in enumerate(self.bindings):
            node_id = binding.node
            if node_id.startswith("nsu="):
                uri, _, rest = node_id[4:].partition(";")
                if uri not in namespaces:
                    self._binding_error(index, f"the server has no namespace {uri!r}", BAD_NODE_ID_UNKNOWN)
                    continue
                node_id = f"ns={namespaces.index(uri)};{rest}"
            nodes.append(client.get_node(node_id))
            indexes.append(index)
        self._by_node = {node.nodeid: index for node, index in zip(nodes, indexes, strict=True)}
        if not nodes:
            return
        interval = min(self.bindings[i].sampling_ms for i in indexes)
        subscription = await client.create_subscription(interval, self)
        sampling = {i: self.bindings[i].sampling_ms for i in indexes}
        results = []
        for ms in sorted(set(sampling.values())):  # one request per sampling interval
            group = [(node, i) for node, i in zip(nodes, indexes, strict=True) if sampling[i] == ms]
            handles = await subscription.subscribe_data_change([node for node, _ in group], sampling_interval=ms,
                                                               queuesize=1)
            results += [(i, handle) for (_, i), handle in zip(group, handles, strict=True)]
        for index, handle in results:
            if isinstance(handle, ua.StatusCode):
                self._binding_error(index, f"the server refused it: {handle.name}", handle.value)


class OpcUaConnector:
    """All servers of a binding file feeding one runtime cache."""

    def __init__(self, binding_file: BindingFile, cache: RuntimeCache, *, min_backoff: float = 0.5,
                 max_backoff: float = 10.0):
        self.binding_file = binding_file
        self.cache = cache
        self.sessions: dict[str, _Session] = {}
        for name, config in binding_file.servers.items():
            bindings = [b for b in binding_file.bindings if b.server == name]
            rows = [cache.add_signal(b.prim, b.attr, width=b.width, unit=b.unit, kind=b.kind) for b in bindings]
            self.sessions[name] = _Session(config, bindings, rows, cache, binding_file, min_backoff, max_backoff)
        self._tasks: list[asyncio.Task] = []
        self.started = None

    async def start(self) -> None:
        self.started = time.time()
        self._tasks = [asyncio.create_task(session.run(), name=f"opcua:{name}")
                       for name, session in self.sessions.items()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    @property
    def errors(self) -> list[str]:
        return [message for session in self.sessions.values() for message in session.binding_errors.values()]

    def health(self) -> dict:
        return {
            name: {"endpoint": s.config.endpoint, "connected": s.connected, "last_error": s.last_error,
                   "bindings": len(s.bindings), "binding_errors": sorted(s.binding_errors.values()),
                   "updates": s.updates, "connects": s.connects}
            for name, s in self.sessions.items()
        }
