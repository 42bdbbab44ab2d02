"""End to end: `twin demo` on free ports, the viewer in headless Debian chromium.

Checks what a plant engineer sees: robots move in the page, and a value shown in the
inspector is the value on the PLC's OPC-UA server. Saves a screenshot and the measured
figures (time to first frame, frame rate in the page, CPU use of the demo) as artefacts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asyncua import Client

from tests.helpers import BROWSER, free_port, stop_process, viewer_page, wait_for_health

pytestmark = [*BROWSER, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LINK = "/Factory/Line/Robot1/link_2"
COUNTER = "/Factory/Line/Machining.twin:partsDone"
COUNTER_NODE = "Line.Machining.PartsDone"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks -> seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def plc_children(pid: int) -> list[int]:
    """The children of `pid` that run the sample PLC."""
    found = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            if b"twin.sample_factory.plc" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


async def _read_counter(endpoint: str) -> int:
    async with Client(endpoint, timeout=5) as client:
        index = await client.get_namespace_index("urn:factory-twin:sample-plc")
        return int(await client.get_node(f"ns={index};s={COUNTER_NODE}").read_value())


def read_counter(endpoint: str) -> int:
    """Read the PLC directly, from a thread of its own (Playwright's sync API owns this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _read_counter(endpoint)).result(timeout=30)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, sample_layout):
    port, plc_port = free_port(), free_port()
    workdir = sample_layout.parent  # reuse the session's sample factory: the demo finds it up to date
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "demo", "--port", str(port), "--plc-port", str(plc_port),
         "--workdir", str(workdir)],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_health(url, process, 90):
            pytest.fail(f"the demo did not come up; its log:\n{log.read_text()}")
        yield {"url": url, "endpoint": f"opc.tcp://127.0.0.1:{plc_port}/factory/", "process": process,
               "started": started, "log": log}
    finally:
        if not stop_process(process, signal.SIGINT):
            pytest.fail("the demo did not stop within 20 s of Ctrl-C")
    assert process.returncode == 0, log.read_text()


def test_whatif_forks_from_the_live_plant(demo):
    """A what-if from the live state of the running demo: the PLC's signals are all good, so nothing
    is assumed away, and the predicted end-of-shift output starts from the sink's count now."""
    from twin import WhatIfClient

    # Runs before the viewer test, which kills the PLC to show stale values. The demo answers before its
    # connector has every first value: wait for all signals to be good, as a plant engineer would.
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(f"{demo['url']}/api/signals", timeout=5) as response:
            waiting = [key for key, signal in json.load(response).items() if signal["q"] != "good"]
        if not waiting:
            break
        assert time.monotonic() < deadline, f"signals still not good after 60 s: {waiting[:5]}"
        time.sleep(0.5)
    client = WhatIfClient(demo["url"])
    job = client.wait(client.start(replications=8, hours=0.5, start="live")["id"], timeout=120)
    live = job["result"]["live"]
    assert live["assumptions"] == [], live["assumptions"]
    assert live["sink_count"] > 0  # the demo's PLC warms up with parts already delivered
    kpis = job["result"]["points"][0]["kpis"]
    assert kpis["output_at_end"]["mean"] == pytest.approx(live["sink_count"] + kpis["parts_out"]["mean"])
    assert kpis["throughput_per_hour"]["mean"] > 100


def test_demo_keeps_history(demo):
    """The demo's historian stores the PLC's updates as they come: the counter's past is queryable."""
    time.sleep(2.0)
    now = time.time()
    query = f"key={urllib.parse.quote(COUNTER)}&start={now - 600}&end={now}"
    with urllib.request.urlopen(f"{demo['url']}/api/history/signal?{query}", timeout=10) as response:
        history = json.load(response)
    assert len(history["times"]) >= 1 and history["values"] == sorted(history["values"])  # a counter never falls
    with urllib.request.urlopen(f"{demo['url']}/api/history/state?at={now}", timeout=10) as response:
        state = json.load(response)
    assert state[COUNTER]["q"] == "good" and len(state) >= 40


