"""End to end on physics: `twin demo --physics` in headless Debian chromium, parts landing in the sink's bin.

The demo's simulated PLC runs the line on physics and publishes every part's pose; the twin mirrors it, so the
page draws the parts where the plant's physics has them (docs/physics.md, "The demo runs on physics").

What is checked is what the page draws: the viewer's `parts` instances, read from its three.js scene, against
the bin's bounds and the belts' height read from the layout's USD, and against the bin as the page renders it.
The page's count of parts into the sink (its stream) and the server's (REST) are checked against what it draws.
Saves tests/artifacts/physics-bin.png (the camera on the bin, framed as a user does: select, Focus, orbit) and
physics-bin.json (the figures).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import BROWSER, free_port, stop_process, viewer_page, wait_for_health

pytestmark = [*BROWSER, pytest.mark.slow, pytest.mark.timeout(360)]

PARTS_IN = "twin:partsIn"  # the PLC's Line.Sink.PartsIn, counted by its physics
# The PLC warms up 120 s of plant time on physics; seed 1's first part lands in the bin at about 102 s of it, so
# parts lie in the bin when the page opens. Seconds after the page is ready for one to be seen at rest there:
FIRST_AT_REST_S = 60.0
REST_S = 2.0  # a part counts as at rest when it moved under REST_MM between two looks this far apart
REST_MM = 2.0
INSIDE_MM = 5.0  # tolerance of "inside the bin's box": MuJoCo's soft contacts let a corner sink a few mm

# The page's part instances, read from its three.js scene: the `parts` InstancedMesh (world poses in the USD
# frame, column-major 4x4) and, for each, whether its rendered centre lies in the bin's rendered box.
PAGE_PARTS = """([binPath, sinkKey]) => {
  const bin = window.twin.objects.get(binPath);
  if (!bin?.geometry) throw new Error(`${binPath} is not a mesh in the page's scene`);
  let scene = bin;
  while (scene.parent) scene = scene.parent;
  scene.updateMatrixWorld();
  const parts = scene.getObjectByName('parts');
  if (!bin.geometry.boundingBox) bin.geometry.computeBoundingBox();
  const binBox = bin.geometry.boundingBox.clone().applyMatrix4(bin.matrixWorld);
  const rendered = new parts.matrixWorld.constructor();
  const inRenderedBin = [];
  for (let i = 0; i < parts.count; i++) {
    const e = rendered.fromArray(parts.instanceMatrix.array, 16 * i).premultiply(parts.matrixWorld).elements;
    inRenderedBin.push(binBox.containsPoint({ x: e[12], y: e[13], z: e[14] }));
  }
  return {
    matrices: Array.from(parts.instanceMatrix.array.slice(0, 16 * parts.count)),
    inRenderedBin,
    partsIn: window.twin.signals.get(sinkKey)?.v ?? null,
  };
}"""
# Pixels of the parts' teal (0x2dd4bf, lit) in a PNG of the 3D view, counted by the page's own image decoder.
PART_PIXELS = """async (png) => {
  const image = new Image();
  image.src = `data:image/png;base64,${png}`;
  await image.decode();
  const canvas = Object.assign(document.createElement('canvas'), { width: image.width, height: image.height });
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i + 1] - data[i] > 80 && data[i + 2] - data[i] > 60) count++;
  return count;
}"""


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def find_kind(node: dict, kind: str) -> list[str]:
    """Paths of the /api/scene tree's prims of a twin:kind."""
    found = [node["path"]] if node["kind"] == kind else []
    return found + [path for child in node["children"] for path in find_kind(child, kind)]


def layout_geometry(layout: Path, bin_path: str) -> dict:
    """From the layout's USD: the bin's world box, the lowest belt top (collision boxes of role `belt`), and
    the part's edge (the conveyors' twin:partLength)."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(layout))
    bounds = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_, UsdGeom.Tokens.guide])
    bin_prim = stage.GetPrimAtPath(bin_path)
    assert bin_prim.IsValid(), f"{layout}: no bin at {bin_path}"
    box = bounds.ComputeWorldBound(bin_prim).ComputeAlignedRange()
    belt_tops = [bounds.ComputeWorldBound(prim).ComputeAlignedRange().GetMax()[2] for prim in stage.Traverse()
                 if prim.GetAttribute("twin:physics:role").Get() == "belt"]
    part_sizes = {prim.GetAttribute("twin:partLength").Get() for prim in stage.Traverse()
                  if prim.GetAttribute("twin:kind").Get() == "conveyor"}
    assert belt_tops and len(part_sizes) == 1, f"{layout}: belts {belt_tops}, part lengths {part_sizes}"
    return {"bin_min": list(box.GetMin()), "bin_max": list(box.GetMax()), "belt_top": min(belt_tops),
            "part": part_sizes.pop()}


def in_bin(matrices: list[float], geometry: dict) -> np.ndarray:
    """Indices of the drawn parts whose eight corners all lie inside the bin's box and below the lowest belt."""
    transforms = np.asarray(matrices, dtype=float).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major -> rows
    half = geometry["part"] / 2
    offsets = half * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    corners = transforms[:, None, :3, 3] + np.einsum("nij,kj->nki", transforms[:, :3, :3], offsets)
    tolerance = INSIDE_MM / 1000
    inside = np.all((corners >= np.asarray(geometry["bin_min"]) - tolerance)
                    & (corners <= np.asarray(geometry["bin_max"]) + tolerance), axis=(1, 2))
    fell = np.all(corners[..., 2] < geometry["belt_top"], axis=1)
    return np.flatnonzero(inside & fell)


