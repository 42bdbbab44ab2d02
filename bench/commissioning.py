"""Virtual commissioning benchmark: the controller's round trip through the twin, against a bare asyncua peer.

Round trip: the controller writes an output, the simulation reacts, an input changes, the controller reads it.
On the twin (`twin.commission.server.CommissionServer`, the production code) the output is the Run of the
middle conveyor and the input its actual Speed (the belt runs at its setpoint while Run is true, else stands).
The peer is a bare asyncua server that copies a Boolean output to a Boolean input each cycle (the OPC-UA
stack's own floor), serving as many variables as the twin serves signals. Each server runs in its own process
so that its CPU never competes with the controller's GIL (one process per kind, serving one configuration after
the other, so imports are paid once); twin and peer run one after the other, never together.

Layouts are generated with exactly 100 and 1,000 signals: a source, a chain of 4 m conveyors with photo-eyes
(3 to 4 each) and a sink, written as a plant file and built by `twin.scenes.plant.build_plant` (what
`twin layout build` does). Each conveyor has 7 signals plus its photo-eyes; the line 7 more.

Modes, each at 10 ms and 100 ms plant cycles:
- free-run: the server cycles on its own fixed-rate clock (real time). The controller toggles the output,
  then reads the input back to back until it shows the reaction; the next toggle waits a random fraction of a
  cycle, so writes land uniformly over the server's cycle. Latency from the write's start to the read that
  shows the reaction: expected about half a cycle at the median and one cycle at p99, plus the stack's cost.
  `cycles_per_s` is the server's own cycle rate over the window (its CycleCount).
- lock-step: per cycle the controller writes the output, calls Step(1) and reads the input; the read must
  show the reaction of exactly that cycle. Latency is the three calls; `cycles_per_s` their rate.
Samples per contender: 200 round trips at 10 ms and 40 at 100 ms free-run, 500 lock-step cycles.
`missed_edges`: output edges whose reaction the controller did not read (lock-step: right after the Step;
free-run: within 20 cycles or 1 s, whichever is longer). `peer_*` columns are the peer's same figures.

Targets (issue 16): free-run p99 within two cycles of the peer's p99 at 10 ms with 1,000 signals; lock-step
>= 200 cycles/s with 1,000 signals and 0 missed edges. Load averages before and after are printed: the machine
may be shared. Run: `python bench/commissioning.py` (2 minutes on 2 idle cores, 6 loaded; `--quick`: a fifth of the
samples). The last line is one JSON object: rows, ratios and targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import numpy as np
from asyncua import Client, Server, ua
from machine import cpu  # bench/machine.py: scripts run as `python bench/NAME.py`

SIGNAL_COUNTS = (100, 1000)
CYCLES_MS = (10, 100)
MODES = ("free-run", "lock-step")
FREE_RUN_SAMPLES = {10: 200, 100: 40}
LOCKSTEP_CYCLES = 500
PEER_NS = "urn:factory-twin:bench-peer"
LINE_SIGNALS, CONVEYOR_SIGNALS = 7, 7  # Simulation (4), Reset, PartsOut, PartsIn; Run..PartAtEnd per belt
EYES_PER_CONVEYOR = 4
BELT_SPEED = 0.3
COLUMNS = ("signals", "cycle_ms", "mode", "p50_ms", "p99_ms", "missed_edges", "cycles_per_s", "peer_p50_ms",
           "peer_p99_ms")


# ----------------------------------------------------------------------------- layouts
def plant_file(signals: int) -> str:
    """A plant file whose layout serves exactly `signals` commissioning signals."""
    conveyors = (signals - LINE_SIGNALS) // (CONVEYOR_SIGNALS + EYES_PER_CONVEYOR)
    eyes = signals - LINE_SIGNALS - conveyors * CONVEYOR_SIGNALS
    per_belt = [eyes // conveyors + (i < eyes % conveyors) for i in range(conveyors)]
    lines = ["sources:", "  - {name: Source, at: [-1, 0], interarrival: 5, next: [Belt0]}", "conveyors:"]
    sensors = ["sensors:"]
    for i, count in enumerate(per_belt):
        following = f"Belt{i + 1}" if i + 1 < conveyors else "Sink"
        lines.append(f"  - {{name: Belt{i}, at: [{i * 5}, 0], length: 4, speed: {BELT_SPEED}, capacity: 10, "
                     f"next: [{following}]}}")
        sensors += [f"  - {{name: Eye{j}, mounted_on: Belt{i}, type: photoEye, at: [{0.4 + 0.9 * j:.1f}, -0.35, "
                    f"0.85], signal: twin:occupied}}" for j in range(count)]
    lines += ["sinks:", f"  - {{name: Sink, at: [{conveyors * 5}, 0]}}"]
    return "\n".join(lines + sensors) + "\n"


def build_layout(signals: int, folder: Path) -> tuple[Path, str]:
    """The layout and the conveyor whose Run/Speed make the round trip (the middle one)."""
    from pxr import Usd

    from twin.commission.address import line_signals
    from twin.commission.plant import Plant
    from twin.scenes.plant import build_plant

    path = folder / f"line{signals}.yaml"
    path.write_text(plant_file(signals))
    layout = build_plant(path)
    plant = Plant(Usd.Stage.Open(str(layout)))
    served = len(line_signals(plant))
    assert served == signals, f"the generated layout serves {served} signals, not {signals}"
    return layout, f"Belt{len(plant.conveyors) // 2}"


# ----------------------------------------------------------------------------- servers (own processes)
async def _serve_twin(layout: str, port: int, cycle_s: float, lockstep: bool, ready, stop) -> None:
    from twin.commission.server import CommissionServer

    async with CommissionServer(layout, port=port, cycle_s=cycle_s, lockstep=lockstep, watchdog_s=3600.0):
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)


async def _serve_peer(signals: int, port: int, cycle_s: float, lockstep: bool, ready, stop) -> None:
    """As many variables as the twin's signals; each cycle copies Out to In."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/peer/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(PEER_NS)
    folder = await server.nodes.objects.add_object(ua.NodeId("Peer", ns), ua.QualifiedName("Peer", ns))
    out = await folder.add_variable(ua.NodeId("Out", ns), "Out", ua.Variant(False, ua.VariantType.Boolean))
    await out.set_writable()
    into = await folder.add_variable(ua.NodeId("In", ns), "In", ua.Variant(False, ua.VariantType.Boolean))
    count = await folder.add_variable(ua.NodeId("CycleCount", ns), "CycleCount", ua.Variant(0, ua.VariantType.UInt64))
    for i in range(signals - 3):
        await folder.add_variable(ua.NodeId(f"v{i}", ns), f"v{i}", ua.Variant(0.0, ua.VariantType.Double))
    cycles = 0

    async def cycle() -> int:
        nonlocal cycles
        cycles += 1
        value = server.read_attribute_value(out.nodeid).Value
        if value != server.read_attribute_value(into.nodeid).Value:
            await server.write_attribute_value(into.nodeid, ua.DataValue(value))
        await server.write_attribute_value(count.nodeid, ua.DataValue(ua.Variant(cycles, ua.VariantType.UInt64)))
        return cycles

    async def step(parent: ua.NodeId, n: ua.Variant) -> list[ua.Variant]:
        for _ in range(n.Value):
            await cycle()
        return [ua.Variant(cycles, ua.VariantType.UInt64)]

    await folder.add_method(ua.NodeId("Step", ns), "Step", step, [ua.VariantType.UInt32], [ua.VariantType.UInt64])
    async with server:
        ready.set()
        next_time = time.monotonic()
        while not stop.is_set():
            if lockstep:
                await asyncio.sleep(0.1)
                continue
            await cycle()
            next_time += cycle_s
            await asyncio.sleep(max(0.0, next_time - time.monotonic()))


