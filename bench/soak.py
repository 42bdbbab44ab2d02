"""Soak: `twin demo` under a day's kind of use for --minutes, and whether its memory keeps growing.

Two demos run at once, each its own `twin demo` process (own port, own simulated PLC, own history file, on
loopback; `--workdir` shared, built once):
- load: 10 stream viewers (websocket clients that decode every frame with twin.stream.protocol.StreamState and
  resync on a gap, as a Python client does), a what-if study submitted through REST every --whatif-every-s and
  followed until done, a history query every --history-every-s (range, raw series, resampled series, state at an
  instant, in turn), and GET /api/health every second (its latency: what a monitoring probe sees).
- idle (the peer): the same demo with no client at all, the memory baseline: what the simulation, the PLC
  connection and the historian alone do to memory.
Every --sample-every-s the server processes' RSS, anonymous RSS and CPU time are read from /proc. Reported per
server: the RSS growth slope in MB/h fitted (least squares) over the samples after --warmup-minutes, the total
growth (last sample minus first), the anonymous memory's slope (RSS less the libraries' file pages, which the page
cache takes and gives back as other processes read files), CPU %, and for the load run the 5xx answers and other
errors (timeouts, refused sockets, failed jobs), frames decoded per viewer and resyncs, /api/health p50/p99, and
the ERROR/Traceback lines in each server's log, and the size of each demo's history file (DuckDB and its WAL)
with its growth in MB/h after warm-up. Target: the load run grows by less than 5 MB/h after warm-up. Every
sample goes to samples-load.csv and samples-idle.csv in --logs. `--physics` runs both demos as `twin demo
--physics`.

    python bench/soak.py [--minutes 30] [--physics]

The last line is the JSON summary (../shared/README.md). Logs stay in --logs (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import websockets
from machine import cpu  # bench/machine.py: scripts run as `python bench/NAME.py`

from twin.cli import free_port
from twin.stream.protocol import Frame, Gap, StreamState

TARGET_MB_PER_H = 5.0
CLIENT_KINDS = ("viewers", "whatif", "history", "health")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Demo:
    """One `twin demo` process and what was sampled of it."""

    name: str
    port: int
    process: subprocess.Popen
    log: Path
    history: Path  # its DuckDB file (`twin demo` keeps one per port in the work folder)
    # (monotonic s, RSS MB, CPU s, history file and WAL MB, anonymous RSS MB)
    samples: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sample(self) -> None:
        """RSS (MB) and user + system CPU seconds of the server process, from /proc."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15 of stat)
        rss_mb = int(fields[21]) * PAGE_SIZE / 1e6  # rss in pages (field 24)
        history_mb = sum(path.stat().st_size for path in (self.history, self.history.with_name(
            self.history.name + ".wal")) if path.exists()) / 1e6
        with open(f"/proc/{self.process.pid}/status") as status:  # RssAnon: the heap, without file pages
            anon_mb = next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1e3
        self.samples.append((time.monotonic(), rss_mb, cpu_s, history_mb, anon_mb))


@dataclass
class Load:
    """What the clients of the load run saw."""

    viewers: int
    frames: list[int] = field(default_factory=list)
    resyncs: int = 0
    status: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    whatif_done: int = 0
    whatif_s: list[float] = field(default_factory=list)
    history_queries: int = 0

    def answered(self, response: httpx.Response, what: str) -> None:
        self.status[response.status_code] = self.status.get(response.status_code, 0) + 1
        if response.status_code >= 400:
            self.errors.append(f"{what}: {response.status_code} {response.text[:200]}")


