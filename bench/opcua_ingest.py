"""OPC-UA ingest benchmark: the twin's connector against a bare asyncua subscription, same server, same load.

Workload: one asyncua server (Python, in a separate process so that its CPU never competes with the
client's GIL) serves 10,000 Double variables `nsu=urn:factory-twin:bench;s=v<i>`, 100 per folder. It writes
values round-robin in small slices every 10 ms (never in bursts), each with SourceTimestamp = ServerTimestamp
= now, through `Server.write_attribute_value`. Two configurations, both 10,000 changes/s nominal:
- 1,000 signals changing at 10 Hz (the client subscribes to v0..v999; only those are written);
- 10,000 signals changing at 1 Hz.
`offered_per_s` is what the server really wrote per second during the window (its own counter), not the
nominal rate.

Contenders, run one after the other (never together) against the same server and workload:
- twin: `OpcUaConnector(load_bindings(file), RuntimeCache())`, the production code path, one binding per
  variable (`publishing_ms` 20 for the server, `sampling_ms` 20, `queue_size` 1). Its session's
  `datachange_notification` is wrapped on the instance (production code untouched) to record the latency
  after the value is in the cache.
- peer: a bare asyncua `Client` with a handler that only counts and records the same latency the same way.
  It requests exactly the subscription the connector requested (publishing interval, sampling interval,
  queue size), recorded from the connector's own calls to asyncua during its run.
- settled peer (`settled_peer_*`, nominal window only): the same bare client, plus what the connector does
  after subscribing, `twin.core.heap.settle()` (gc.freeze of the long-lived objects). Without it a full garbage
  collection scans every subscription item about once a second and stops the loop for tens of milliseconds,
  which dominates p99; this row separates that process setting from the connector's own cost.
Each contender starts from an unfrozen, collected heap.

Per contender and configuration: connect + subscribe, wait for every initial value, warm up 3 s, then a
15 s window:
- `updates_per_s` / `peer_updates_per_s`: notifications handled (for the twin: written into the cache,
  `session.updates`) per second of the window; `ratio_to_peer` = updates_per_s / peer_updates_per_s.
- `p50_ms`, `p99_ms` (peer: `peer_p50_ms`, `peer_p99_ms`): time.time() when the value is in the cache
  (handler return for the peer) minus the value's SourceTimestamp, over every update of the window. Server
  and client share the machine's clock. It includes up to one publishing interval (20 ms) of batching
  on the server, by design of OPC-UA subscriptions.
- `cpu_s_per_1000` / `peer_cpu_s_per_1000`: CPU seconds of the client process (time.process_time(); the
  server is another process) per 1,000 updates. `server_cpu` is the server process's busy fraction of one
  core over the window (/proc), so that a saturated server is visible.

Sustained rate (`max_sustained_per_s`, `peer_max_sustained_per_s`, 10,000-signal row only): after the
window above, the same connection goes on while the server raises the change rate of the 10,000 signals
(1.25 to 3 Hz: 12,500 to 30,000 changes/s offered); each step settles 2 s and is measured 5 s. A contender
keeps up at a step when it delivers >= 95 % of the measured offered rate, its lag neither grows nor drains
a backlog (median latency of the last third of the step within one publishing interval of the first third's)
and its p99 latency stays under 10 publishing intervals (200 ms). The maximum is
the highest measured offered rate it kept up with, counting the 10,000/s window, before the first step it
failed; null if it did not keep up even there. The steps are in the row's `sweep` list. A step where the
server could not write 90 % of its nominal rate is flagged `server_limited`: the figure is then the server's
limit, not the client's. The 1,000-signal row has null there (at 50 Hz and more the 20 ms publishing
interval coalesces changes by design).

`load_bindings_s` is the time `load_bindings` took for the 10,000-binding file (setup, not in the window);
the 1,000-signal configuration uses that file's first 1,000 bindings.

Run: `python bench/opcua_ingest.py` (about 3 to 4 minutes on 2 cores); `--profile` adds a cProfile of the
twin's 10,000-signal window (client process). The last line is the JSON summary (see ../shared/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import gc
import io
import json
import logging
import multiprocessing as mp
import os
import pstats
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from asyncua import Client, Server, ua
from asyncua.common.subscription import Subscription
from asyncua.server import monitored_item_service
from machine import cpu, print_table  # bench/machine.py: scripts run as `python bench/NAME.py`

from twin.connectors.bindings import ServerConfig, load_bindings
from twin.connectors.opcua import OpcUaConnector
from twin.core import heap
from twin.core.cache import BAD_WAITING_FOR_INITIAL_DATA, RuntimeCache

NAMESPACE = "urn:factory-twin:bench"
TOTAL_SIGNALS = 10_000
CONFIGS = ((1_000, 10.0), (10_000, 1.0))  # (signals, changes per signal per second)
SWEEP_HZ = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0)  # 10,000 signals: 12,500 to 30,000 changes/s offered
PUBLISHING_MS = 20.0
SAMPLING_MS = 20.0
WARMUP_S = 3.0
WINDOW_S = 15.0
STEP_SETTLE_S = 2.0
STEP_WINDOW_S = 5.0
KEEP_UP_FRACTION = 0.95
MAX_P99_FACTOR = 10  # keeping up also means p99 latency under 10 publishing intervals (200 ms)
TICK_S = 0.01  # the server writes a slice of its variables every 10 ms


# --------------------------------------------------------------------------- server (child process)
def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _keep_datavalue(values, current: ua.DataValue) -> None:
    """MonitoredItemValues.set_current_datavalue without its deepcopy (see the module docstring)."""
    values.old_dvalue, values.current_dvalue = values.current_dvalue, current


async def _serve(port: int, signals: int, rate_hz, active, writes, ready, stop) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    monitored_item_service.MonitoredItemValues.set_current_datavalue = _keep_datavalue  # this process only
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    index = await server.register_namespace(NAMESPACE)
    root = await server.nodes.objects.add_folder(ua.NodeId("Bench", index), "Bench")
    nodes = []
    for start in range(0, signals, 100):  # 100 per folder: asyncua's add_node scans the parent's references
        folder = await root.add_folder(ua.NodeId(f"Bench.G{start // 100}", index), f"G{start // 100}")
        for i in range(start, min(signals, start + 100)):
            node = await folder.add_variable(ua.NodeId(f"v{i}", index), f"v{i}",
                                             ua.Variant(0.0, ua.VariantType.Double))
            nodes.append(node.nodeid)
    await server.start()
    ready.set()
    written, cursor, setting = 0, 0, None
    begin, base = time.monotonic(), 0
    try:
        while not stop.is_set():
            count, hz = int(active.value), rate_hz.value
            if (count, hz) != setting:  # new workload: restart the schedule from here
                setting, begin, base = (count, hz), time.monotonic(), written
                cursor = 0
            due = base + int(count * hz * (time.monotonic() - begin))
            if due - written > count * hz:  # more than 1 s behind: the server is the limit; do not burst
                begin, base = time.monotonic(), written
                due = written
            due = min(due, written + count)  # at most one write per variable per slice
            now = datetime.now(UTC)
            # one value per slice: a variable is written at most once per slice, so each write still changes it
            value = ua.DataValue(ua.Variant(float(written), ua.VariantType.Double), SourceTimestamp=now,
                                 ServerTimestamp=now)
            while written < due:
                await server.write_attribute_value(nodes[cursor], value)
                cursor = cursor + 1 if cursor + 1 < count else 0
                written += 1
            writes.value = written
            await asyncio.sleep(TICK_S)
    finally:
        await server.stop()


def serve(port: int, signals: int, rate_hz, active, writes, ready, stop) -> None:
    asyncio.run(_serve(port, signals, rate_hz, active, writes, ready, stop))


class BenchServer:
    """The server process and its shared controls: which variables change, how often, how many writes."""

    def __init__(self, signals: int):
        context = mp.get_context("spawn")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/bench/"
        self.rate_hz = context.Value("d", 0.0, lock=False)
        self.active = context.Value("q", 1, lock=False)
        self.writes = context.Value("q", 0, lock=False)
        self.ready, self.stopping = context.Event(), context.Event()
        self.process = context.Process(target=serve, daemon=True, args=(
            self.port, signals, self.rate_hz, self.active, self.writes, self.ready, self.stopping))

    def start(self) -> None:
        self.process.start()
        if not self.ready.wait(120):
            raise SystemExit("the OPC-UA server did not start within 120 s")

    def set_load(self, signals: int, hz: float) -> None:
        self.active.value, self.rate_hz.value = signals, hz

    def counters(self) -> tuple[float, int, float]:
        return time.monotonic(), self.writes.value, _cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.stopping.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


# --------------------------------------------------------------------------- measurement
def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Recorder:
    """Arrival time and latency (now - SourceTimestamp) of every update, once the value has been handled."""

    def __init__(self):
        self.arrivals: list[float] = []
        self.latencies: list[float] = []

    def record(self, data) -> None:
        now = time.time()
        self.arrivals.append(now)
        self.latencies.append(now - _epoch(data.monitored_item.Value.SourceTimestamp))

    def clear(self) -> None:
        self.arrivals.clear()
        self.latencies.clear()

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        arrivals, latencies = np.array(self.arrivals), np.array(self.latencies) * 1000.0
        self.clear()
        return arrivals, latencies


class CountingHandler:
    """The peer: a bare asyncua subscription handler that only counts (and records latency like the twin)."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.updates = 0
        self.lost = 0

    def datachange_notification(self, node, value, data) -> None:
        self.updates += 1
        self.recorder.record(data)

    def status_change_notification(self, status) -> None:
        self.lost += 1


