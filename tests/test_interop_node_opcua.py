"""Interoperability: the connector against node-opcua, an independent OPC-UA stack from npm."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from asyncua import Client

from tests.conftest import free_port
from twin.cache import RuntimeCache, quality_name
from twin.connectors.bindings import load_bindings
from twin.connectors.opcua import OpcUaConnector

INTEROP = Path(__file__).parent / "interop"
URI = "urn:factory-twin:interop"
# name on the server, kind in the twin, expected value in the cache
EXPECTED = {
    "Boolean": ("bool", 1.0), "SByte": ("int", -100.0), "Byte": ("int", 200.0), "Int16": ("int", -30000.0),
    "UInt16": ("int", 60000.0), "Int32": ("int", -2e9), "UInt32": ("int", 4e9), "Int64": ("int", -1000.0),
    "UInt64": ("int", 123456789.0), "Float": ("float", 1.5), "Double": ("float", -0.00225),
    "String": ("text", "Schicht 2 läuft"), "DateTime": ("float", datetime(2026, 11, 25, 6, tzinfo=UTC).timestamp()),
    "Guid": ("text", "12345678-1234-5678-1234-567812345678"), "ByteString": ("text", "01fe"),
    "LocalizedText": ("text", "Störung"),
}


@pytest.fixture(scope="module")
def node_server():
    if shutil.which("node") is None or not (INTEROP / "node_modules").is_dir():
        pytest.skip("node or tests/interop/node_modules missing: run ./scripts/setup.sh")
    port = free_port()
    process = subprocess.Popen(["node", "server.mjs", str(port)], cwd=INTEROP, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            line = process.stdout.readline()
            if line.startswith("READY "):
                break
            if not line and process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the node-opcua server did not start")
        yield line.split()[1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def bindings(tmp_path: Path, endpoint: str, extra: str = "") -> Path:
    lines = ["servers:", "  node:", f"    endpoint: {endpoint}", "bindings:"]
    entries = {**{name: kind for name, (kind, _) in EXPECTED.items()}, "Counter": "int", "Sine": "float"}
    for name, kind in entries.items():
        lines += ["  - server: node", f'    node: "nsu={URI};s=Interop.{name}"', "    prim: /Interop",
                  f"    attr: twin:{name[0].lower() + name[1:]}", f"    kind: {kind}", "    sampling_ms: 50"]
    lines += ["  - server: node", f'    node: "nsu={URI};s=Interop.JointPositions"', "    prim: /Interop/Robot",
              "    attr: twin:jointPositions", "    width: 6"]
    path = tmp_path / "interop.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


async def stream(path: Path, check, timeout: float = 20.0):
    cache = RuntimeCache()
    connector = OpcUaConnector(load_bindings(path), cache)
    await connector.start()
    try:
        deadline = time.monotonic() + timeout
        while not check(cache, connector):
            assert time.monotonic() < deadline, f"timed out: {connector.health()}"
            await asyncio.sleep(0.05)
        return cache, connector
    finally:
        await connector.stop()


def value(cache: RuntimeCache, prim: str, attr: str):
    return cache.signal_value(cache.signal_row(prim, attr))


@pytest.mark.timeout(60)
def test_every_type_and_an_array_from_node_opcua(node_server, tmp_path):
    async def scenario():
        def all_good(cache, _):
            return all(quality_name(s) == "good" for s in cache.status)

        cache, connector = await stream(bindings(tmp_path, node_server), all_good)
        assert connector.errors == []
        for name, (_, expected) in EXPECTED.items():
            got = value(cache, "/Interop", f"twin:{name[0].lower() + name[1:]}")
            assert got == (pytest.approx(expected, rel=1e-6) if isinstance(expected, float) else expected), name
        joints = value(cache, "/Interop/Robot", "twin:jointPositions")
        np.testing.assert_allclose(joints, [0.1, -1.2, 1.5, 0.0, 1.3, -0.4])
        row = cache.signal_row("/Interop", "twin:counter")
        assert abs(cache.source_time[row] - time.time()) < 30 and not np.isnan(cache.server_time[row])
        # the same value a bare asyncua client reads directly
        async with Client(node_server, timeout=5) as client:
            index = await client.get_namespace_index(URI)
            direct = await client.get_node(f"ns={index};s=Interop.Double").read_value()
        assert value(cache, "/Interop", "twin:double") == pytest.approx(direct)

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_changing_values_stream_and_an_unknown_node_is_named(node_server, tmp_path):
    extra = f"""  - server: node
    node: "nsu={URI};s=Interop.Nothing"
    prim: /Interop
    attr: twin:nothing
"""
    path = bindings(tmp_path, node_server, extra)

    async def scenario():
        seen: list[float] = []

        def counter_moves(cache, connector):
            seen.append(value(cache, "/Interop", "twin:counter"))
            return len({v for v in seen if v == v}) >= 5 and connector.errors

        _, connector = await stream(path, counter_moves)
        [error] = connector.errors
        line = path.read_text().splitlines().index("  - server: node", len(path.read_text().splitlines()) - 5) + 1
        assert f"interop.yaml:{line}:" in error and "Interop.Nothing" in error and "BadNodeIdUnknown" in error

    asyncio.run(scenario())