def test_sdk_docs_and_readme_run_against_the_demo(demo, sample_layout, monkeypatch, capsys):
    """docs/sdk.md's examples, in order and in one namespace, with the operator token the demo printed."""
    token = re.search(r"operator token \(for POST /api/write\): (\S+)", demo["log"].read_text()).group(1)
    monkeypatch.setenv("TWIN_URL", demo["url"])
    monkeypatch.setenv("TWIN_TOKEN", token)
    monkeypatch.setenv("TWIN_LAYOUT", str(sample_layout))
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), re.S)
    assert len(blocks) >= 10
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/sdk.md block {number}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"docs/sdk.md block {number} failed: {error!r}\n{block}") from error
    printed = capsys.readouterr().out
    assert "refused: BadOutOfRange" in printed and "GET /api/signals: 404 no signal" in printed
    assert namespace["result"]["status"] == "Good"  # the speed setpoint reached the PLC

    # The README's ten lines, with the names they leave to the reader: the token, a time range, a target.
    readme = re.search(r"## The SDK in ten lines\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    code = readme.group(1).replace("http://127.0.0.1:8000", demo["url"])
    assert len(code.strip().splitlines()) <= 12
    now = time.time()
    given = {"TOKEN": token, "t0": now - 60, "t1": now, "target": namespace["target"]}
    exec(compile(code, "README.md", "exec"), given)
    assert given["solution"].success.all() and len(given["study"]["result"]["points"]) == 2
    assert list(given["temperature"].columns) == ["value", "status"]


def test_viewer_shows_the_live_factory(demo, artifacts):
    figures: dict[str, float] = {}
    with viewer_page(demo["url"]) as page:
        figures["first_frame_s"] = round(time.monotonic() - demo["started"], 2)

        # a robot link moves in the page
        first = page.evaluate(f"window.twin.worldMatrix({LINK!r})")
        assert first is not None, f"{LINK} is not in the page's scene"
        moved = False
        for _ in range(60):
            page.wait_for_timeout(500)
            now = page.evaluate(f"window.twin.worldMatrix({LINK!r})")
            if max(abs(a - b) for a, b in zip(first, now, strict=True)) > 1e-3:
                moved = True
                break
        assert moved, "Robot1's link_2 did not move in the page within 30 s"

        # the inspector shows the PLC's value
        page.evaluate("window.twin.select('/Factory/Line/Machining')")
        cell = page.locator(f'[data-signal-key="{COUNTER}"] .value')
        cell.wait_for(timeout=10_000)
        for _ in range(5):
            before = read_counter(demo["endpoint"])
            page.wait_for_timeout(400)  # longer than a stream frame plus the OPC-UA sampling interval
            shown = int(float(cell.text_content()))
            after = read_counter(demo["endpoint"])
            if before == after:
                break
        assert before <= shown <= after, f"page shows {shown}, server had {before} then {after}"
        assert shown == before or before != after

        # frame rate seen in the page, and the demo's CPU use in steady state
        frames_before = page.evaluate("window.twin.frames")
        pids = [demo["process"].pid, *children(demo["process"].pid)]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        wall_before = time.monotonic()
        ages = []  # s, how old the newest frame the page applied is, sampled between its renders
        for _ in range(10):
            page.wait_for_timeout(1000)
            ages.append(page.evaluate("window.twin.frameAge()"))
        wall = time.monotonic() - wall_before
        figures["ws_frames_per_s_in_page"] = round((page.evaluate("window.twin.frames") - frames_before) / wall, 1)
        figures["shown_frame_age_s"] = {"median": round(statistics.median(ages), 3), "max": round(max(ages), 3)}
        figures["demo_cpu_cores"] = round((sum(cpu_seconds(pid) for pid in pids) - cpu_before) / wall, 3)
        page.screenshot(path=str(artifacts / "viewer.png"))

        # the plant at a glance: KPIs, a coloured lamp per machine, sparklines of recent values
        for kpi in ("kpi-throughput", "kpi-wip", "kpi-oee"):
            assert page.text_content(f"#{kpi}") not in ("", "—"), kpi
        lamps = page.evaluate("window.twin.lamps()")
        machines = {lamp["path"]: lamp for lamp in lamps}
        assert {"/Factory/Line/Machining", "/Factory/Line/Robot1", "/Factory/Line/Conveyor1"} <= set(machines)
        assert all(lamp["visible"] and lamp["badge"] is None for lamp in lamps), lamps
        assert page.evaluate(f"window.twin.history.series({COUNTER!r})[0].length") >= 2
        assert page.locator(f'[data-signal-key="{COUNTER}"] canvas.sparkline').count() == 1

        # the PLC goes away: the page shows its values as stale, not as live
        badge = page.locator(f'[data-signal-key="{COUNTER}"] .badge')
        assert badge.text_content() == "good"
        for pid in children(demo["process"].pid):
            os.kill(pid, signal.SIGKILL)
        page.wait_for_function(
            f"document.querySelector('[data-signal-key=\"{COUNTER}\"] .badge').textContent === 'stale'",
            timeout=15_000)
        page.wait_for_function("window.twin.lamps().some((lamp) => lamp.badge === 'stale')", timeout=10_000)
        page.wait_for_function(
            "window.twin.alarms().some((alarm) => (alarm.text ?? alarm.message).includes('is not connected'))",
            timeout=15_000)
        assert int(page.text_content("#alarms .number")) >= 2
        page.click("#alarms")
        page.screenshot(path=str(artifacts / "viewer-stale.png"))
    (artifacts / "e2e_figures.json").write_text(json.dumps(figures, indent=2))
    print("e2e figures:", json.dumps(figures))
    assert figures["ws_frames_per_s_in_page"] > 15  # the PLC publishes at 20 Hz; each cycle is a frame
    # however slowly the page renders, what it shows is the newest state, not a frame from a backlog
    assert figures["shown_frame_age_s"]["median"] < 1.0, figures
    assert figures["demo_cpu_cores"] < 1.0, "the demo should use less than one core in steady state"


def test_snapshot_command_saves_the_live_state_as_usd(demo, tmp_path):
    from pxr import Sdf, Usd

    out = tmp_path / "state.usda"
    result = subprocess.run([sys.executable, "-m", "twin.cli", "snapshot", str(out), "--url", demo["url"]],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    layer = Sdf.Layer.FindOrOpen(str(out))
    assert layer.GetAttributeAtPath(f"{LINK}.xformOp:transform") is not None  # a live pose, in its own layer
    assert layer.GetAttributeAtPath(f"{COUNTER}") is not None
    stage = Usd.Stage.Open(str(out))  # the snapshot sublayers the authored layout
    assert stage.GetPrimAtPath("/Factory/Line/Robot2").GetAttribute("twin:kind").Get() == "robot"
    assert stage.GetPrimAtPath("/Factory/Line/Machining").GetAttribute("twin:partsDone").Get() >= 0


def test_sigterm_stops_the_demo_and_its_plc(sample_layout):
    process = subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "demo", "--port", str(free_port()), "--workdir", str(sample_layout.parent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not plc_children(process.pid):  # other children may come and go at start-up
            assert time.monotonic() < deadline and process.poll() is None, "the demo did not start its PLC"
            time.sleep(0.2)
        time.sleep(3)  # let it come up fully
        [plc] = plc_children(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        deadline = time.monotonic() + 10
        while Path(f"/proc/{plc}").exists() and "zombie" not in Path(f"/proc/{plc}/status").read_text():
            assert time.monotonic() < deadline, "the PLC outlived the demo"
            time.sleep(0.1)
    finally:  # a failed assertion must not leave the demo and its PLC running
        if process.poll() is None:
            process.kill()
            process.wait(10)