@contextlib.contextmanager
def recording_subscriptions(requested: dict):
    """Note the subscription parameters the connector asks asyncua for, so that the peer asks the same."""
    create, create_items = Client.create_subscription, Subscription.create_monitored_items

    async def create_subscription(client, period, *args, **kwargs):
        requested["publishing_ms"] = period
        return await create(client, period, *args, **kwargs)

    async def create_monitored_items(subscription, items):
        items = list(items)
        parameters = items[0].RequestedParameters
        requested.setdefault("monitored", []).append(dict(sampling_interval=parameters.SamplingInterval,
                                                          queuesize=parameters.QueueSize))
        return await create_items(subscription, items)

    Client.create_subscription, Subscription.create_monitored_items = create_subscription, create_monitored_items
    try:
        yield requested
    finally:
        Client.create_subscription, Subscription.create_monitored_items = create, create_items


def summarise(server: BenchServer, before, after, updates: int, cpu_s: float, recorder: Recorder,
              nominal: float) -> dict:
    (t0, w0, s0), (t1, w1, s1) = before, after
    seconds = t1 - t0
    arrivals, latencies = recorder.take()
    offered = (w1 - w0) / seconds
    third = seconds / 3.0
    early = latencies[arrivals < arrivals.min() + third] if arrivals.size else latencies
    late = latencies[arrivals > arrivals.max() - third] if arrivals.size else latencies
    lag_growth = float(np.median(late) - np.median(early)) if early.size and late.size else float("nan")
    delivered = updates / seconds
    return dict(
        offered_per_s=round(offered), updates_per_s=round(delivered),
        p50_ms=round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        p99_ms=round(float(np.percentile(latencies, 99)), 1) if latencies.size else None,
        cpu_s_per_1000=round(cpu_s / max(updates, 1) * 1000.0, 4),
        client_cpu=round(cpu_s / seconds, 2), server_cpu=round((s1 - s0) / seconds, 2),
        lag_growth_ms=round(lag_growth, 1),
        kept_up=bool(delivered >= KEEP_UP_FRACTION * offered and abs(lag_growth) < PUBLISHING_MS
                     and latencies.size and np.percentile(latencies, 99) < MAX_P99_FACTOR * PUBLISHING_MS),
        server_limited=bool(offered < 0.9 * nominal),
    )


