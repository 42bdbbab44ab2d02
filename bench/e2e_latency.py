"""End-to-end latency: a value changes in the PLC (an OPC-UA server), how long until the browser page shows it.

What a plant engineer sees. Processes, all on loopback and the same machine clock:
- server: asyncua in its own process, one Double variable `nsu=urn:factory-twin:e2e;s=Value`. It writes
  `--writes` new values (60 by default), 250 to 350 ms apart (random phase against the publishing interval and
  the 30 Hz tick), each with SourceTimestamp = ServerTimestamp = now, and reports (value, SourceTimestamp).
- twin: its own process, wired as `twin serve` wires it: `Twin(sample factory)`, `OpcUaConnector` with a
  binding file (the variable -> /Factory/Line/Machining.twin:e2eValue; publishing 50 ms as the sample's PLC
  server, the row's sampling interval, queue size 1), `create_app(tick_hz=30)` served by uvicorn with
  `twin.server.http.server_config`. Instance wrappers (production code untouched) time each stage.
- page: the built viewer in headless Debian chromium (Playwright, software WebGL), rendering as usual. Its
  stream worker notes when each frame reaches it (the merged frame the page applies carries that time per
  signal); once the page is ready, the bench selects the variable's prim so that the inspector panel lists the
  value, and wraps `window.twin.signals.set` on the instance to note when the new value is applied. "The page
  shows it" is when the next frame has been painted: a task posted from the next animation frame runs once that
  frame's rendering (style, layout, paint, the WebGL canvas if it rendered) is done; the inspector row's text is
  read then, and `in_dom` counts the values it showed. Page and worker times are performance.timeOrigin +
  performance.now().
- peer: a bare asyncua client in its own process, subscribed to the same node with the same publishing
  interval, sampling interval and queue size, at the same time as the twin: the OPC-UA stack's floor.

Stages of each value (medians in the table, p99s too in the JSON): `publish` SourceTimestamp -> the connector's
notification arrives; `cache` -> written into the cache; `tick` -> the stream frame carrying that cache version is
encoded (`tick_wait`: the part until the tick that woke the stream; 0 when it rode one under way); `send` -> the
frame is handed to the websocket; `page` -> the page shows it (`receive`: the page's stream worker takes the frame,
`apply`: the page's main thread applies the value (decode and merge in the worker, the wait for the main thread
between renders, applying), `paint`: until the next frame is painted). Also: frames per second sent by the twin
(`sent/s`), taken by the page's stream (`page/s`) and rendered by it (`fps`) during the writes, the viewer's
render `quality` (level and median frame time, its own measure) at the end of the row and `quality_changes`
during the writes (each level taken, each probe of a level above with its frame time), `clock_offset_ms`,
the page's clock (performance.timeOrigin + performance.now()) minus the system clock (Date.now(), which
time.time() also reads), and `load_avg`, the machine's 1-minute load average before and after the row.
Rows: sampling 100 ms (the sample's setting) and 10 ms with only this variable bound ("idle"), and 100 ms with
the demo's load: the sample PLC runs too, on the line model ("demo": `python -m twin.sample_factory.plc`, as
`twin demo --line-model` starts it) or on Newton physics ("physics": `--physics --layout`, as `twin demo` starts
it, the twin bound to its parts' poses too), and the twin also takes the sample's own bindings, so
robots and parts move in the twin and the page.
asyncua's server does not sample: it revises the sampling interval to the publishing interval and reports each
write at the next publish, so the two sampling rows differ only in what is asked; a PLC that samples adds up to
one sampling interval to twin and peer alike. Target: p99 within 50 ms of the peer's p99 at 100 ms.

    python bench/e2e_latency.py [--writes 60] [--load idle|demo] [--viewer DIST]

About 2.5 minutes on 2 cores. The last line is the JSON summary (../shared/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from machine import cpu, print_table  # bench/machine.py: scripts run as `python bench/NAME.py`

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "urn:factory-twin:e2e"
NODE = f"nsu={NAMESPACE};s=Value"
PRIM, ATTR = "/Factory/Line/Machining", "twin:e2eValue"
KEY = f"{PRIM}.{ATTR}"
PUBLISHING_MS = 50.0  # the sample PLC server's publishing interval (sample_factory/bindings.yaml)
SAMPLING_MS = (100.0, 10.0)  # the sample's sampling interval, then a fast one
LOADS = ("idle", "demo", "physics")  # nothing else bound; the sample PLC on the line model; on physics
CONFIGS = ((100.0, "idle"), (10.0, "idle"), (100.0, "demo"), (100.0, "physics"))  # (sampling ms, load)
TICK_HZ = 30.0
GAP_S = (0.25, 0.35)  # between two writes
TARGET_MS = 50.0  # p99 within this of the peer's p99, at the sample's settings
INITIAL = -1.0


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# --------------------------------------------------------------------------- OPC-UA server (own process)
async def _serve(port: int, ready, commands, results) -> None:
    from asyncua import Server, ua

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/e2e/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    index = await server.register_namespace(NAMESPACE)
    node = await server.nodes.objects.add_variable(ua.NodeId("Value", index), "Value",
                                                   ua.Variant(INITIAL, ua.VariantType.Double))
    await server.start()
    ready.set()
    try:
        while (command := await asyncio.to_thread(commands.get)) is not None:
            writes, first, seed = command
            rng, written = random.Random(seed), []
            for value in range(first, first + writes):
                await asyncio.sleep(rng.uniform(*GAP_S))
                now = datetime.now(UTC)
                await server.write_attribute_value(node.nodeid, ua.DataValue(
                    ua.Variant(float(value), ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now))
                written.append((float(value), now.timestamp()))
            results.put(written)
    finally:
        await server.stop()


def serve(port: int, ready, commands, results) -> None:
    asyncio.run(_serve(port, ready, commands, results))


# --------------------------------------------------------------------------- peer: bare asyncua client (own process)
async def _peer(endpoint: str, sampling_ms: float, ready, stop, results) -> None:
    from asyncua import Client

    from twin.connectors.bindings import ServerConfig

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    received: list[tuple[float, float, float]] = []  # value, arrival, SourceTimestamp

    class Handler:
        def datachange_notification(self, node, value, data) -> None:
            received.append((float(value), time.time(), _epoch(data.monitored_item.Value.SourceTimestamp)))

    client = Client(endpoint, timeout=5, watchdog_intervall=ServerConfig.health_check_s)  # as the connector
    await client.connect()
    index = (await client.get_namespace_array()).index(NAMESPACE)
    subscription = await client.create_subscription(PUBLISHING_MS, Handler())
    await subscription.subscribe_data_change([client.get_node(f"ns={index};s=Value")],
                                             sampling_interval=sampling_ms, queuesize=1)
    while not received:
        await asyncio.sleep(0.05)
    ready.set()
    await asyncio.to_thread(stop.wait)
    results.put(received)
    await asyncio.wait_for(client.disconnect(), 5)


def peer(endpoint: str, sampling_ms: float, ready, stop, results) -> None:
    asyncio.run(_peer(endpoint, sampling_ms, ready, stop, results))


# --------------------------------------------------------------------------- the twin (own process), timed
async def _twin(layout: str, binding_path: str, port: int, static_dir: str | None, ready, stop, results) -> None:
    import uvicorn
    from starlette.websockets import WebSocket

    from twin.cli import bound_part_poses
    from twin.connectors.bindings import load_bindings, validate_against_stage
    from twin.connectors.opcua import OpcUaConnector
    from twin.server.app import create_app
    from twin.server.http import server_config
    from twin.sim.runtime import Twin

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    binding_file = load_bindings(Path(binding_path))
    twin = Twin(layout, part_poses=bound_part_poses([binding_file]))  # the PLC on physics poses the parts
    validate_against_stage(binding_file, twin.stage.stage)
    connector = OpcUaConnector(binding_file, twin.cache)
    app = create_app(twin, glb_path=Path(layout).with_suffix(".glb"), static_dir=static_dir and Path(static_dir),
                     tick_hz=TICK_HZ, writer=connector, connector_health=connector.health,
                     on_startup=[connector.start], on_shutdown=[connector.stop])
    hub = app.state.hub
    record: dict[str, list] = {"cached": [], "notified": [], "encoded": [], "sent": [], "gc": []}
    collection_started = [0.0]

    def timed_collection(phase: str, info: dict) -> None:  # the twin's garbage collections over 5 ms: (start, ms)
        if phase == "start":
            collection_started[0] = time.time()
        elif (took := time.time() - collection_started[0]) > 0.005:
            record["gc"].append((collection_started[0], took * 1000.0, info["generation"]))

    gc.callbacks.append(timed_collection)
    in_flight: dict[int, int] = {}  # id(frame bytes) -> cache version, until handed to the websocket

    session = connector.sessions["e2e"]
    handle, frame, notify, send_bytes = session.datachange_notification, hub.frame, hub.notify, WebSocket.send_bytes

    def timed_notification(node, value, data):  # value, arrival, in the cache, cache version after the write
        arrived = time.time()
        handle(node, value, data)
        record["cached"].append((float(value), arrived, time.time(), twin.cache.version))

    def timed_notify() -> None:
        record["notified"].append(time.time())
        notify()

    def timed_frame(base, scope):
        data, version = frame(base, scope)
        if data is not None:
            record["encoded"].append((version, time.time()))
            in_flight[id(data)] = version
        return data, version

    async def timed_send_bytes(websocket, data) -> None:
        await send_bytes(websocket, data)
        version = in_flight.pop(id(data), None)
        if version is not None:
            record["sent"].append((version, time.time()))

    session.datachange_notification, hub.notify, hub.frame = timed_notification, timed_notify, timed_frame
    WebSocket.send_bytes = timed_send_bytes  # this process only

    server = uvicorn.Server(server_config(app, "127.0.0.1", port))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.05)
    ready.set()
    await asyncio.to_thread(stop.wait)
    results.put(record)
    server.should_exit = True
    await serving


def run_twin(layout: str, binding_path: str, port: int, static_dir: str | None, ready, stop, results) -> None:
    asyncio.run(_twin(layout, binding_path, port, static_dir, ready, stop, results))


# --------------------------------------------------------------------------- the page
WATCH_SCRIPT = """([key, prim]) => {
  const clock = () => performance.timeOrigin + performance.now();
  window.twin.select(prim);  // the inspector lists the prim's values: the DOM text a user reads
  const row = () => document.querySelector(`[data-signal-key="${key}"]`);
  const e2e = window.__e2e = { seen: [] };
  const { signals, stream } = window.twin;
  const set = signals.set;
  let last = signals.get(key)?.v;
  signals.set = function (name, signal) {
    if (name === key && signal.v !== last) {
      last = signal.v;
      const frame = stream.applying;  // the merged frame being applied: when each signal's frame reached the worker
      const index = frame.signals.rows.indexOf(stream.schema.signals.findIndex((info) => info.key === key));
      const entry = { v: signal.v, message: frame.signals.received[index], applied: clock(), shown: null,
                      text: null };
      e2e.seen.push(entry);
      requestAnimationFrame(() => {  // a task posted now runs after this frame is painted
        const painted = new MessageChannel();
        painted.port1.onmessage = () => { entry.shown = clock(); entry.text = row()?.textContent ?? null; };
        painted.port2.postMessage(null);
      });
    }
    return set.call(this, name, signal);
  };
}"""


def page_counters(page) -> dict:
    """The page's clock against the system clock that time.time() reads (Date.now(): same instant, no round
    trip, so a busy page cannot skew it), and its frame counters."""
    return page.evaluate("""() => ({offset: performance.timeOrigin + performance.now() - Date.now(),
        at: performance.now(), frames: window.twin.frames, rendered: window.twin.renderedFrames()})""")


# --------------------------------------------------------------------------- one configuration
def first_at_or_after(times: np.ndarray, versions: np.ndarray, version: int, after: float) -> float:
    """Time of the first event with at least `version` at or after `after` (NaN if none)."""
    hits = np.flatnonzero((versions >= version) & (times >= after))
    return float(times[hits[0]]) if hits.size else float("nan")


def stages(written, twin_record, seen, peer_received) -> dict[str, np.ndarray]:
    """Per written value, the time of each stage in ms (NaN where a stage never saw it)."""
    cached = {value: (arrived, in_cache, version) for value, arrived, in_cache, version in twin_record["cached"]}
    encoded = np.array(twin_record["encoded"] or [(0, np.nan)])
    sent = np.array(twin_record["sent"] or [(0, np.nan)])
    notified = np.array(twin_record["notified"] or [np.nan])
    page = {entry["v"]: entry for entry in seen}
    peer_at = {value: arrival for value, arrival, _ in peer_received}
    nan = float("nan")
    rows = []
    for value, source in written:
        arrived, in_cache, version = cached.get(value, (nan, nan, -1))
        encoded_at = first_at_or_after(encoded[:, 1], encoded[:, 0], version, in_cache)
        woken = notified[notified <= encoded_at]  # the tick that woke the stream for this frame
        tick_wait = max(float(woken[-1]) - in_cache, 0.0) if woken.size else nan  # 0: it rode a tick under way
        sent_at = first_at_or_after(sent[:, 1], sent[:, 0], version, encoded_at)
        entry = page.get(value, {})
        message, applied, shown = (float(entry.get(k) or nan) / 1000.0 for k in ("message", "applied", "shown"))
        rows.append(dict(total=shown - source, peer=peer_at.get(value, nan) - source, publish=arrived - source,
                         cache=in_cache - arrived, tick=encoded_at - in_cache, tick_wait=tick_wait,
                         send=sent_at - encoded_at, page=shown - sent_at, receive=message - sent_at,
                         apply=applied - message, paint=shown - applied))
    return {name: np.array([row[name] for row in rows]) * 1000.0 for name in rows[0]}


def percentile(values: np.ndarray, q: float) -> float | None:
    values = values[np.isfinite(values)]
    return round(float(np.percentile(values, q)), 1) if values.size else None


def write_bindings(path: Path, endpoint: str, sampling_ms: float, plc_endpoint: str | None,
                   physics: bool = False) -> None:
    """The bench variable's binding; with `plc_endpoint`, after the sample factory's own bindings to its PLC (and,
    with `physics`, the binding of its parts' poses, as `twin demo` reads bindings_physics.yaml)."""
    import yaml

    from twin.sample_factory import plc

    content: dict = {"servers": {}, "bindings": []}
    if plc_endpoint:
        content = yaml.safe_load(Path(plc.__file__).with_name("bindings.yaml").read_text())
        content["servers"]["plc"]["endpoint"] = plc_endpoint
        if physics:
            content["bindings"] += yaml.safe_load(Path(plc.__file__).with_name("bindings_physics.yaml").read_text())[
                "bindings"]
    content["servers"]["e2e"] = {"endpoint": endpoint, "publishing_ms": PUBLISHING_MS}
    content["bindings"].append({"server": "e2e", "node": NODE, "prim": PRIM, "attr": ATTR,
                                "sampling_ms": sampling_ms, "queue_size": 1})
    path.write_text(yaml.safe_dump(content, sort_keys=False))


@contextlib.contextmanager
def sample_plc(load: str, layout: Path) -> Iterator[str | None]:
    """The sample factory's simulated PLC (as `twin demo --line-model` runs it for "demo", `twin demo` for "physics"),
    or nothing ("idle"); yields its endpoint once it serves."""
    from tests.helpers import free_port
    from twin.cli import wait_for_port

    if load == "idle":
        yield None
        return
    port = free_port()
    physics = ["--physics", "--layout", str(layout)] if load == "physics" else []
    process = subprocess.Popen([sys.executable, "-m", "twin.sample_factory.plc", "--port", str(port), *physics],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 90.0, process)
        yield f"opc.tcp://127.0.0.1:{port}/factory/"
    finally:
        process.terminate()
        process.wait(20)


def measure(sampling_ms: float, load: str, writes: int, first: int, layout: Path, folder: Path,
            server: dict, static_dir: str | None) -> dict:
    with sample_plc(load, layout) as plc_endpoint:
        load_before = os.getloadavg()[0]
        row = _measure(sampling_ms, load, plc_endpoint, writes, first, layout, folder, server, static_dir)
    row["load_avg"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    return row


def _measure(sampling_ms: float, load: str, plc_endpoint: str | None, writes: int, first: int, layout: Path,
             folder: Path, server: dict, static_dir: str | None) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.helpers import CHROMIUM, CHROMIUM_ARGS, free_port

    context = mp.get_context("spawn")
    bindings = folder / f"bindings_{first}.yaml"
    write_bindings(bindings, server["endpoint"], sampling_ms, plc_endpoint, physics=load == "physics")
    port = free_port()
    twin_ready, peer_ready, stop = context.Event(), context.Event(), context.Event()
    twin_results, peer_results = context.Queue(), context.Queue()
    twin_process = context.Process(target=run_twin, daemon=True, args=(
        str(layout), str(bindings), port, static_dir, twin_ready, stop, twin_results))
    peer_process = context.Process(target=peer, daemon=True, args=(
        server["endpoint"], sampling_ms, peer_ready, stop, peer_results))
    twin_process.start()
    peer_process.start()
    try:
        started = time.monotonic()
        while not (twin_ready.is_set() and peer_ready.is_set()):
            if not (twin_process.is_alive() and peer_process.is_alive()) or time.monotonic() - started > 180:
                raise SystemExit("the twin or the peer did not start (or ended)")
            time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 850})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("window.twin && window.twin.ready", timeout=120_000)
            page.wait_for_function(f"window.twin.signals.get({json.dumps(KEY)})?.q === 'good'", timeout=60_000)
            page.evaluate(WATCH_SCRIPT, [KEY, PRIM])
            page.wait_for_timeout(3000)  # the viewer settles its render quality first
            before = page_counters(page)
            changes_before = page.evaluate("window.twin.qualityHistory.length")
            server["commands"].put((writes, first, first))
            written = server["results"].get(timeout=writes * GAP_S[1] + 60)
            page.wait_for_timeout(1500)  # the last value's way to the page
            seen = page.evaluate("window.__e2e.seen")
            after = page_counters(page)
            quality = page.evaluate("window.twin.quality()")
            quality_changes = page.evaluate(f"window.twin.qualityHistory.slice({changes_before})")
            browser.close()
        stop.set()
        twin_record, peer_received = twin_results.get(timeout=30), peer_results.get(timeout=30)
    finally:
        stop.set()
        for process in (twin_process, peer_process):
            process.join(20)
            if process.is_alive():
                process.terminate()
    times = stages(written, twin_record, seen, peer_received)
    row: dict = dict(sampling_ms=sampling_ms, load=load, publishing_ms=PUBLISHING_MS,
                     tick_hz=TICK_HZ, writes=writes,
                     shown=int(np.isfinite(times["total"]).sum()), peer_received=int(np.isfinite(times["peer"]).sum()),
                     in_dom=sum(entry["text"] is not None and f"{entry['v']:g}" in entry["text"] for entry in seen),
                     p50_ms=percentile(times["total"], 50), p90_ms=percentile(times["total"], 90),
                     p99_ms=percentile(times["total"], 99), max_ms=percentile(times["total"], 100),
                     peer_p50_ms=percentile(times["peer"], 50), peer_p99_ms=percentile(times["peer"], 99))
    for name in ("publish", "cache", "tick", "tick_wait", "send", "page", "receive", "apply", "paint"):
        row[f"{name}_p50_ms"], row[f"{name}_p99_ms"] = percentile(times[name], 50), percentile(times[name], 99)
    seconds = (after["at"] - before["at"]) / 1000.0
    row["page_frames_per_s"] = round((after["frames"] - before["frames"]) / seconds, 1)
    row["page_rendered_fps"] = round((after["rendered"] - before["rendered"]) / seconds, 1)
    sent = np.array([at for _, at in twin_record["sent"]])
    row["sent_frames_per_s"] = round(float(np.sum((sent >= written[0][1]) & (sent <= written[-1][1])))
                                     / (written[-1][1] - written[0][1]), 1)
    frame_ms = quality["frameMs"]  # null where the page rendered no two frames in a row lately (idle)
    row["quality"] = quality["level"] + (f" {frame_ms:.0f} ms" if frame_ms is not None else "")
    row["quality_changes"] = quality_changes  # each level taken and each probe's verdict during the writes
    row["twin_gc_ms"] = [round(ms, 1) for at, ms, _ in twin_record["gc"] if written[0][1] <= at <= written[-1][1] + 1]
    row["clock_offset_ms"] = round(max(before["offset"], after["offset"], key=abs), 1)
    if row["p99_ms"] is not None and row["peer_p99_ms"] is not None:
        row["p99_over_peer_ms"] = round(row["p99_ms"] - row["peer_p99_ms"], 1)
    return row