def centres(matrices: list[float], indices: np.ndarray) -> np.ndarray:
    return np.asarray(matrices, dtype=float).reshape(-1, 16)[indices, 12:15]


def test_physics_demo_parts_come_to_rest_in_the_bin(tmp_path, artifacts, sample_layout):
    port, plc_port = free_port(), free_port()
    log, workdir = tmp_path / "demo.log", tmp_path / "workdir"
    workdir.mkdir()
    for built in (sample_layout, sample_layout.with_suffix(".glb")):  # the session's build, which the demo
        shutil.copy2(built, workdir / built.name)  # finds up to date (mtimes kept): its own workdir, no rebuild
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "demo", "--physics", "--port", str(port), "--plc-port", str(plc_port),
         "--workdir", str(workdir)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,  # its own process group
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_health(url, process, 90), f"the demo did not come up; its log:\n{log.read_text()}"
        [sink] = find_kind(get_json(f"{url}/api/scene"), "sink")
        bin_path, sink_key = f"{sink}/Bin", f"{sink}.{PARTS_IN}"
        geometry = layout_geometry(Path(get_json(f"{url}/api/health")["layout"]), bin_path)

        with viewer_page(url, ready_s=90) as page:
            first_seen = resting = None
            deadline = time.monotonic() + FIRST_AT_REST_S
            while resting is None:
                waited = time.monotonic() - deadline + FIRST_AT_REST_S
                assert time.monotonic() < deadline, (
                    f"no part came to rest in the page's bin within {FIRST_AT_REST_S} s of the page; "
                    f"the demo's log ends:\n{log.read_text()[-3000:]}")
                before = page.evaluate(PAGE_PARTS, [bin_path, sink_key])
                landed = in_bin(before["matrices"], geometry)
                if len(landed) == 0:
                    page.wait_for_timeout(1000)
                    continue
                first_seen = first_seen or {"page_s": round(waited, 1), "wall_s": round(time.monotonic() - started, 1)}
                page.wait_for_timeout(REST_S * 1000)
                after = page.evaluate(PAGE_PARTS, [bin_path, sink_key])
                now = in_bin(after["matrices"], geometry)
                moved = np.linalg.norm(centres(after["matrices"], now)[:, None] -
                                       centres(before["matrices"], landed)[None], axis=2).min(axis=1, initial=1.0)
                if np.any(moved < REST_MM / 1000):
                    resting = now[moved < REST_MM / 1000]
            rested_at = round(time.monotonic() - started, 1)

            # what the page draws in the bin is inside the bin it renders too (the stage frame applied)
            assert all(after["inRenderedBin"][i] for i in now), after["inRenderedBin"]
            # counted into the sink by the PLC, as the page's stream and the server have it: at least the parts
            # lying there
            server_in = get_json(f"{url}/api/signals")[sink_key]["v"]
            assert after["partsIn"] is not None and len(now) <= after["partsIn"] <= server_in, (after, server_in)

            # the camera on the bin, as a user frames it: select it, Focus, orbit to look in from above
            page.evaluate(f"window.twin.select({bin_path!r})")
            page.click("#focus")
            page.evaluate("window.twin.select(null)")
            box = page.locator("#canvas").bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x, y + 120, steps=10)
            page.mouse.up()
            page.mouse.wheel(0, 200)  # a step back, the takeaway belt in view too
            page.wait_for_timeout(1500)
            page.screenshot(path=str(artifacts / "physics-bin.png"))
            view = base64.b64encode(page.locator("#canvas").screenshot()).decode()
            part_pixels = page.evaluate(PART_PIXELS, view)
            assert part_pixels > 400, f"the view of the bin shows {part_pixels} pixels of parts"

        figures = {
            "first_part_in_bin_in_page": first_seen, "first_part_at_rest_in_page_wall_s": rested_at,
            "parts_in_bin_in_page": len(now), "parts_at_rest_in_page": len(resting),
            "part_pixels_in_view": part_pixels, "parts_in_page_stream": after["partsIn"], "parts_in_server": server_in,
            "part_centres_in_bin_m": np.round(centres(after["matrices"], now), 4).tolist(), **geometry,
        }
        (artifacts / "physics-bin.json").write_text(json.dumps(figures, indent=2))
        print("physics browser figures:", json.dumps(figures))
    finally:
        stop_process(process, group=True)  # the demo stops its PLC, which also watches the demo's pid