async def measure(server: BenchServer, counter, recorder: Recorder, seconds: float, nominal: float) -> dict:
    recorder.clear()
    before, updates, cpu = server.counters(), counter(), time.process_time()
    await asyncio.sleep(seconds)
    after, updates, cpu = server.counters(), counter() - updates, time.process_time() - cpu
    return summarise(server, before, after, updates, cpu, recorder, nominal)


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def run_contender(name: str, server: BenchServer, signals: int, hz: float, connect, sweep: bool,
                        profile: bool) -> tuple[dict, list[dict]]:
    """Connect one contender, measure the nominal window, then (if asked) the sweep; returns both."""
    server.set_load(signals, hz)
    recorder = Recorder()
    t0 = time.perf_counter()
    counter, initial_done, reconnects, close = await connect(recorder)
    await wait_until(initial_done, 120, f"{name}: the initial values of {signals:,} signals")
    setup_s = time.perf_counter() - t0
    try:
        await asyncio.sleep(WARMUP_S)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        result = await measure(server, counter, recorder, WINDOW_S, signals * hz)
        if profiler:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            print(f"cProfile of the {name} client, {signals:,} signals window (by own time):")
            print("\n".join(text.getvalue().splitlines()[:45]), flush=True)
        result["setup_s"] = round(setup_s, 1)
        if reconnects():
            print(f"  WARNING: {name} lost its connection {reconnects()} time(s)", flush=True)
        print(f"  {name:4s} {signals:>6,} signals: {result['updates_per_s']:>6,}/s of {result['offered_per_s']:,}/s "
              f"offered, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, client CPU {result['client_cpu']}, "
              f"server CPU {result['server_cpu']}, setup {setup_s:.1f} s", flush=True)
        steps = []
        if sweep and result["kept_up"]:
            for step_hz in SWEEP_HZ:
                server.set_load(signals, step_hz)
                await asyncio.sleep(STEP_SETTLE_S)
                step = await measure(server, counter, recorder, STEP_WINDOW_S, signals * step_hz)
                step["nominal_per_s"] = round(signals * step_hz)
                steps.append(step)
                print(f"  {name:4s} sweep {step['nominal_per_s']:>6,}/s nominal: {step['offered_per_s']:,}/s offered, "
                      f"{step['updates_per_s']:,}/s delivered, lag growth {step['lag_growth_ms']} ms, p99 "
                      f"{step['p99_ms']} ms, client CPU {step['client_cpu']}, server CPU {step['server_cpu']} -> "
                      f"{'kept up' if step['kept_up'] else 'FELL BEHIND'}", flush=True)
                if not step["kept_up"]:
                    break
            server.set_load(signals, hz)
        result["reconnects"] = reconnects()
        return result, steps
    finally:
        await close()
        gc.unfreeze()  # the next contender starts from an ordinary heap, whatever this one froze
        gc.collect()