# --------------------------------------------------------------------------- report
COLUMNS = (("sampling_ms", "sampling"), ("load", "load"), ("shown", "shown"), ("in_dom", "in DOM"), ("p50_ms", "p50"),
           ("p90_ms", "p90"), ("p99_ms", "p99"), ("max_ms", "max"), ("peer_p50_ms", "peer p50"),
           ("peer_p99_ms", "peer p99"),
           ("publish_p50_ms", "publish"), ("cache_p50_ms", "cache"), ("tick_p50_ms", "tick"),
           ("tick_wait_p50_ms", "(wait)"), ("send_p50_ms", "send"), ("page_p50_ms", "page"),
           ("receive_p50_ms", "(receive"), ("apply_p50_ms", "apply"), ("paint_p50_ms", "paint)"),
           ("sent_frames_per_s", "sent/s"), ("page_frames_per_s", "page/s"), ("page_rendered_fps", "fps"),
           ("quality", "quality"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=60, help="values written per configuration")
    parser.add_argument("--load", choices=LOADS, help="only the rows with this load (default: all)")
    parser.add_argument("--viewer", help="the built viewer to serve (default: web/dist), e.g. another commit's, "
                                         "to compare two viewers under the same conditions")
    args = parser.parse_args()
    configs = [(sampling, load) for sampling, load in CONFIGS if args.load in (None, load)]
    from tests.helpers import free_port
    from twin.sample_factory.scene import build_sample_factory

    started = time.perf_counter()
    info = f"{cpu()}, headless Debian chromium (software WebGL)"
    print(f"End-to-end latency on {info}")
    print(f"PLC value -> page: {args.writes} writes per row, {GAP_S[0] * 1000:g}-{GAP_S[1] * 1000:g} ms apart; "
          f"publishing {PUBLISHING_MS:g} ms, queue size 1, tick {TICK_HZ:g} Hz; peer: bare asyncua client",
          flush=True)
    context = mp.get_context("spawn")
    port = free_port()
    server = dict(endpoint=f"opc.tcp://127.0.0.1:{port}/e2e/", commands=context.Queue(), results=context.Queue())
    ready = context.Event()
    process = context.Process(target=serve, daemon=True, args=(port, ready, server["commands"], server["results"]))
    process.start()
    rows = []
    try:
        if not ready.wait(60):
            raise SystemExit("the OPC-UA server did not start within 60 s")
        with tempfile.TemporaryDirectory() as folder:
            layout = build_sample_factory(Path(folder))
            for number, (sampling_ms, load) in enumerate(configs):
                row = measure(sampling_ms, load, args.writes, 1000 * (number + 1), layout, Path(folder), server,
                              args.viewer)
                rows.append(row)
                print(f"  sampling {sampling_ms:g} ms, {row['load']}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms "
                      f"(peer {row['peer_p50_ms']} / {row['peer_p99_ms']} ms), {row['shown']}/{args.writes} shown",
                      flush=True)
    finally:
        server["commands"].put(None)
        process.join(10)
        if process.is_alive():
            process.terminate()
    print()
    print_table(rows, COLUMNS)
    print("ms, source timestamp -> page; stages are medians")
    for row in rows:
        if row["sampling_ms"] == SAMPLING_MS[0]:
            over = row.get("p99_over_peer_ms")
            met = over is not None and over <= TARGET_MS
            print(f"target at sampling {row['sampling_ms']:g} ms, {row['load']}: p99 within {TARGET_MS:g} ms of the "
                  f"peer's: {'met' if met else 'NOT met'} ({over} ms over)")
    print(f"total run time {time.perf_counter() - started:.0f} s")
    print(json.dumps({"bench": "e2e_latency", "machine": info, "rows": rows}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