def start_demo(name: str, workdir: Path, logs: Path, physics: bool = False) -> Demo:
    port = free_port()
    log = logs / f"{name}.log"
    process = subprocess.Popen([sys.executable, "-m", "twin.cli", "demo", "--port", str(port), "--workdir",
                                str(workdir), *(["--physics"] if physics else [])], stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    return Demo(name, port, process, log, workdir / f"history-{port}.duckdb")


def wait_healthy(demo: Demo, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if demo.process.poll() is not None:
            raise RuntimeError(f"{demo.name} demo exited with {demo.process.returncode}: see {demo.log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{demo.url}/api/health", timeout=5).status_code == 200:
                return
        time.sleep(1.0)
    raise TimeoutError(f"{demo.name} demo not healthy after {timeout:.0f} s: see {demo.log}")


def stop_demo(demo: Demo) -> None:
    """SIGTERM, as a service manager stops it (the demo stops its PLC too)."""
    if demo.process.poll() is None:
        demo.process.send_signal(signal.SIGTERM)
        try:
            demo.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.process.kill()
            demo.process.wait()


async def viewer(url: str, index: int, load: Load, until: float) -> None:
    """A stream client decoding every frame; reconnects (and counts an error) if the stream drops."""
    ws_url = url.replace("http://", "ws://") + "/ws"
    while time.monotonic() < until:
        state = StreamState()
        try:
            async with websockets.connect(ws_url, max_size=None, compression=None, max_queue=1) as socket:
                while (left := until - time.monotonic()) > 0:
                    try:
                        message = await asyncio.wait_for(socket.recv(), min(left, 30.0))
                    except TimeoutError:
                        if until - time.monotonic() > 0:
                            load.errors.append(f"viewer {index}: no message for 30 s")
                        continue
                    try:
                        if isinstance(state.receive(message), Frame):
                            load.frames[index] += 1
                    except Gap:
                        load.resyncs += 1
                        await socket.send(json.dumps({"type": "resync"}))
        except (OSError, websockets.WebSocketException) as error:
            load.errors.append(f"viewer {index}: {type(error).__name__}: {error}")
            await asyncio.sleep(1.0)


async def whatifs(client: httpx.AsyncClient, load: Load, every_s: float, until: float) -> None:
    """A small study every `every_s`, followed until it is done."""
    while time.monotonic() < until:
        began = time.monotonic()
        try:
            response = await client.post("/api/whatif", json={"replications": 4, "hours": 2.0, "seed": len(
                load.whatif_s) + 1})
            load.answered(response, "POST /api/whatif")
            if response.status_code == 202:
                job = response.json()
                while job["status"] not in ("done", "failed") and time.monotonic() < until:
                    await asyncio.sleep(1.0)
                    response = await client.get(f"/api/whatif/{job['id']}")
                    load.answered(response, "GET /api/whatif/{id}")
                    job = response.json()
                if job["status"] == "done":
                    load.whatif_done += 1
                    load.whatif_s.append(time.monotonic() - began)
                elif job["status"] == "failed":
                    load.errors.append(f"what-if job {job['id']} failed: {job.get('error')}")
        except httpx.HTTPError as error:
            load.errors.append(f"what-if: {type(error).__name__}: {error}")
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - began)))


async def history_queries(client: httpx.AsyncClient, load: Load, key: str, every_s: float, until: float) -> None:
    """One history query every `every_s`, the four kinds in turn, over the last minute."""
    turn = 0
    while time.monotonic() < until:
        now = time.time()
        query = [("/api/history/range", {}),
                 ("/api/history/signal", {"key": key, "start": now - 60, "end": now}),
                 ("/api/history/signal", {"key": key, "start": now - 60, "end": now, "step": 5, "how": "mean"}),
                 ("/api/history/state", {"at": now - 2})][turn % 4]
        turn += 1
        try:
            load.answered(await client.get(query[0], params=query[1]), f"GET {query[0]}")
            load.history_queries += 1
        except httpx.HTTPError as error:
            load.errors.append(f"{query[0]}: {type(error).__name__}: {error}")
        await asyncio.sleep(every_s)


async def health_probe(client: httpx.AsyncClient, load: Load, until: float) -> None:
    while time.monotonic() < until:
        began = time.perf_counter()
        try:
            response = await client.get("/api/health")
            load.health_ms.append((time.perf_counter() - began) * 1000)
            load.answered(response, "GET /api/health")
        except httpx.HTTPError as error:
            load.errors.append(f"/api/health: {type(error).__name__}: {error}")
        await asyncio.sleep(1.0)


async def sampler(demos: list[Demo], every_s: float, until: float) -> None:
    while True:
        for demo in demos:
            with contextlib.suppress(OSError):
                demo.sample()
        if time.monotonic() >= until:
            return
        await asyncio.sleep(min(every_s, max(0.0, until - time.monotonic())))


