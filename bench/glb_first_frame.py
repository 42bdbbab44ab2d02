"""GLB size and the viewer's time to first frame in headless Debian chromium, for GLBs built from stages.

Scenes: the sample factory's GLB; and a robot cell of 12 references to the sample factory's Robot1, once
instanceable (meshes shared in the GLB) and once as plain references (copies). Every page is served the
sample factory's twin (the stream is the same); only `/scene.glb` differs. Time to first frame: from
navigation start to two animation frames after the viewer has the GLB's nodes (the model is drawn on the first).
Extra GLBs to compare (an older exporter's, say): `--glb NAME=PATH`. Last line: one JSON object.

    python bench/glb_first_frame.py [--runs 3] [--glb before=/tmp/factory-old.glb]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from pxr import Gf, Usd, UsdGeom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CELL_ROBOTS = 12


def robot_cell(layout: Path, out: Path, instanceable: bool) -> Path:
    """A Z-up layout of CELL_ROBOTS references to the sample factory's Robot1, instanceable or not."""
    stage = Usd.Stage.CreateNew(str(out))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/Cell").GetPrim())
    for i in range(CELL_ROBOTS):
        robot = UsdGeom.Xform.Define(stage, f"/Cell/Robot{i}")
        robot.AddTranslateOp().Set(Gf.Vec3d(2.5 * (i % 4), 2.5 * (i // 4), 0.0))
        robot.GetPrim().GetReferences().AddReference(str(layout), "/Factory/Line/Robot1")
        robot.GetPrim().SetInstanceable(instanceable)
    stage.Save()
    return out


def first_frame_s(url: str, root: str) -> tuple[float, float]:
    """Seconds from navigation start to the first frame with the model; and of those, the GLB's share: from
    the page's script being up (`window.twin`, after the renderer and its environment map) to that frame."""
    from playwright.sync_api import sync_playwright

    from tests.helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        page.goto(url)
        page.wait_for_function("window.twin !== undefined", polling=20, timeout=180_000)
        script_up = page.evaluate("performance.now()") / 1000.0
        page.wait_for_function(f"window.twin.worldMatrix({root!r}) !== null", polling=20, timeout=180_000)
        # the model is drawn on the animation frame after it loaded: two frames on, it has been
        drawn = page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame("
                              "() => done(performance.now()))))") / 1000.0
        browser.close()
    return drawn, drawn - script_up


def gltf_json(glb: Path) -> dict:
    data = glb.read_bytes()
    return json.loads(data[20:20 + int.from_bytes(data[12:16], "little")])


def root_node(glb: Path) -> str:
    """The first node named by a prim path: the viewer indexes it once the GLB is loaded."""
    return next(node["name"] for node in gltf_json(glb)["nodes"] if node.get("name", "").startswith("/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--glb", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()

    from tests.helpers import serve_app
    from twin.sample_factory.scene import build_sample_factory
    from twin.scenes.gltf import export_glb
    from twin.server.app import create_app
    from twin.sim.runtime import Twin

    with tempfile.TemporaryDirectory() as folder:
        layout = build_sample_factory(Path(folder))
        glbs = {"sample factory": layout.with_suffix(".glb")}
        for instanceable in (False, True):
            cell = robot_cell(layout, Path(folder) / f"cell-{instanceable}.usda", instanceable)
            name = f"robot cell x{CELL_ROBOTS}, " + ("instanceable" if instanceable else "copies")
            glbs[name] = export_glb(cell, cell.with_suffix(".glb"))
        glbs.update({name: Path(path) for name, path in (item.split("=", 1) for item in args.glb)})
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in glbs}
        for _ in range(args.runs):  # alternate the scenes so a busy machine slows them alike
            for name, glb in glbs.items():
                with serve_app(create_app(Twin(layout), glb_path=glb, tick_hz=10)) as url:
                    times[name].append(first_frame_s(url, root_node(glb)))
        rows = []
        for name, glb in glbs.items():
            gltf = gltf_json(glb)
            total, glb_share = (round(statistics.median(run[i] for run in times[name]), 2) for i in (0, 1))
            rows.append({"scene": name, "glb_bytes": glb.stat().st_size, "nodes": len(gltf["nodes"]),
                         "meshes": len(gltf.get("meshes", [])), "first_frame_s_median": total,
                         "glb_load_and_draw_s_median": glb_share, "runs": times[name]})
            print(f"{name:45s} {rows[-1]['glb_bytes']:>10,d} B {rows[-1]['meshes']:4d} meshes  first frame "
                  f"{total:.2f} s, GLB load + draw {glb_share:.2f} s", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
