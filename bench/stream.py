"""Live stream: 10,000 moving transforms and 5,000 changing signals at 30 Hz to 1, 10 and 100 clients.

The server is the twin's own (`create_app`, uvicorn, binary protocol) in its own process, with a twin
whose every transform and signal changes on every 30 Hz tick (the worst case: nothing coalesces). The
clients run in a second process on the same machine: lean websocket readers on loopback (frame
boundaries, each frame's header and first signal age) that count frames, bytes and latency (a signal's source time
to the frame's arrival). Server CPU is read from /proc. The peer is the same frame encoded as plain
JSON (`/ws?format=json`, twin/stream.py), measured on the same cache in the same run: bytes and encode
time. Last line: one JSON object (../shared/README.md).

    python bench/stream.py [--seconds 8] [--clients 1,10,100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from machine import cpu, cpu_seconds  # bench/machine.py: scripts run as `python bench/NAME.py`

TRANSFORMS = 10_000
SIGNALS = 5_000
TICK_HZ = 30.0


def bench_twin(layout: Path):
    """A twin whose 10,000 transforms and 5,000 signals all change every tick."""
    from twin.sim.runtime import Twin

    class MovingTwin(Twin):
        def __init__(self, path):
            super().__init__(path)
            cache = self.cache
            self.signal_rows = np.array([cache.add_signal(f"/Factory/Cell{i // 50}/Sensor{i % 50}", "twin:value",
                                                          unit="mm") for i in range(SIGNALS)])
            self.transform_rows = np.array([cache.add_transform(f"/Factory/Robot{i // 10}/link_{i % 10}")
                                            for i in range(TRANSFORMS)])
            self.matrices = np.tile(np.eye(4), (TRANSFORMS, 1, 1))
            self.phase = np.random.default_rng(0).uniform(0, 2 * np.pi, TRANSFORMS)
            self.tick = 0

        def step(self) -> None:
            self.tick += 1
            angle = self.phase + self.tick * 0.05
            self.matrices[:, 0, 0] = self.matrices[:, 1, 1] = np.cos(angle)
            self.matrices[:, 0, 1] = -np.sin(angle)
            self.matrices[:, 1, 0] = np.sin(angle)
            self.matrices[:, 0, 3] = np.cos(angle) * 0.5
            self.cache.write_transforms(self.transform_rows, self.matrices, only_changed=False)
            self.cache.write_scalars(self.signal_rows, np.sin(angle[:SIGNALS]) * 100.0)  # source time: now

    return MovingTwin(layout)


def serve(port: int) -> None:
    import uvicorn

    from twin.scenes.layout import new_layout
    from twin.server.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        stage = new_layout(Path(folder) / "empty.usda")
        stage.GetRootLayer().Save()
        twin = bench_twin(Path(folder) / "empty.usda")
        app = create_app(twin, tick_hz=TICK_HZ)
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                      ws="websockets-sansio", ws_max_size=1 << 20,
                                      ws_per_message_deflate=False)).run()  # as `twin serve` runs it


class _RawClient(asyncio.Protocol):
    """A lean websocket reader (RFC 6455, server frames are unmasked): it only finds message boundaries
    and reads each frame's header and first signal age, so the measuring side costs little CPU and the
    server, not the harness, is what gets measured."""

    def __init__(self, on_message):
        self.on_message = on_message
        self.buffer = bytearray()
        self.handshaken = False
        self.message = bytearray()
        self.opened = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshaken:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buffer[:end]:
                raise RuntimeError(bytes(self.buffer[:end]).decode(errors="replace"))
            del self.buffer[:end + 4]
            self.handshaken = True
            self.opened.set_result(None)
        while len(self.buffer) >= 2:
            fin, opcode, length = self.buffer[0] & 0x80, self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, start = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, start = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < start + length:
                return
            self.message += self.buffer[start:start + length]
            del self.buffer[:start + length]
            if fin:
                if opcode in (0x2, 0x0):
                    self.on_message(bytes(self.message))
                self.message.clear()


async def client_run(url: str, clients: int, seconds: float, warmup: float) -> dict:
    """`clients` connections reading every frame; frames, bytes and latencies inside the window."""
    from twin.stream.protocol import HEADER

    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    started = time.time()
    window = (started + warmup, started + warmup + seconds)
    counts = [0] * clients
    sizes: list[int] = []
    latencies: list[float] = []

    def handler(index: int):
        def on_message(message: bytes) -> None:
            now = time.time()
            if not window[0] <= now <= window[1] or message[:4] != b"TWIN":
                return
            counts[index] += 1
            header = HEADER.unpack_from(message)
            n_t, n_s = header[7], header[8]
            offset = HEADER.size
            for size in (4 * n_t, 12 * n_t, 8 * n_t, 9 * n_s):  # rows, positions, quaternions; signal heads
                offset += size
                offset += (-offset) % 8
            if n_s:
                age = float(np.frombuffer(message, np.float32, 1, offset)[0])
                latencies.append(now - header[6] + age)
            if index == 0:
                sizes.append(len(message))
        return on_message

    loop = asyncio.get_running_loop()
    transports = []
    for index in range(clients):
        transport, protocol = await loop.create_connection(lambda i=index: _RawClient(handler(i)), host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await protocol.opened
        transports.append(transport)
    await asyncio.sleep(max(0.0, window[1] - time.time()))
    for transport in transports:
        transport.close()
    return {"frames": counts, "sizes": sizes, "latencies": latencies}


async def measured(server_pid: int, port: int, clients: int, seconds: float, warmup: float):
    """The clients' results, and (server CPU s, wall time, client CPU s) when the window opened."""
    task = asyncio.create_task(client_run(f"ws://127.0.0.1:{port}/ws", clients, seconds, warmup))
    await asyncio.sleep(warmup)
    before = (cpu_seconds(server_pid), time.time(), cpu_seconds(os.getpid()))
    return await task, before