async def soak(loaded: Demo, idle: Demo, args: argparse.Namespace) -> Load:
    viewers = args.viewers if "viewers" in args.clients else 0
    load = Load(viewers, frames=[0] * viewers)
    until = time.monotonic() + args.minutes * 60
    async with httpx.AsyncClient(base_url=loaded.url, timeout=30.0) as client:
        signals = (await client.get("/api/signals")).json()
        key = next(k for k, s in signals.items() if type(s["v"]) in (int, float))  # a numeric signal, not a flag
        clients = {"viewers": lambda: [viewer(loaded.url, i, load, until) for i in range(args.viewers)],
                   "whatif": lambda: [whatifs(client, load, args.whatif_every_s, until)],
                   "history": lambda: [history_queries(client, load, key, args.history_every_s, until)],
                   "health": lambda: [health_probe(client, load, until)]}
        await asyncio.gather(sampler([loaded, idle], args.sample_every_s, until),
                             *(task for kind in args.clients for task in clients[kind]()))
    return load


def memory(demo: Demo, warmup_s: float) -> dict:
    """RSS slope after warm-up (least squares, MB/h), total growth, and CPU % of one server."""
    times, rss, cpu_s, history_mb, anon = (np.array(column) for column in zip(*demo.samples, strict=True))
    after = times - times[0] >= warmup_s
    slope = float(np.polyfit(times[after] / 3600.0, rss[after], 1)[0]) if after.sum() >= 3 else float("nan")
    history_slope, anon_slope = (float(np.polyfit(times[after] / 3600.0, series[after], 1)[0]) if after.sum() >= 3
                                 else float("nan") for series in (history_mb, anon))
    return {"server": demo.name, "samples": len(times), "rss_start_mb": round(float(rss[0]), 1),
            "rss_end_mb": round(float(rss[-1]), 1), "rss_max_mb": round(float(rss.max()), 1),
            "growth_mb": round(float(rss[-1] - rss[0]), 1),
            "growth_after_warmup_mb": round(float(rss[-1] - rss[after][0]), 1) if after.any() else None,
            "slope_mb_per_h": round(slope, 2),
            # RSS counts the libraries' shared file pages too, which come and go with the page cache; the
            # anonymous part is the process's own memory, where a leak shows
            "anon_start_mb": round(float(anon[0]), 1), "anon_end_mb": round(float(anon[-1]), 1),
            "anon_slope_mb_per_h": round(anon_slope, 2),
            "history_mb": round(float(history_mb[-1]), 1), "history_mb_per_h": round(history_slope, 1),
            "cpu_percent": round(float((cpu_s[-1] - cpu_s[0]) / max(times[-1] - times[0], 1e-9) * 100), 1)}


def write_samples(demo: Demo, path: Path) -> None:
    """Every sample as CSV, so that a sawtooth (memory given back at a checkpoint) can be told from a climb."""
    start = demo.samples[0][0]
    rows = [f"{t - start:.1f},{rss:.2f},{cpu_s:.2f},{history:.2f},{anon:.2f}" for t, rss, cpu_s, history, anon
            in demo.samples]
    path.write_text("elapsed_s,rss_mb,cpu_s,history_mb,anon_mb\n" + "\n".join(rows) + "\n")