def _worker(kind: str, commands, ready, stop, stopped) -> None:
    """Serve one configuration after another (imports paid once), until the command is None."""
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    while (command := commands.get()) is not None:
        asyncio.run((_serve_twin if kind == "twin" else _serve_peer)(*command, ready, stop))
        stopped.set()


class Worker:
    """A server process for one kind ("twin" or "peer"); `serving(...)` serves a configuration for a block."""

    def __init__(self, kind: str):
        context = mp.get_context("spawn")
        self.commands = context.Queue()
        self.ready, self.stop, self.stopped = context.Event(), context.Event(), context.Event()
        self.process = context.Process(target=_worker, daemon=True,
                                       args=(kind, self.commands, self.ready, self.stop, self.stopped))
        self.process.start()

    @contextlib.contextmanager
    def serving(self, *configuration) -> Iterator[None]:
        self.ready.clear()
        self.stop.clear()
        self.stopped.clear()
        self.commands.put(configuration)
        if not self.ready.wait(180):
            raise RuntimeError("the server did not start in 180 s")
        try:
            yield
        finally:
            self.stop.set()
            if not self.stopped.wait(60):
                raise RuntimeError("the server did not stop in 60 s")

    def close(self) -> None:
        self.commands.put(None)
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


# ----------------------------------------------------------------------------- the controller
Write = Callable[[bool], Awaitable[None]]
Reacted = Callable[[bool], Awaitable[bool]]