def peer_encoding() -> tuple[float, float, float, float]:
    """(binary bytes, binary encode ms, JSON bytes, JSON encode ms) of one full delta frame."""
    from twin.scenes.layout import new_layout
    from twin.stream.frames import build_frame
    from twin.stream.protocol import Scope, encode_frame

    with tempfile.TemporaryDirectory() as folder:
        stage = new_layout(Path(folder) / "empty.usda")
        stage.GetRootLayer().Save()
        twin = bench_twin(Path(folder) / "empty.usda")
        twin.step()
        base = twin.cache.version
        binary, json_ = [], []
        for _ in range(10):
            twin.step()
            t0 = time.perf_counter()
            data, _ = encode_frame(twin.cache, base, Scope())
            t1 = time.perf_counter()
            frame, _ = build_frame(twin.cache, base, 1)
            text = json.dumps(frame, separators=(",", ":"), allow_nan=False)
            t2 = time.perf_counter()
            binary.append((len(data), t1 - t0))
            json_.append((len(text.encode()), t2 - t1))
            base = twin.cache.version
    return (float(np.median([b for b, _ in binary])), 1000 * float(np.median([t for _, t in binary])),
            float(np.median([b for b, _ in json_])), 1000 * float(np.median([t for _, t in json_])))


def machine() -> str:
    return cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="1,10,100")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    from tests.helpers import free_port

    binary_bytes, binary_ms, json_bytes, json_ms = peer_encoding()
    print(f"machine: {machine()}; {TRANSFORMS:,} transforms + {SIGNALS:,} signals changing at {TICK_HZ:g} Hz")
    print(f"one full delta: binary {binary_bytes / 1e3:,.0f} kB in {binary_ms:.1f} ms; "
          f"JSON {json_bytes / 1e3:,.0f} kB in {json_ms:.1f} ms", flush=True)
    rows = []
    for clients in (int(c) for c in args.clients.split(",")):
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=os.environ)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the benchmark server did not start") from None
                    time.sleep(0.2)
            warmup = 3.0 if clients < 100 else 6.0

            result, cpu_before = asyncio.run(measured(server.pid, port, clients, args.seconds, warmup))
            server_cpu = (cpu_seconds(server.pid) - cpu_before[0]) / (time.time() - cpu_before[1])
            client_cpu = (cpu_seconds(os.getpid()) - cpu_before[2]) / (time.time() - cpu_before[1])
            with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
                stream = json.load(response)["stream"]
        finally:
            server.terminate()
            server.wait(10)
        fps = np.array(result["frames"]) / args.seconds
        latency = np.array(result["latencies"]) * 1000
        row = {
            "clients": clients, "fps_per_client": round(float(fps.mean()), 1),
            "min_fps_client": round(float(fps.min()), 1),
            "p50_ms": round(float(np.percentile(latency, 50)), 1) if len(latency) else None,
            "p99_ms": round(float(np.percentile(latency, 99)), 1) if len(latency) else None,
            "bytes_per_frame": int(np.median(result["sizes"])) if result["sizes"] else None,
            "peer_bytes_per_frame": int(json_bytes),
            "encode_ms": round(stream["encode_ms_total"] / max(1, stream["encodes"]), 2),
            "peer_encode_ms": round(json_ms, 1),
            "server_cpu_cores": round(server_cpu, 2), "client_cpu_cores": round(client_cpu, 2),
        }
        rows.append(row)
        print(f"{clients:>4} clients: {row['fps_per_client']:5.1f} fps/client (min {row['min_fps_client']}), "
              f"latency p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms, {row['bytes_per_frame'] or 0:,} B/frame "
              f"(JSON {row['peer_bytes_per_frame']:,}), encode {row['encode_ms']} ms (JSON {row['peer_encode_ms']}), "
              f"server CPU {row['server_cpu_cores']}, clients CPU {row['client_cpu_cores']}", flush=True)
    print(json.dumps({"bench": "stream", "machine": machine(), "rows": rows}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