def log_problems(demo: Demo) -> list[str]:
    lines = demo.log.read_text(errors="replace").splitlines()
    return [line[:200] for line in lines if " ERROR " in line or line.startswith("Traceback") or "Exception" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: a sixth of the run, at most 5")
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--whatif-every-s", type=float, default=60.0)
    parser.add_argument("--history-every-s", type=float, default=3.0)
    parser.add_argument("--sample-every-s", type=float, default=10.0)
    parser.add_argument("--clients", type=lambda text: text.split(","), default=list(CLIENT_KINDS),
                        help=f"the load run's client kinds, comma-separated (to tell which one grows memory); "
                             f"default: all of {','.join(CLIENT_KINDS)}")
    parser.add_argument("--physics", action="store_true", help="both demos run the plant on physics (twin demo "
                        "--physics)")
    parser.add_argument("--logs", help="folder for the demos' logs and the work folder (default: temporary)")
    args = parser.parse_args()
    if unknown := set(args.clients) - set(CLIENT_KINDS):
        parser.error(f"--clients: unknown kind(s) {', '.join(sorted(unknown))}; known: {', '.join(CLIENT_KINDS)}")
    warmup_minutes = args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes / 6)
    logs = Path(args.logs or tempfile.mkdtemp(prefix="twin-soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    workdir = logs / "work"

    loaded = start_demo("load", workdir, logs, args.physics)
    try:
        wait_healthy(loaded)  # it builds the sample factory; the idle demo then finds it built
        idle = start_demo("idle", workdir, logs, args.physics)
        try:
            wait_healthy(idle)
            print(f"soak: load demo at {loaded.url} (pid {loaded.process.pid}), idle demo at {idle.url} "
                  f"(pid {idle.process.pid}); {args.minutes:g} min, logs in {logs}", flush=True)
            load = asyncio.run(soak(loaded, idle, args))
        finally:
            stop_demo(idle)
    finally:
        stop_demo(loaded)

    rows = [memory(loaded, warmup_minutes * 60), memory(idle, warmup_minutes * 60)]
    health = np.array(load.health_ms or [float("nan")])
    rows[0].update(
        viewers=load.viewers, frames_per_viewer_min=min(load.frames, default=0), frames_per_viewer_mean=round(
            float(np.mean(load.frames or [0])), 1), resyncs=load.resyncs,
        http_5xx=sum(n for code, n in load.status.items() if code >= 500), errors=len(load.errors),
        whatif_done=load.whatif_done, whatif_p50_s=round(float(np.median(load.whatif_s)), 1) if load.whatif_s else None,
        history_queries=load.history_queries, health_p50_ms=round(float(np.percentile(health, 50)), 1),
        health_p99_ms=round(float(np.percentile(health, 99)), 1))
    for row, demo in zip(rows, (loaded, idle), strict=True):
        row["log_errors"] = len(log_problems(demo))
        write_samples(demo, logs / f"samples-{demo.name}.csv")
    for message in load.errors[:10]:
        print(f"  error: {message}")
    for demo in (loaded, idle):
        for line in log_problems(demo)[:10]:
            print(f"  {demo.name} log: {line}")
    for row in rows:
        print(f"{row['server']:>5}: RSS {row['rss_start_mb']} -> {row['rss_end_mb']} MB (growth {row['growth_mb']} MB, "
              f"slope after {warmup_minutes:g} min warm-up {row['slope_mb_per_h']} MB/h), CPU {row['cpu_percent']} %, "
              f"anonymous {row['anon_start_mb']} -> {row['anon_end_mb']} MB ({row['anon_slope_mb_per_h']} MB/h), "
              f"history {row['history_mb']} MB ({row['history_mb_per_h']} MB/h), "
              f"log errors {row['log_errors']}")
    load_row = rows[0]
    print(f" load: {load.viewers} viewers, {load_row['frames_per_viewer_mean']} frames each (min "
          f"{load_row['frames_per_viewer_min']}), {load.resyncs} resyncs; {load.whatif_done} what-if studies; "
          f"{load.history_queries} history queries; 5xx {load_row['http_5xx']}, errors {load_row['errors']}; "
          f"/api/health p50 {load_row['health_p50_ms']} ms, p99 {load_row['health_p99_ms']} ms")
    slope = load_row["slope_mb_per_h"]
    print(json.dumps({
        "bench": "soak", "machine": cpu(), "minutes": args.minutes, "clients": args.clients, "physics": args.physics,
        "warmup_minutes": warmup_minutes, "rows": rows,
        "ratios": {"slope_load_minus_idle_mb_per_h": round(slope - rows[1]["slope_mb_per_h"], 2),
                   "slope_vs_target": round(slope / TARGET_MB_PER_H, 3)},
        "target": {"slope_mb_per_h_below": TARGET_MB_PER_H,
                   "met": bool(slope < TARGET_MB_PER_H and load_row["http_5xx"] == 0 and load_row["errors"] == 0
                               and load_row["log_errors"] == 0)}}))


if __name__ == "__main__":
    main()
