"""The OPC-UA connector against the sample PLC, a real asyncua server on loopback."""

import asyncio
import gc
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from asyncua import Client

from tests.helpers import free_port, wait_until
from twin.connectors.bindings import load_bindings
from twin.connectors.opcua import OpcUaConnector
from twin.core import heap
from twin.core.cache import RuntimeCache, quality_name
from twin.sample_factory import plc as sample_plc
from twin.sample_factory.plc import NAMESPACE, SamplePlc

SAMPLE = Path(sample_plc.__file__).with_name("bindings.yaml")
ROBOT = ("/Factory/Line/Robot1", "twin:jointPositions")
COUNTER = ("/Factory/Line/Machining", "twin:partsDone")


def good(cache: RuntimeCache, prim_attr) -> bool:
    return quality_name(cache.status[cache.signal_row(*prim_attr)]) == "good"


async def matches_direct_reads(endpoint: str, bindings, cache: RuntimeCache, timeout: float) -> None:
    """Every binding's cached value equals what a bare client reads with the same source timestamp.

    The line never stands still, so each round reads every node in one request, then watches the
    cache until it has caught up with those timestamps; a value cached with the very timestamp the
    server reported must be that value. Rounds repeat until every binding was caught once.
    """
    rows = [cache.signal_row(b.prim, b.attr) for b in bindings]
    unchecked = set(range(len(bindings)))
    deadline = time.monotonic() + timeout
    async with Client(endpoint, timeout=5) as client:
        index = await client.get_namespace_index(NAMESPACE)
        nodes = [client.get_node(b.node.replace(f"nsu={NAMESPACE}", f"ns={index}")) for b in bindings]
        while unchecked:
            if time.monotonic() > deadline:
                pytest.fail(f"never caught {[bindings[i].node for i in unchecked]} at a server read's timestamp")
            direct = await client.read_attributes(nodes)
            source = [dv.SourceTimestamp.replace(tzinfo=UTC).timestamp() for dv in direct]
            pending = set(unchecked)
            settle = time.monotonic() + 0.5
            while pending and time.monotonic() < settle:
                for i in list(pending):
                    cached_time = cache.source_time[rows[i]]
                    if cached_time == source[i]:
                        expected, cached = direct[i].Value.Value, cache.signal_value(rows[i])
                        if isinstance(expected, str):
                            assert cached == expected, bindings[i].node
                        else:  # numbers, booleans as 0/1 and arrays with NaN for empty slots
                            np.testing.assert_array_equal(np.asarray(cached, float), np.asarray(expected, float),
                                                          err_msg=bindings[i].node)
                        unchecked.discard(i)
                    if cached_time >= source[i]:
                        pending.discard(i)
                await asyncio.sleep(0.005)


@pytest.mark.timeout(120)
def test_values_status_and_timestamps_reach_the_cache(monkeypatch):
    monkeypatch.setattr(heap, "_last_settle", float("-inf"))  # no settle by an earlier test defers this one's
    monkeypatch.setattr(heap, "_deferred", None)

    async def scenario():
        port = free_port()
        async with SamplePlc(port, warm_up_s=30) as plc:
            cache = RuntimeCache()
            bindings = load_bindings(SAMPLE, {"plc": plc.endpoint})
            connector = OpcUaConnector(bindings, cache)
            await connector.start()
            try:
                await wait_until(lambda: all(quality_name(s) == "good" for s in cache.status), 15,
                                 "every signal to arrive with good quality")
                joints = cache.signal_value(cache.signal_row(*ROBOT))
                assert joints.shape == (6,) and np.all(np.isfinite(joints))
                row = cache.signal_row(*COUNTER)
                assert time.time() - 20 < cache.source_time[row] <= cache.server_time[row] + 1e-3
                await matches_direct_reads(plc.endpoint, bindings.bindings, cache, timeout=15)
                phase = cache.signal_value(cache.signal_row("/Factory/Line/Robot1", "twin:phase"))
                assert phase in ("waiting", "grip", "release") or phase.startswith("to_")
                assert connector.errors == [] and connector.health()["plc"]["connected"]
                assert connector.health()["plc"]["subscribed"]
                assert gc.get_freeze_count() > 0, "the subscribed session settles the heap (twin/heap.py)"
            finally:
                await connector.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_an_unknown_node_is_reported_and_the_rest_keep_streaming(tmp_path):
    text = SAMPLE.read_text().replace('s=Line.Conveyor1.Speed"', 's=Line.Conveyor1.Sped"')
    bindings_path = tmp_path / "bindings.yaml"
    bindings_path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "Line.Conveyor1.Sped" in row) - 1

    async def scenario():
        async with SamplePlc(free_port(), warm_up_s=10) as plc:
            cache = RuntimeCache()
            connector = OpcUaConnector(load_bindings(bindings_path, {"plc": plc.endpoint}), cache)
            await connector.start()
            try:
                await wait_until(lambda: connector.errors, 15, "the unknown node to be reported")
                [error] = connector.errors
                assert f"bindings.yaml:{line}:" in error
                assert "Line.Conveyor1.Sped" in error and "/Factory/Line/Conveyor1.twin:speed" in error
                assert "BadNodeIdUnknown" in error
                speed = cache.signal_row("/Factory/Line/Conveyor1", "twin:speed")
                assert quality_name(cache.status[speed]) == "bad"
                row = cache.signal_row("/Factory/Line/Conveyor1/MotorCurrent", "twin:current")  # noisy: always moving
                seen = cache.signal_version[row]
                await wait_until(lambda: cache.signal_version[row] > seen, 10, "other signals to keep streaming")
                await plc.stop()  # the link drops: values turn stale, but a binding that never had one stays bad
                await wait_until(lambda: quality_name(cache.status[row]) == "stale", 15, "stale values")
                assert quality_name(cache.status[speed]) == "bad"
            finally:
                await connector.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_a_server_restart_is_survived():
    async def scenario():
        port = free_port()
        plc = SamplePlc(port, warm_up_s=10)
        await plc.start()
        cache = RuntimeCache()
        connector = OpcUaConnector(load_bindings(SAMPLE, {"plc": plc.endpoint}), cache, max_backoff=1.0)
        await connector.start()
        try:
            await wait_until(lambda: good(cache, ROBOT), 15, "first values")
            value_before = cache.signal_value(cache.signal_row(*ROBOT))
            await plc.stop()
            await wait_until(lambda: quality_name(cache.status[cache.signal_row(*ROBOT)]) == "stale", 15,
                             "signals to turn stale when the server stops")
            np.testing.assert_array_equal(cache.signal_value(cache.signal_row(*ROBOT)), value_before)
            assert not connector.health()["plc"]["connected"]
            plc = SamplePlc(port, warm_up_s=10, seed=2)
            await plc.start()
            await wait_until(lambda: good(cache, ROBOT), 30, "values to be good again after the restart")
            health = connector.health()["plc"]
            assert health["connected"] and health["connects"] == 2
        finally:
            await connector.stop()
            await plc.stop()

    asyncio.run(scenario())