def max_sustained(nominal: dict, steps: list[dict]) -> int | None:
    best = nominal["offered_per_s"] if nominal["kept_up"] else None
    for step in steps:
        if not step["kept_up"]:
            break
        best = step["offered_per_s"]
    return best


# --------------------------------------------------------------------------- the two contenders
def write_bindings(folder: Path, endpoint: str) -> Path:
    lines = ["servers:", "  bench:", f"    endpoint: {endpoint}", f"    publishing_ms: {PUBLISHING_MS:g}",
             "bindings:"]
    for i in range(TOTAL_SIGNALS):
        lines += ["  - server: bench", f'    node: "nsu={NAMESPACE};s=v{i}"', f"    prim: /Bench/Group{i // 100}",
                  f"    attr: twin:v{i}", f"    sampling_ms: {SAMPLING_MS:g}", "    queue_size: 1"]
    path = folder / "bindings.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def twin_connect(binding_file):
    async def connect(recorder: Recorder):
        cache = RuntimeCache()
        connector = OpcUaConnector(binding_file, cache)
        (session,) = connector.sessions.values()
        handled = session.datachange_notification

        def timed(node, value, data):  # on the instance: production code unchanged
            handled(node, value, data)
            recorder.record(data)

        session.datachange_notification = timed
        await connector.start()

        def initial_done() -> bool:
            if connector.errors:
                raise SystemExit(f"connector errors: {connector.errors[:3]}")
            return not np.any(cache.status == BAD_WAITING_FOR_INITIAL_DATA)

        return (lambda: session.updates), initial_done, (lambda: session.connects - 1), connector.stop

    return connect


