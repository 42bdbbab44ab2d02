"""Every OPC-UA built-in scalar type reaches the cache, from an asyncua server on loopback."""

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
from asyncua import Server, ua

from tests.helpers import free_port
from twin.connectors.bindings import load_bindings
from twin.connectors.opcua import OpcUaConnector
from twin.core.cache import RuntimeCache, quality_name

MOMENT = datetime(2026, 11, 25, 6, 0, 0, tzinfo=UTC)
GUID = uuid.UUID("12345678-1234-5678-1234-567812345678")
# (name, variant type, value on the server, kind, expected in the cache)
TYPES = [
    ("Boolean", ua.VariantType.Boolean, True, "bool", 1.0),
    ("SByte", ua.VariantType.SByte, -100, "int", -100.0),
    ("Byte", ua.VariantType.Byte, 200, "int", 200.0),
    ("Int16", ua.VariantType.Int16, -30000, "int", -30000.0),
    ("UInt16", ua.VariantType.UInt16, 60000, "int", 60000.0),
    ("Int32", ua.VariantType.Int32, -2_000_000_000, "int", -2_000_000_000.0),
    ("UInt32", ua.VariantType.UInt32, 4_000_000_000, "int", 4_000_000_000.0),
    ("Int64", ua.VariantType.Int64, -(2**52), "int", float(-(2**52))),
    ("UInt64", ua.VariantType.UInt64, 2**52, "int", float(2**52)),
    ("Float", ua.VariantType.Float, 1.5, "float", 1.5),
    ("Double", ua.VariantType.Double, -2.25e-3, "float", -2.25e-3),
    ("String", ua.VariantType.String, "Schicht 2 läuft", "text", "Schicht 2 läuft"),
    ("DateTime", ua.VariantType.DateTime, MOMENT, "float", MOMENT.timestamp()),
    ("DateTimeText", ua.VariantType.DateTime, MOMENT, "text", MOMENT.isoformat()),
    ("Guid", ua.VariantType.Guid, GUID, "text", str(GUID)),
    ("ByteString", ua.VariantType.ByteString, b"\x01\xfe", "text", "01fe"),
    ("LocalizedText", ua.VariantType.LocalizedText, ua.LocalizedText("Störung", "de"), "text", "Störung"),
    ("StatusCode", ua.VariantType.StatusCode, ua.StatusCode(0x80340000), "int", float(0x80340000)),
    ("QualifiedName", ua.VariantType.QualifiedName, ua.QualifiedName("Tool", 2), "text", "2:Tool"),
    ("NodeId", ua.VariantType.NodeId, ua.NodeId("Press.7", 3), "text", "ns=3;s=Press.7"),
]


@pytest.mark.timeout(60)
def test_every_built_in_scalar_type(tmp_path):
    async def scenario():
        port = free_port()
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/types/")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace("urn:factory-twin:types")
        folder = await server.nodes.objects.add_object(ua.NodeId("Types", ns), f"{ns}:Types")
        lines = ["servers:", "  s:", f"    endpoint: opc.tcp://127.0.0.1:{port}/types/", "bindings:"]
        for name, variant, value, kind, _ in TYPES:
            await folder.add_variable(ua.NodeId(f"Types.{name}", ns), f"{ns}:{name}", ua.Variant(value, variant))
            lines += ["  - server: s", f'    node: "ns={ns};s=Types.{name}"', "    prim: /Types",
                      f"    attr: twin:{name[0].lower() + name[1:]}", f"    kind: {kind}"]
        # a mistake in the file: a String node bound as a number
        lines += ["  - server: s", f'    node: "ns={ns};s=Types.String"', "    prim: /Types", "    attr: twin:wrong",
                  "    kind: float"]
        path = tmp_path / "types.yaml"
        path.write_text("\n".join(lines) + "\n")
        async with server:
            cache = RuntimeCache()
            connector = OpcUaConnector(load_bindings(path), cache)
            await connector.start()
            try:
                wrong = cache.signal_row("/Types", "twin:wrong")
                deadline = time.monotonic() + 15
                while not all(quality_name(s) == "good" for row, s in enumerate(cache.status) if row != wrong) \
                        or not connector.errors:
                    assert time.monotonic() < deadline, f"not all types arrived: {connector.errors}"
                    await asyncio.sleep(0.05)
                [error] = connector.errors  # named with its line; every other binding streams
                assert f"types.yaml:{len(lines) - 4}:" in error
                assert "expected a float value, the server sent str" in error
                assert quality_name(cache.status[wrong]) == "bad"
                for name, _, _, _, expected in TYPES:
                    got = cache.signal_value(cache.signal_row("/Types", f"twin:{name[0].lower() + name[1:]}"))
                    if isinstance(expected, float):
                        assert got == pytest.approx(expected, rel=1e-6), name
                    else:
                        assert got == expected, name
            finally:
                await connector.stop()

    asyncio.run(scenario())


