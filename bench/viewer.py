"""The viewer in headless Debian chromium: main-thread cost of applying a frame's parts, and frames rendered.

Two scenes: the sample factory run by `twin demo` (PLC, connector, simulation), and a stress scene (the
sample factory's layout with 5,000 parts moving on every 30 Hz tick). In the page: the time to write
a frame's parts into the instanced mesh (`twin.partsApplyHistory`, decode excluded) and the frames the
viewer actually rendered per second (software WebGL: chromium here has no GPU). No peer: this measures
the page against the issue's budget (< 2 ms per frame of 5,000 parts). Last line: one JSON object.

    python bench/viewer.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRESS_PARTS = 5_000


def serve_stress(port: int, layout: Path) -> None:
    import uvicorn

    from twin.core.cache import InstanceSet
    from twin.server.app import create_app
    from twin.sim.runtime import Twin

    class StressTwin(Twin):
        """The sample layout with 5,000 parts circling over the floor instead of the tracked ones."""

        def __init__(self, path):
            super().__init__(path)
            self.cache.instance_sets["parts"] = InstanceSet("parts", STRESS_PARTS)
            self.angle = np.linspace(0, 2 * np.pi, STRESS_PARTS, endpoint=False)
            self.radius = np.random.default_rng(0).uniform(1.0, 9.0, STRESS_PARTS)
            self.transforms = np.tile(np.eye(4), (STRESS_PARTS, 1, 1))
            self.active = np.ones(STRESS_PARTS, bool)

        def step(self) -> None:
            self.angle += 0.02
            self.transforms[:, 0, 3] = 10.0 + self.radius * np.cos(self.angle)
            self.transforms[:, 1, 3] = self.radius * np.sin(self.angle) * 0.35
            self.transforms[:, 2, 3] = 1.2
            self.cache.write_instances("parts", self.transforms, self.active)

    app = create_app(StressTwin(layout), glb_path=layout.with_suffix(".glb"), tick_hz=30)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio",
                                  ws_per_message_deflate=False)).run()


def wait_for(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {url} did not come up") from None
            time.sleep(0.3)


def measure_page(url: str, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        page.goto(url)
        page.wait_for_function("window.twin && window.twin.ready", timeout=120_000)
        page.wait_for_timeout(8000)  # the viewer settles its render quality to the machine first
        page.evaluate("window.twin.partsApplyHistory.length = 0")
        rendered, frames = page.evaluate("[window.twin.renderedFrames(), window.twin.frames]")
        page.wait_for_timeout(seconds * 1000)
        rendered2, frames2, applied, parts, quality = page.evaluate(
            "[window.twin.renderedFrames(), window.twin.frames, window.twin.partsApplyHistory,"
            " document.getElementById('parts-count').textContent, window.twin.quality().level]")
        browser.close()
    applied = np.array(applied or [np.nan])
    return {"rendered_fps": round((rendered2 - rendered) / seconds, 1),
            "stream_frames_per_s": round((frames2 - frames) / seconds, 1), "parts": int(parts),
            "parts_apply_ms_median": round(float(np.median(applied)), 3),
            "parts_apply_ms_p95": round(float(np.percentile(applied, 95)), 3), "apply_samples": int(len(applied)),
            "render_quality": quality}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stress", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stress:
        serve_stress(args.port, Path(args.stress))
        return
    from tests.helpers import free_port
    from twin.sample_factory.scene import build_sample_factory

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        layout = build_sample_factory(Path(folder))
        for scene in ("sample_factory", "stress_5000_parts"):
            port = free_port()
            if scene == "sample_factory":
                command = [sys.executable, "-m", "twin.cli", "demo", "--port", str(port), "--plc-port",
                           str(free_port()), "--workdir", folder]
            else:
                command = [sys.executable, __file__, "--stress", str(layout), "--port", str(port)]
            server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                wait_for(f"http://127.0.0.1:{port}", server)
                row = {"scene": scene, **measure_page(f"http://127.0.0.1:{port}/", args.seconds)}
            finally:
                server.terminate()
                server.wait(20)
            rows.append(row)
            print(f"{scene}: {row['rendered_fps']} fps rendered, {row['stream_frames_per_s']} stream frames/s, "
                  f"{row['parts']} parts, parts apply median {row['parts_apply_ms_median']} ms "
                  f"(p95 {row['parts_apply_ms_p95']} ms, {row['apply_samples']} frames), "
                  f"render quality {row['render_quality']}", flush=True)
    print(json.dumps({"bench": "viewer", "machine": "headless Debian chromium, software WebGL (SwiftShader), "
                      f"{os.cpu_count()} cores", "rows": rows}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