def peer_connect(server: BenchServer, signals: int, requested: dict, settle: bool = False):
    async def connect(recorder: Recorder):
        handler = CountingHandler(recorder)
        client = Client(server.endpoint, timeout=5, watchdog_intervall=ServerConfig.health_check_s)  # as the twin
        await client.connect()
        index = (await client.get_namespace_array()).index(NAMESPACE)
        nodes = [client.get_node(f"ns={index};s=v{i}") for i in range(signals)]
        subscription = await client.create_subscription(requested["publishing_ms"], handler)
        # the connector's request (its last, should it have reconnected): same sampling interval, same queue size
        await subscription.subscribe_data_change(nodes, **requested["monitored"][-1])
        if settle:  # what the connector does after subscribing (twin/heap.py), for the like-for-like row
            heap.settle()

        async def close():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)

        return (lambda: handler.updates), (lambda: handler.updates >= signals), (lambda: handler.lost), close

    return connect


# --------------------------------------------------------------------------- report
def machine() -> str:
    return cpu()


COLUMNS = (
    ("signals", "signals", "{:,}"), ("offered_per_s", "offered/s", "{:,}"), ("updates_per_s", "twin/s", "{:,}"),
    ("peer_updates_per_s", "peer/s", "{:,}"), ("ratio_to_peer", "xPeer", "{:.3f}"), ("p50_ms", "p50 ms", "{}"),
    ("p99_ms", "p99 ms", "{}"), ("peer_p50_ms", "peer p50", "{}"), ("peer_p99_ms", "peer p99", "{}"),
    ("settled_peer_p99_ms", "settled peer p99", "{}"), ("cpu_s_per_1000", "CPU s/1k", "{:.4f}"),
    ("peer_cpu_s_per_1000", "peer CPU s/1k", "{:.4f}"),
    ("max_sustained_per_s", "max sust/s", "{:,}"), ("peer_max_sustained_per_s", "peer max/s", "{:,}"),
)


