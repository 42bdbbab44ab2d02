"""Connector features against a purpose-built asyncua server on loopback: write-back with limits,
types and audit; browse paths; enum labels; deadbands; structures; several servers; a restart
mid-stream with no update lost after the connector resumes."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import pytest
from asyncua import Server, ua
from asyncua.common.structures104 import new_struct, new_struct_field

from tests.helpers import free_port, wait_until
from twin.connectors.bindings import load_bindings
from twin.connectors.opcua import OpcUaConnector
from twin.core.cache import RuntimeCache, quality_name

URI = "http://factory-twin.example/UA/test-server/"  # a URI with colons and slashes, as most PLCs use


class TestServer:
    """An asyncua server with the nodes these tests need; its counter ticks every 20 ms."""

    def __init__(self, port: int, counter_start: int = 0):
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/test/"
        self.counter = counter_start
        self.server = Server()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        server = self.server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(URI)
        cell = await server.nodes.objects.add_object(ua.NodeId("Cell", ns), f"{ns}:Cell")

        async def variable(name, value, kind, writable=False):
            node = await cell.add_variable(ua.NodeId(f"Cell.{name}", ns), f"{ns}:{name}", ua.Variant(value, kind))
            if writable:
                await node.set_writable()
            return node

        self.speed = await variable("Speed", 250.0, ua.VariantType.Double, writable=True)  # mm/s on the wire
        self.batch = await variable("BatchSize", 10, ua.VariantType.Int16, writable=True)
        self.locked = await variable("Locked", 1.0, ua.VariantType.Double)  # read-only
        self.state = await variable("State", 1, ua.VariantType.Int32)
        self.noisy = await variable("Noisy", 10.0, ua.VariantType.Double)
        self.count = await variable("Counter", self.counter, ua.VariantType.UInt32)
        struct_type, _ = await new_struct(server, ns, "RecipeStep", [
            new_struct_field("Name", ua.VariantType.String),
            new_struct_field("Temperature", ua.VariantType.Double),
            new_struct_field("Seconds", ua.VariantType.UInt32),
        ])
        await server.load_data_type_definitions()
        step = ua.RecipeStep(Name="anneal", Temperature=180.5, Seconds=90)  # type: ignore[attr-defined]
        await cell.add_variable(ua.NodeId("Cell.Step", ns), f"{ns}:Step",
                                ua.Variant(step, ua.VariantType.ExtensionObject), datatype=struct_type.nodeid)
        await server.start()
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        phase = 0
        while True:
            await asyncio.sleep(0.02)
            self.counter += 1
            phase += 1
            await self.count.write_value(ua.Variant(self.counter, ua.VariantType.UInt32))
            await self.noisy.write_value(ua.Variant(10.0 + 0.01 * (phase % 5), ua.VariantType.Double))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.server.stop()


BINDINGS = """servers:
  cell:
    endpoint: {endpoint}
    publishing_ms: 50
bindings:
  - server: cell
    browse_path: nsu={uri}:Cell/nsu={uri}:Speed
    prim: /Cell
    attr: twin:speed
    unit: m/s
    scale: 0.001
    direction: both
    limits: {{min: 0.0, max: 0.5}}
  - server: cell
    node: "nsu={uri};s=Cell.BatchSize"
    prim: /Cell
    attr: twin:batchSize
    kind: int
    direction: both
  - server: cell
    node: "nsu={uri};s=Cell.Locked"
    prim: /Cell
    attr: twin:locked
    direction: both
  - server: cell
    node: "nsu={uri};s=Cell.State"
    prim: /Cell
    attr: twin:state
    kind: int
    enum: {{0: idle, 1: working}}
  - server: cell
    node: "nsu={uri};s=Cell.Noisy"
    prim: /Cell
    attr: twin:noisy
    deadband: {{absolute: 0.5}}
    sampling_ms: 40
  - server: cell
    node: "nsu={uri};s=Cell.Step"
    prim: /Cell
    attr: twin:step
    kind: json
  - server: cell
    node: "nsu={uri};s=Cell.Counter"
    prim: /Cell
    attr: twin:counter
    kind: int
    sampling_ms: 0
    queue_size: 100