async def free_run(write: Write, reacted: Reacted, cycle_count: Callable[[], Awaitable[int]], cycle_s: float,
                   samples: int) -> dict:
    timeout = max(1.0, 20 * cycle_s)
    latencies, missed = [], 0
    await write(False)
    await asyncio.sleep(3 * cycle_s)
    start_count, started = await cycle_count(), time.perf_counter()
    for i in range(samples):
        value = i % 2 == 0
        await asyncio.sleep(random.uniform(0, cycle_s))  # writes land anywhere in the server's cycle
        t0 = time.perf_counter()
        await write(value)
        while not await reacted(value):
            if time.perf_counter() - t0 > timeout:
                missed += 1
                break
        latencies.append(time.perf_counter() - t0)
    cycles_per_s = (await cycle_count() - start_count) / (time.perf_counter() - started)
    return summary(latencies, missed, cycles_per_s)


async def lock_step(write: Write, reacted: Reacted, step: Callable[[], Awaitable[None]], cycles: int) -> dict:
    latencies, missed = [], 0
    for i in range(cycles // 10):  # warm-up
        await write(i % 2 == 0)
        await step()
    started = time.perf_counter()
    for i in range(cycles):
        value = i % 2 == 0
        t0 = time.perf_counter()
        await write(value)
        await step()
        missed += not await reacted(value)
        latencies.append(time.perf_counter() - t0)
    return summary(latencies, missed, cycles / (time.perf_counter() - started))


def summary(latencies: list[float], missed: int, cycles_per_s: float) -> dict:
    ms = np.array(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "missed_edges": missed, "cycles_per_s": round(cycles_per_s, 1), "samples": len(latencies)}


async def measure(endpoint: str, namespace: str, output: str, input_: str, react: Callable[[bool], object],
                  setup: list[tuple[str, ua.Variant]], cycle_s: float, lockstep: bool, samples: int) -> dict:
    async with Client(endpoint, timeout=30) as client:
        ns = await client.get_namespace_index(namespace)

        def node(name: str):
            return client.get_node(f"ns={ns};s={name}")

        for name, variant in setup:
            await node(name).write_value(ua.DataValue(variant))
        out, into = node(output), node(input_)
        twin = namespace != PEER_NS

        async def write(value: bool) -> None:
            await out.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Boolean)))

        async def reacted(value: bool) -> bool:
            return await into.read_value() == react(value)

        if not lockstep:
            counter = node("Line.Simulation.CycleCount" if twin else "CycleCount")
            return await free_run(write, reacted, counter.read_value, cycle_s, samples)
        parent, step_node = (node("Line.Simulation"), node("Line.Simulation.Step")) if twin else \
            (node("Peer"), node("Step"))

        async def step() -> None:
            await parent.call_method(step_node, ua.Variant(1, ua.VariantType.UInt32))

        return await lock_step(write, reacted, step, samples)