async def bench(server: BenchServer, binding_path: Path, profile: bool) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    full = load_bindings(binding_path)
    load_s = time.perf_counter() - t0
    print(f"load_bindings: {TOTAL_SIGNALS:,} bindings in {load_s:.1f} s", flush=True)
    rows = []
    for signals, hz in CONFIGS:
        sweep = signals == TOTAL_SIGNALS
        binding_file = dataclasses.replace(full, bindings=full.bindings[:signals])
        with recording_subscriptions({}) as requested:
            twin, twin_steps = await run_contender("twin", server, signals, hz, twin_connect(binding_file), sweep,
                                                   profile and sweep)
        peer, peer_steps = await run_contender("peer", server, signals, hz, peer_connect(server, signals, requested),
                                               sweep, False)
        settled, _ = await run_contender("peer+settle", server, signals, hz,
                                         peer_connect(server, signals, requested, settle=True), False, False)
        sweep_rows = [dict(nominal_per_s=t["nominal_per_s"], offered_per_s=t["offered_per_s"],
                           updates_per_s=t["updates_per_s"], p99_ms=t["p99_ms"], kept_up=t["kept_up"],
                           server_limited=t["server_limited"], peer_offered_per_s=p["offered_per_s"] if p else None,
                           peer_updates_per_s=p["updates_per_s"] if p else None,
                           peer_p99_ms=p["p99_ms"] if p else None, peer_kept_up=p["kept_up"] if p else None,
                           peer_server_limited=p["server_limited"] if p else None)
                      for t, p in zip(twin_steps, peer_steps + [None] * len(twin_steps), strict=False)]
        sweep_rows += [dict(nominal_per_s=p["nominal_per_s"], offered_per_s=None, updates_per_s=None, p99_ms=None,
                            kept_up=None, server_limited=None, peer_offered_per_s=p["offered_per_s"],
                            peer_updates_per_s=p["updates_per_s"], peer_p99_ms=p["p99_ms"],
                            peer_kept_up=p["kept_up"], peer_server_limited=p["server_limited"])
                       for p in peer_steps[len(twin_steps):]]
        rows.append(dict(
            signals=signals, hz=hz, offered_per_s=twin["offered_per_s"], peer_offered_per_s=peer["offered_per_s"],
            updates_per_s=twin["updates_per_s"], peer_updates_per_s=peer["updates_per_s"],
            ratio_to_peer=round(twin["updates_per_s"] / max(peer["updates_per_s"], 1), 3),
            p50_ms=twin["p50_ms"], p99_ms=twin["p99_ms"], peer_p50_ms=peer["p50_ms"], peer_p99_ms=peer["p99_ms"],
            cpu_s_per_1000=twin["cpu_s_per_1000"], peer_cpu_s_per_1000=peer["cpu_s_per_1000"],
            client_cpu=twin["client_cpu"], peer_client_cpu=peer["client_cpu"],
            server_cpu=twin["server_cpu"], peer_server_cpu=peer["server_cpu"],
            max_sustained_per_s=max_sustained(twin, twin_steps) if sweep else None,
            peer_max_sustained_per_s=max_sustained(peer, peer_steps) if sweep else None,
            setup_s=twin["setup_s"], peer_setup_s=peer["setup_s"], reconnects=twin["reconnects"],
            peer_lost=peer["reconnects"], settled_peer_updates_per_s=settled["updates_per_s"],
            settled_peer_p50_ms=settled["p50_ms"], settled_peer_p99_ms=settled["p99_ms"],
            settled_peer_cpu_s_per_1000=settled["cpu_s_per_1000"],
            publishing_ms=requested.get("publishing_ms"), sampling_ms=SAMPLING_MS, window_s=WINDOW_S,
            load_bindings_s=round(load_s, 1), sweep=sweep_rows,
        ))
    return rows, load_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="cProfile the twin's 10,000-signal window")
    args = parser.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    started = time.perf_counter()
    info = machine()
    print(f"OPC-UA ingest benchmark on {info}")
    print(f"server: asyncua in its own process, {TOTAL_SIGNALS:,} Double variables; client: publishing "
          f"{PUBLISHING_MS:g} ms, sampling {SAMPLING_MS:g} ms, queue size 1; window {WINDOW_S:g} s after "
          f"{WARMUP_S:g} s warm-up; twin and peer one after the other", flush=True)
    server = BenchServer(TOTAL_SIGNALS)
    t0 = time.perf_counter()
    server.start()
    print(f"server: {TOTAL_SIGNALS:,} variables up in {time.perf_counter() - t0:.1f} s", flush=True)
    try:
        with tempfile.TemporaryDirectory() as folder:
            rows, _ = asyncio.run(bench(server, write_bindings(Path(folder), server.endpoint), args.profile))
    finally:
        server.stop()
    print()
    print_table(rows, COLUMNS)
    for row in rows:
        for step in row["sweep"]:
            def verdict(kept, limited):
                return "-" if kept is None else ("kept up" if kept else "fell behind") + (
                    " (server-limited)" if limited else "")

            twin = verdict(step["kept_up"], step["server_limited"])
            peer = verdict(step["peer_kept_up"], step["peer_server_limited"])
            print(f"sweep {row['signals']:,} signals, {step['nominal_per_s']:,}/s nominal: twin "
                  f"{step['updates_per_s'] or '-'}/s of {step['offered_per_s'] or '-'}/s {twin}; peer "
                  f"{step['peer_updates_per_s'] or '-'}/s of {step['peer_offered_per_s'] or '-'}/s {peer}")
    print(f"latency: cache write (peer: handler) time - SourceTimestamp, includes up to one publishing interval "
          f"({PUBLISHING_MS:g} ms); CPU: client process only; total run time {time.perf_counter() - started:.0f} s")
    print(json.dumps({"bench": "opcua_ingest", "machine": info, "rows": rows}))


if __name__ == "__main__":
    main()