"""


class RecordingCache(RuntimeCache):
    """The real cache, also keeping every value written to one row (to prove nothing is lost)."""

    def __init__(self, watch: tuple[str, str]):
        super().__init__()
        self.watch = watch
        self.history: list[float] = []

    def write_signal(self, row, value, **kwargs):
        super().write_signal(row, value, **kwargs)
        info = self.signals[row]
        if (info.prim, info.attr) == self.watch and value is not None:
            self.history.append(float(np.asarray(value).ravel()[0]))


def value(cache, attr):
    return cache.signal_value(cache.signal_row("/Cell", attr))


@pytest.fixture
def bindings_path(tmp_path):
    def write(port: int, extra: str = ""):
        path = tmp_path / "cell.yaml"
        path.write_text(BINDINGS.format(endpoint=f"opc.tcp://127.0.0.1:{port}/test/", uri=URI) + extra)
        return path
    return write


@pytest.mark.timeout(90)
def test_reads_writes_limits_types_and_audit(bindings_path, tmp_path):
    async def scenario():
        server = TestServer(free_port())
        await server.start()
        cache = RuntimeCache()
        audit = tmp_path / "audit.jsonl"
        connector = OpcUaConnector(load_bindings(bindings_path(server.port)), cache, audit_path=audit)
        await connector.start()
        try:
            await wait_until(lambda: quality_name(cache.status[cache.signal_row("/Cell", "twin:step")]) == "good", 15,
                             "the structure to arrive")
            assert connector.errors == []
            assert value(cache, "twin:speed") == pytest.approx(0.25)  # browse path, scaled from mm/s
            state_row = cache.signal_row("/Cell", "twin:state")
            assert cache.signal_value(state_row) == 1 and cache.text[state_row] == "working"
            assert json.loads(value(cache, "twin:step")) == {"Name": "anneal", "Temperature": 180.5, "Seconds": 90}

            result = await connector.write("/Cell", "twin:speed", 0.4, user="alice")
            assert result.ok and await server.speed.read_value() == pytest.approx(400.0)
            await wait_until(lambda: value(cache, "twin:speed") == pytest.approx(0.4), 5, "the write to come back")

            refused = await connector.write("/Cell", "twin:speed", 0.9, user="alice")
            assert not refused.ok and refused.status == "BadOutOfRange" and "upper limit 0.5" in refused.message
            assert await server.speed.read_value() == pytest.approx(400.0)

            assert (await connector.write("/Cell", "twin:batchSize", 12.0, user="bob")).ok
            assert await server.batch.read_value() == 12
            assert (await connector.write("/Cell", "twin:batchSize", 2.5, user="bob")).status == "BadTypeMismatch"
            assert "out of the range of Int16" in (await connector.write("/Cell", "twin:batchSize", 40000,
                                                                         user="bob")).message

            locked = await connector.write("/Cell", "twin:locked", 2.0, user="bob")
            assert not locked.ok and locked.status in ("BadNotWritable", "BadUserAccessDenied")
            assert "server refused" in locked.message

            records = [json.loads(line) for line in audit.read_text().splitlines()]
            assert len(records) == len(connector.audit) == 6
            first = records[0]
            assert (first["user"], first["prim"], first["attr"], first["status"]) == ("alice", "/Cell", "twin:speed",
                                                                                       "Good")
            assert first["old_value"] == pytest.approx(0.25) and first["new_value"] == 0.4
            assert records[-1]["status"] == locked.status
        finally:
            await connector.stop()
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(90)
def test_deadband_filters_small_changes(bindings_path):
    """Also: bindings of one node with the same settings share a monitored item; other settings get their own."""
    same_node = f"""  - server: cell
    node: "nsu={URI};s=Cell.Noisy"
    prim: /Cell
    attr: twin:noisyCopy
    deadband: {{absolute: 0.5}}
    sampling_ms: 40
  - server: cell
    node: "nsu={URI};s=Cell.Noisy"
    prim: /Cell
    attr: twin:noisyRaw
"""

    async def scenario():
        server = TestServer(free_port())
        await server.start()
        received = []  # the monitored items as the server received them
        service = server.server.iserver.subscription_service
        create = service.create_monitored_items

        async def recording(params):
            received.extend(params.ItemsToCreate)
            return await create(params)

        service.create_monitored_items = recording
        cache = RuntimeCache()
        connector = OpcUaConnector(load_bindings(bindings_path(server.port, same_node)), cache)
        await connector.start()
        try:
            noisy, copy, raw = (cache.signal_row("/Cell", f"twin:{a}") for a in ("noisy", "noisyCopy", "noisyRaw"))
            counter = cache.signal_row("/Cell", "twin:counter")
            await wait_until(lambda: all(quality_name(cache.status[row]) == "good" for row in (noisy, copy, raw)), 15,
                             "first values")
            noisy_items = [item.RequestedParameters for item in received
                           if item.ItemToMonitor.NodeId.Identifier == "Cell.Noisy"]
            assert len(noisy_items) == 2  # one with the deadband (noisy, noisyCopy), one without (noisyRaw)
            (filtered,) = [item for item in noisy_items if hasattr(item.Filter, "DeadbandType")]
            assert filtered.SamplingInterval == 40.0  # the deadband keeps the binding's sampling
            assert (filtered.Filter.DeadbandType, filtered.Filter.DeadbandValue) == (1, 0.5)
            requested = {item.ItemToMonitor.NodeId.Identifier: item.RequestedParameters for item in received}
            assert (requested["Cell.Counter"].SamplingInterval, requested["Cell.Counter"].QueueSize) == (0.0, 100)
            assert not hasattr(requested["Cell.Speed"].Filter, "DeadbandType")  # no deadband, no filter
            versions = {row: cache.signal_version[row] for row in (noisy, copy, raw, counter)}
            await asyncio.sleep(1.0)  # the noisy value moves by 0.01..0.04 every 20 ms: inside the deadband
            assert cache.signal_version[noisy] == versions[noisy] and cache.signal_version[copy] == versions[copy]
            assert cache.signal_value(copy) == cache.signal_value(noisy)
            assert cache.signal_version[raw] > versions[raw]  # same node, no deadband: every change
            assert cache.signal_version[counter] > versions[counter]
        finally:
            await connector.stop()
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_restart_mid_stream_loses_nothing_after_resuming_and_other_servers_carry_on(bindings_path):
    async def scenario():
        port, other_port, dead_port = free_port(), free_port(), free_port()
        server, other = TestServer(port), TestServer(other_port)
        await server.start()
        await other.start()
        extra = f"""  - server: other
    node: "nsu={URI};s=Cell.Counter"
    prim: /Other
    attr: twin:counter
    kind: int
  - server: nowhere
    node: "nsu={URI};s=Cell.Counter"
    prim: /Nowhere
    attr: twin:counter
    kind: int