async def run_row(workers: dict[str, Worker], layout: Path, belt: str, signals: int, cycle_ms: int, mode: str,
                  samples: int) -> dict:
    from twin.cli import free_port
    from twin.commission.address import NAMESPACE

    cycle_s, lockstep = cycle_ms / 1000, mode == "lock-step"
    conveyor = f"Line.Conveyors.{belt}"
    port = free_port()
    with workers["twin"].serving(str(layout), port, cycle_s, lockstep):
        twin = await measure(f"opc.tcp://127.0.0.1:{port}/twin/commission/", NAMESPACE, f"{conveyor}.Run",
                             f"{conveyor}.Speed", lambda run: BELT_SPEED if run else 0.0,
                             [(f"{conveyor}.SpeedSetpoint", ua.Variant(BELT_SPEED, ua.VariantType.Double))],
                             cycle_s, lockstep, samples)
    port = free_port()
    with workers["peer"].serving(signals, port, cycle_s, lockstep):
        peer = await measure(f"opc.tcp://127.0.0.1:{port}/peer/", PEER_NS, "Out", "In", lambda value: value, [],
                             cycle_s, lockstep, samples)
    row = {"signals": signals, "cycle_ms": cycle_ms, "mode": mode, **{k: twin[k] for k in COLUMNS[3:7]},
           "peer_p50_ms": peer["p50_ms"], "peer_p99_ms": peer["p99_ms"],
           "peer_missed_edges": peer["missed_edges"], "peer_cycles_per_s": peer["cycles_per_s"],
           "samples": twin["samples"]}
    print("  ".join(f"{key}={row[key]}" for key in (*COLUMNS, "peer_cycles_per_s", "peer_missed_edges")),
          flush=True)
    return row


def targets(rows: list[dict]) -> dict:
    def row(mode: str, cycle_ms: int) -> dict:
        return next(r for r in rows if r["signals"] == 1000 and r["cycle_ms"] == cycle_ms and r["mode"] == mode)

    free = row("free-run", 10)
    locked = [r for r in rows if r["signals"] == 1000 and r["mode"] == "lock-step"]
    slowest = min(locked, key=lambda r: r["cycles_per_s"])
    return {
        "free_run_p99_within_two_cycles_of_peer": {
            "p99_ms": free["p99_ms"], "peer_p99_ms": free["peer_p99_ms"], "limit_ms": free["peer_p99_ms"] + 20,
            "met": free["p99_ms"] <= free["peer_p99_ms"] + 20},
        "lockstep_200_cycles_per_s_0_missed": {
            "cycles_per_s": slowest["cycles_per_s"], "missed_edges": sum(r["missed_edges"] for r in locked),
            "met": slowest["cycles_per_s"] >= 200 and all(r["missed_edges"] == 0 for r in locked)},
    }


def ratios(rows: list[dict]) -> list[dict]:
    return [{"signals": r["signals"], "cycle_ms": r["cycle_ms"], "mode": r["mode"],
             "p99_to_peer": round(r["p99_ms"] / r["peer_p99_ms"], 2),
             "cycles_per_s_to_peer": round(r["cycles_per_s"] / r["peer_cycles_per_s"], 2)} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the samples (a smoke run)")
    args = parser.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    scale = 5 if args.quick else 1
    load_before, started = os.getloadavg(), time.perf_counter()
    print(f"virtual commissioning round trip on {cpu()}; load average {load_before[0]:.2f} "
          f"{load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    rows = []
    workers = {kind: Worker(kind) for kind in ("twin", "peer")}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for signals in SIGNAL_COUNTS:
                layout, belt = build_layout(signals, Path(folder))
                for cycle_ms in CYCLES_MS:
                    for mode in MODES:
                        samples = (LOCKSTEP_CYCLES if mode == "lock-step" else FREE_RUN_SAMPLES[cycle_ms]) // scale
                        rows.append(asyncio.run(run_row(workers, layout, belt, signals, cycle_ms, mode, samples)))
    finally:
        for worker in workers.values():
            worker.close()
    load_after = os.getloadavg()
    print(f"took {time.perf_counter() - started:.0f} s; load average after {load_after[0]:.2f} "
          f"{load_after[1]:.2f} {load_after[2]:.2f}", flush=True)
    print(json.dumps({"bench": "commissioning", "machine": cpu(), "load_average_before": load_before,
                      "load_average_after": load_after, "rows": rows, "ratios": ratios(rows),
                      "targets": targets(rows)}))


if __name__ == "__main__":
    main()
