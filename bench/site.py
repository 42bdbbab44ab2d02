"""Lines on a broker: N lines x 2,000 MQTT signals at 1 Hz, viewers served by relays (docs/scale.md).

A publisher process pushes each line's 2,000 signals once a second as JSON ({"v", "ts"}: its timestamp),
spread evenly over the second, into a Debian mosquitto started here. Each line is a `twin serve` of the sample
layout binding its signals (MQTT in) and publishing its stream state (`publish: {stream: true}`); each line has a
`twin relay`, and the viewers (lean websocket clients in this process: binary frames, acked as the viewer does)
read the relay's stream. p99 is from the publisher's timestamp to the viewer's decoded frame. The peer (same run)
is the same signals into one twin process, its viewers on that process's own stream. Last line: one JSON object.

Both paths are counted by the same code (`count_frame`, `row_rates`): an update is one publish of a bench signal
(a new publisher timestamp for that signal; a value a keyframe or snapshot sends again is not counted twice)
whose timestamp lies in the window and that reached the viewer; updates/s is, per stream, the mean of its
viewers' rates, summed over the streams (a relay's stream carries one line, the peer's all of them). A row that
counts more updates than were offered, or more frames than its stream can send, says so under "impossible" and
the bench exits 1.

    python bench/site.py [--lines 1,4,8] [--seconds 15] [--viewers 2] [--peer-lines 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from machine import cpu, cpu_seconds  # bench/machine.py: scripts run as `python bench/NAME.py`

from twin.cli import free_port
from twin.server.clock import WRITE_CHECK_S

SIGNALS = 2_000
PRIM = "/Factory/Line/Conveyor1"
TARGET_MS, TARGET_LINES = 100.0, 4
WARMUP_S = 4.0
GRACE_S = 1.0  # after the window, viewers still take the updates published in it
TICK_HZ = 30.0  # each line's `twin serve --tick-hz`, and so its stream state messages a second
TOLERANCE = 0.05  # over the offered rate: a publisher catching up after a stall sends a little more in a window


def publish(port: int, lines: int, signals: int, seconds: float) -> None:
    """The plant: every signal of every line once a second, in 20 slices of 50 ms."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    slices, started = 20, time.monotonic()
    tick = 0
    while time.monotonic() - started < seconds:
        part = tick % slices
        for line in range(lines):
            for signal in range(part, signals, slices):
                client.publish(f"bench/line{line}/s{signal}", json.dumps({"v": tick + signal, "ts": time.time()}))
        tick += 1
        time.sleep(max(0.0, started + tick / slices - time.monotonic()))
    client.loop_stop()


def bindings(path: Path, broker_port: int, lines: range, signals: int, stream_root: str | None) -> None:
    rows = [f"  - {{server: uns, topic: bench/line{line}/s{signal}, value_path: v, time_path: ts, prim: {PRIM}, "
            f"attr: 'twin:bench:l{line}s{signal}'}}" for line in lines for signal in range(signals)]
    publish_section = f"publish: {{broker: uns, format: json, topic_root: {stream_root}, stream: true}}\n" \
        if stream_root else ""
    path.write_text(f'brokers:\n  uns: {{url: "mqtt://127.0.0.1:{broker_port}", keepalive_s: 5}}\n'
                    f"{publish_section}bindings:\n" + "\n".join(rows) + "\n")