"""
        path = bindings_path(port, extra)
        text = path.read_text().replace("bindings:\n", f"""  other:
    endpoint: opc.tcp://127.0.0.1:{other_port}/test/
  nowhere:
    endpoint: opc.tcp://127.0.0.1:{dead_port}/test/
bindings:
""", 1)
        path.write_text(text)
        cache = RecordingCache(("/Cell", "twin:counter"))
        connector = OpcUaConnector(load_bindings(path), cache, max_backoff=1.0)
        await connector.start()
        try:
            counter = cache.signal_row("/Cell", "twin:counter")
            other_row = cache.signal_row("/Other", "twin:counter")
            await wait_until(lambda: len(cache.history) > 20, 15, "the counter to stream")
            await server.stop()
            stopped_at = server.counter
            await wait_until(lambda: quality_name(cache.status[counter]) == "stale", 15, "stale after the stop")
            seen_other = cache.signal_version[other_row]
            await wait_until(lambda: cache.signal_version[other_row] > seen_other, 5, "the other server to carry on")
            before_restart = len(cache.history)
            server = TestServer(port, counter_start=stopped_at + 1000)
            await server.start()
            await wait_until(lambda: quality_name(cache.status[counter]) == "good", 30, "reconnection")
            await wait_until(lambda: len(cache.history) - before_restart > 50, 15, "50 updates after the restart")
            resumed = cache.history[before_restart:]
            assert resumed[0] > stopped_at + 1000 - 1
            assert np.all(np.diff(resumed) == 1), "an update after the restart was lost"
            assert len(resumed) > 50
            health = connector.health()
            assert health["nowhere"]["connected"] is False and "nowhere" in health
            assert health["other"]["connected"]
            unreachable = health["nowhere"]["last_error"]  # names the file, the server's line and its endpoint
            assert f"cell.yaml:{path.read_text().splitlines().index('  nowhere:') + 1}: server 'nowhere'" in unreachable
            assert f"127.0.0.1:{dead_port}" in unreachable
        finally:
            await connector.stop()
            await server.stop()
            await other.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("health_check_s", "request_timeout"), [(8.0, 8.0), (1.0, 5.0)])
def test_health_check_s_sets_the_link_check_of_the_session(bindings_path, monkeypatch, health_check_s,
                                                           request_timeout):
    """The binding file's health_check_s is asyncua's watchdog interval, and no request timeout cuts it short
    (requests keep 5 s at least)."""
    import twin.connectors.opcua as opcua_module

    made = []

    class RecordingClient(opcua_module.TwinClient):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(opcua_module, "TwinClient", RecordingClient)

    async def scenario():
        server = TestServer(free_port())
        await server.start()
        path = bindings_path(server.port)
        path.write_text(path.read_text().replace("    publishing_ms: 50\n", "    publishing_ms: 50\n"
                                                                            f"    health_check_s: {health_check_s}\n"))
        cache = RuntimeCache()
        connector = OpcUaConnector(load_bindings(path), cache)
        await connector.start()
        try:
            await wait_until(lambda: connector.health()["cell"]["subscribed"], 15, "the subscription")
            assert made[-1]["watchdog_intervall"] == health_check_s and made[-1]["timeout"] == request_timeout
            assert connector.sessions["cell"].client._watchdog_intervall == health_check_s  # what asyncua reads
        finally:
            await connector.stop()
            await server.stop()

    asyncio.run(scenario())