def test_plain_numbers_take_the_fast_path_to_the_same_value_as_to_twin(tmp_path):
    """Python floats and ints skip numpy on the hot path; what lands in the cache must not change."""
    from twin.connectors.opcua import to_twin

    path = tmp_path / "bindings.yaml"
    path.write_text("servers:\n  s:\n    endpoint: opc.tcp://127.0.0.1:4840/\nbindings:\n"
                    "  - {server: s, node: ns=2;s=a, prim: /P, attr: twin:mm, scale: 0.001, offset: 2.5}\n"
                    "  - {server: s, node: ns=2;s=b, prim: /P, attr: twin:state, kind: int, enum: {0: idle, 4: down}}\n"
                    "  - {server: s, node: ns=2;s=c, prim: /P, attr: twin:flag, kind: bool}\n")
    bindings = load_bindings(path)
    cache = RuntimeCache()
    (session,) = OpcUaConnector(bindings, cache).sessions.values()
    stamp = datetime(2026, 11, 25, 6, 0, 1, 250_000)  # naive UTC, as asyncua decodes it
    for index, value, label in ((0, 1234.5, None), (0, 7, None), (0, float("nan"), None), (1, 4, "down"),
                                (1, 3, None), (2, True, None)):
        session._store(index, value, ua.DataValue(ua.Variant(value), SourceTimestamp=stamp, ServerTimestamp=stamp))
        row = session.rows[index]
        expected = float(to_twin(bindings.bindings[index], value)[0])
        cached = cache.signal_value(row)
        assert cached == expected or (expected != expected and cached != cached), (index, value)
        assert cache.text[row] == label and cache.source_time[row] == MOMENT.timestamp() + 1.25
    assert session.updates == 6


def test_a_value_without_source_timestamp_takes_the_server_timestamp(tmp_path):
    path = tmp_path / "bindings.yaml"
    path.write_text("servers:\n  s:\n    endpoint: opc.tcp://127.0.0.1:4840/\nbindings:\n"
                    "  - {server: s, node: ns=2;s=a, prim: /P, attr: twin:a}\n")
    cache = RuntimeCache()
    (session,) = OpcUaConnector(load_bindings(path), cache).sessions.values()
    server_stamp = datetime(2026, 11, 25, 6, 0, 2)  # naive UTC
    session._store(0, 1.0, ua.DataValue(ua.Variant(1.0), ServerTimestamp=server_stamp))
    assert cache.source_time[0] == cache.server_time[0] == MOMENT.timestamp() + 2.0
    before = time.time()
    session._store(0, 2.0, ua.DataValue(ua.Variant(2.0)))  # neither: the time of arrival
    assert before <= cache.source_time[0] <= time.time()


def test_a_write_while_the_session_resolves_its_nodes_is_not_connected_yet(tmp_path):
    """Between connecting and resolving the nodes a write must not read as the server refusing the node."""
    path = tmp_path / "bindings.yaml"
    path.write_text("servers:\n  s:\n    endpoint: opc.tcp://127.0.0.1:4840/\nbindings:\n"
                    "  - {server: s, node: ns=2;s=a, prim: /P, attr: twin:a, direction: both}\n")
    (session,) = OpcUaConnector(load_bindings(path), RuntimeCache()).sessions.values()
    session.client, session.connected = object(), True  # the state of run() while _subscribe() is under way
    result = asyncio.run(session.write(0, 1.0))
    assert (result.ok, result.status) == (False, "BadNotConnected") and "reconnecting" in result.message


class _StubSubscription:
    """create_monitored_items as a server with limits answers it: `refuse(requests)` gives the call's fault."""

    def __init__(self, refuse):
        self.refuse, self.calls = refuse, []

    async def create_monitored_items(self, requests):
        self.calls.append([r.RequestedParameters.ClientHandle for r in requests])
        fault = self.refuse(requests)
        if fault is not None:
            raise fault
        return [100 + r.RequestedParameters.ClientHandle for r in requests]


def _requests(count: int, deadband=None):
    from twin.connectors.opcua import _item_request

    return [_item_request(i + 1, type("N", (), {"nodeid": ua.NodeId(i, 2)})(), 100.0, 1, deadband)
            for i in range(count)]


def test_monitored_items_are_created_within_the_servers_limits():
    from twin.connectors.opcua import _create_items

    def fault(code):
        return ua.UaStatusCodeError(getattr(ua.StatusCodes, code))

    # a server that takes at most 2 items per call: split in halves, every binding gets its item
    limited = _StubSubscription(lambda rs: fault("BadTooManyOperations") if len(rs) > 2 else None)
    assert asyncio.run(_create_items(limited, _requests(5), one_by_one=False)) == [101, 102, 103, 104, 105]
    assert limited.calls == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5], [3], [4, 5]]
    # a server that fails a whole call over one filter it cannot take: only that item fails
    picky = _StubSubscription(lambda rs: fault("BadMonitoredItemFilterUnsupported")
                              if any(r.RequestedParameters.ClientHandle == 2 for r in rs) else None)
    handles = asyncio.run(_create_items(picky, _requests(3, ("percent", 5.0)), one_by_one=True))
    assert handles[0] == 101 and handles[2] == 103 and handles[1].name == "BadMonitoredItemFilterUnsupported"
    # the session or the link, not the items: it propagates and the session reconnects
    for error in (fault("BadSessionIdInvalid"), fault("BadSubscriptionIdInvalid"), ConnectionError("reset"),
                  TimeoutError()):
        for one_by_one in (False, True):
            with pytest.raises(type(error)):
                asyncio.run(_create_items(_StubSubscription(lambda rs, e=error: e), _requests(3),
                                          one_by_one=one_by_one))
    # plain items and an unexpected failure: reconnect (logged with its type), never a made-up status
    with pytest.raises(ValueError):
        asyncio.run(_create_items(_StubSubscription(lambda rs: ValueError("cannot encode")), _requests(2),
                                  one_by_one=False))