def start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        return subprocess.Popen([sys.executable, "-m", "twin.cli", *args], stdout=output, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


@dataclass
class Viewed:
    """What one viewer received: the frames and the bench signals' updates counted in its window."""

    stream: str  # the URL it read: one line's relay, or the peer's one twin
    start: float = math.inf  # its window: from the later of the warm-up's end and its first message
    frames: int = 0  # binary frames received in the window
    updates: int = 0  # updates published in the window that reached it, each once
    latencies: list[float] = field(default_factory=list)  # of those updates: publisher -> decoded frame, s


def count_frame(viewed: Viewed, frame, bench_rows: np.ndarray, last: np.ndarray, received: float,
                until: float) -> None:
    """The one way every row counts a frame. An update is a bench signal with a publisher timestamp newer than
    the one this viewer last saw for it (a keyframe's or a snapshot's repeat of a value is not one), published
    in [viewed.start, until); `last` holds the newest timestamp seen per signal row and is updated here."""
    if viewed.start <= received < until:
        viewed.frames += 1
    if not frame.signal_rows.size:
        return
    mine = bench_rows[frame.signal_rows]
    rows, source = frame.signal_rows[mine], frame.source_time[mine]
    new = source > last[rows] + 1e-4  # the age travels as float32: a repeat decodes within microseconds
    last[rows[new]] = source[new]
    counted = new & (source >= viewed.start) & (source < until)
    viewed.updates += int(counted.sum())
    viewed.latencies.extend((received - source[counted]).tolist())


async def viewer(url: str, viewed: Viewed, measure_from: float, until: float) -> None:
    """A lean viewer: decodes every binary frame, acks it, and counts it (`count_frame`) in its window; it reads on
    for GRACE_S after the window for the updates published in it."""
    import websockets

    from twin.stream.protocol import decode_frame

    widths = np.zeros(0, np.int64)
    bench_rows = np.zeros(0, bool)
    last = np.zeros(0)
    async with websockets.connect(url, max_size=None, open_timeout=30) as websocket:
        while (now := time.time()) < until + GRACE_S:
            try:
                message = await asyncio.wait_for(websocket.recv(), max(0.1, until + GRACE_S - now))
            except TimeoutError:
                break
            received = time.time()
            if viewed.start == math.inf:
                viewed.start = max(measure_from, received)
            if isinstance(message, str):
                control = json.loads(message)
                if control["type"] == "schema":
                    widths = np.array([s["width"] for s in control["signals"]], np.int64)
                    bench_rows = np.array([s["attr"].startswith("twin:bench:") for s in control["signals"]])
                    grown = np.full(len(widths), -math.inf)  # rows only grow: what was seen stays seen
                    grown[:min(len(last), len(grown))] = last[:len(grown)]
                    last = grown
                continue
            frame = decode_frame(message, widths)
            await websocket.send(json.dumps({"type": "ack", "version": frame.version}))
            count_frame(viewed, frame, bench_rows, last, received, until)


def measure(urls: list[str], seconds: float) -> tuple[list[Viewed], float]:
    """Each viewer's counts over `seconds` after the warm-up, and the end of the window."""
    measure_from = time.time() + WARMUP_S
    until = measure_from + seconds
    viewed = [Viewed(url) for url in urls]

    async def run() -> None:
        await asyncio.gather(*(viewer(url, one, measure_from, until) for url, one in zip(urls, viewed, strict=True)))

    asyncio.run(run())
    return viewed, until


def row_rates(viewed: list[Viewed], until: float, offered: dict[str, float], max_fps: float) -> dict:
    """The same figures for relay and peer rows: updates/s is, per stream, the mean of its viewers' rates, summed
    over the streams; fps the mean per viewer. A row over what was offered (beyond TOLERANCE) or over what its
    stream can send lists that under "impossible"."""
    streams: dict[str, list[Viewed]] = {}
    for one in viewed:
        streams.setdefault(one.stream, []).append(one)

    def rate(count: int, one: Viewed) -> float:
        return count / (until - one.start) if until > one.start else 0.0

    updates = sum(float(np.mean([rate(one.updates, one) for one in group])) for group in streams.values())
    fps = float(np.mean([rate(one.frames, one) for one in viewed]))
    offered_per_s = sum(offered[stream] for stream in streams)
    latencies = np.asarray([latency for one in viewed for latency in one.latencies])
    impossible = []
    if updates > offered_per_s * (1 + TOLERANCE):
        impossible.append(f"{updates:.0f} updates/s counted, {offered_per_s:g} offered")
    if fps > max_fps * (1 + TOLERANCE):
        impossible.append(f"{fps:.1f} frames/s per viewer, its stream sends at most {max_fps:g}")
    return {"updates_per_s": round(updates, 1), "offered_per_s": offered_per_s,
            "p99_ms_to_site": round(float(np.percentile(latencies, 99)) * 1000, 1) if latencies.size else None,
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if latencies.size else None,
            "viewers": len(viewed), "fps_per_viewer": round(fps, 1), "max_fps": max_fps, "impossible": impossible}


def usage(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, resident MB) of a process, from /proc."""
    rss = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS"))
    return cpu_seconds(pid), int(rss.split()[1]) / 1024


def run_row(folder: Path, layout: Path, broker_port: int, lines: int, viewers: int, seconds: float,
            peer: bool) -> dict:
    """One row: `lines` lines with a relay each (or, for the peer, one twin with every line's signals)."""
    processes: list[subprocess.Popen] = []
    ready: list[tuple[subprocess.Popen, str]] = []  # each process and its readiness URL
    try:
        urls: list[str] = []
        offered: dict[str, float] = {}
        for line in range(1 if peer else lines):
            served = range(lines) if peer else range(line, line + 1)
            path = folder / f"{'peer' if peer else 'line'}{lines}-{line}.yaml"
            bindings(path, broker_port, served, SIGNALS, None if peer else f"bench/line{line}/twin")
            port = free_port()
            processes.append(start(["serve", str(layout), "--bindings", str(path), "--port", str(port),
                                    "--tick-hz", str(TICK_HZ)], path.with_suffix(".log")))
            ready.append((processes[-1], f"http://127.0.0.1:{port}/api/health"))
            target = port
            if not peer:
                target = free_port()
                processes.append(start(["relay", str(layout), "--broker", f"mqtt://127.0.0.1:{broker_port}",
                                        "--topic-root", f"bench/line{line}/twin", "--port", str(target)],
                                       path.with_suffix(".relay.log")))
                ready.append((processes[-1], f"http://127.0.0.1:{target}/healthz"))
            urls += [f"ws://127.0.0.1:{target}/ws"] * (viewers * (lines if peer else 1))
            offered[urls[-1]] = SIGNALS * len(served)  # each signal once a second
        for process, url in ready:
            wait_ready(url, process)
        load = os.getloadavg()[0]
        plant = subprocess.Popen([sys.executable, __file__, "--publish", str(broker_port), str(lines),
                                  str(seconds + WARMUP_S + 2)])
        watched = processes[:2]  # the first line and its relay (the peer: its one twin)
        before = [usage(process.pid)[0] for process in watched]
        started = time.monotonic()
        viewed, until = measure(urls, seconds)
        after = [usage(process.pid) for process in watched]
        elapsed = time.monotonic() - started
        plant.wait(60)
        # A relay's viewers get a frame per state message of its line (TICK_HZ); a twin's own viewers one per tick
        # and one whenever a connector wrote between ticks, checked every WRITE_CHECK_S (twin/server/clock.py).
        max_fps = TICK_HZ + 1 / WRITE_CHECK_S if peer else TICK_HZ
        return {"lines": lines, "signals_per_line": SIGNALS, **row_rates(viewed, until, offered, max_fps),
                "load_average": round(load, 1), "path": "one twin, direct" if peer else "line -> broker -> relay",
                "cpu_share": [round((cpu_s - start_s) / elapsed, 2) for (cpu_s, _), start_s in zip(after, before,
                                                                                                    strict=True)],
                "rss_mb": [round(rss) for _, rss in after]}  # [line, relay] or [the peer's twin]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="1,4,8")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--viewers", type=int, default=2, help="per line")
    parser.add_argument("--peer-lines", default="4", help="rows (line counts) that also get the peer")
    parser.add_argument("--publish", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        port, lines, seconds = args.publish
        publish(int(port), int(lines), SIGNALS, float(seconds))
        return
    from twin.sample_factory.scene import build_sample_factory

    folder = Path(tempfile.mkdtemp(prefix="bench-site-"))
    broker_port = free_port()
    (folder / "mosquitto.conf").write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([mosquitto, "-c", str(folder / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    rows, peers = [], {}
    try:
        layout = build_sample_factory(folder / "layout")
        print(f"# {cpu()}; load average at start {os.getloadavg()[0]:.1f}", flush=True)
        print("lines, signals_per_line, updates_per_s, p99_ms_to_site, viewers, fps_per_viewer", flush=True)
        for lines in (int(n) for n in args.lines.split(",")):
            row = run_row(folder, layout, broker_port, lines, args.viewers, args.seconds, peer=False)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if str(lines) in args.peer_lines.split(","):
                peers[lines] = run_row(folder, layout, broker_port, lines, args.viewers, args.seconds, peer=True)
                print(json.dumps(peers[lines]), flush=True)
    finally:
        broker.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    target = next((row for row in rows if row["lines"] == TARGET_LINES), None)
    summary = {"bench": "site", "target": f"p99 < {TARGET_MS:g} ms at {TARGET_LINES} lines x {SIGNALS} signals at 1 Hz",
               "target_met": None if target is None or target["p99_ms_to_site"] is None
               else target["p99_ms_to_site"] < TARGET_MS,
               "rows": rows, "peers": list(peers.values()),
               "p99_ratio_relay_to_peer": {lines: round(next(r for r in rows if r["lines"] == lines)["p99_ms_to_site"]
                                                        / peer["p99_ms_to_site"], 2)
                                           for lines, peer in peers.items()
                                           if peer["p99_ms_to_site"] and
                                           next(r for r in rows if r["lines"] == lines)["p99_ms_to_site"]}}
    impossible = [f"{row['lines']} lines, {row['path']}: {problem}" for row in [*rows, *peers.values()]
                  for problem in row["impossible"]]
    summary["impossible"] = impossible
    print(json.dumps(summary))
    if impossible:
        sys.exit("site bench: counts that cannot be true:\n  " + "\n  ".join(impossible))


if __name__ == "__main__":
    main()
