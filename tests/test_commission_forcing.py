"""Faults on demand (issue 16, point 4) and the viewer in commissioning mode (point 5).

One lock-step line served in-process (twin.sdk.commission.LocalCommission); an asyncua client plays the
controller and reads what was forced. The REST API runs on the same event loop as the line, as
`twin commission` runs it; the browser test runs `twin commission` itself.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import uvicorn
from asyncua import Client, ua

from tests.helpers import BROWSER, free_port, stop_process, viewer_page, wait_for_health
from twin.commission.address import NAMESPACE
from twin.commission.feed import PlantFeed
from twin.sdk.commission import LocalCommission
from twin.sdk.remote import TwinClient
from twin.sdk.types import InvalidRequestError, NotFoundError

CYCLE_S = 0.05
C1 = "Line.Conveyors.Conveyor1"
MACHINING = "Line.Stations.Machining"


@pytest.fixture(scope="module")
def line(sample_layout) -> Iterator[LocalCommission]:
    with LocalCommission(sample_layout, port=free_port(), cycle_s=CYCLE_S, lockstep=True, watchdog_s=60.0,
                         user="tester") as served:
        yield served


@pytest.fixture(autouse=True)
def released(line) -> Iterator[None]:
    yield
    line.release()


def controller(line: LocalCommission, scenario) -> None:
    """Run `scenario(client, node, step)` as the control program would: an OPC-UA client of the line."""

    async def run():
        async with Client(line.endpoint) as client:
            ns = await client.get_namespace_index(NAMESPACE)
            simulation = client.get_node(f"ns={ns};s=Line.Simulation")
            step_method = client.get_node(f"ns={ns};s=Line.Simulation.Step")

            def node(name: str):
                return client.get_node(f"ns={ns};s={name}")

            async def step(cycles: int = 1) -> None:
                await simulation.call_method(step_method, ua.Variant(cycles, ua.VariantType.UInt32))

            await scenario(client, node, step)

    asyncio.run(run())


async def write(node, value, kind: ua.VariantType) -> None:
    await node.write_value(ua.DataValue(ua.Variant(value, kind)))


async def run_belt(node, speed: float = 0.3) -> None:
    await write(node(f"{C1}.Run"), True, ua.VariantType.Boolean)
    await write(node(f"{C1}.SpeedSetpoint"), speed, ua.VariantType.Double)


def test_forced_values_are_what_the_controller_reads_until_released(line):
    async def scenario(client, node, step):
        at_end, speed = node(f"{C1}.PartAtEnd"), node(f"{C1}.Speed")
        await step()
        assert await at_end.read_value() is False
        line.force(f"{C1}.PartAtEnd", True)
        line.force(f"{C1}.Speed", 0.42)
        assert await at_end.read_value() is True  # at once, without a step
        await step(3)
        assert await at_end.read_value() is True and await speed.read_value() == 0.42
        line.release(f"{C1}.PartAtEnd")
        assert await at_end.read_value() is False and await speed.read_value() == 0.42

    controller(line, scenario)


def test_stuck_input_holds_its_value_while_the_plant_moves_on(line):
    async def scenario(client, node, step):
        encoder = node(f"{C1}.Encoder")
        await run_belt(node)
        await step(2)
        held = await encoder.read_value()
        assert line.force(f"{C1}.Encoder", mode="stuck")["value"] == held
        await step(10)
        assert await encoder.read_value() == held
        line.release(f"{C1}.Encoder")
        assert await encoder.read_value() == held + 150  # 0.3 m/s x 10 cycles of 0.05 s, 1 count a mm

    controller(line, scenario)


def test_flicker_toggles_every_half_period_of_plant_time(line):
    async def scenario(client, node, step):
        eye = node(f"{C1}.PhotoEye")
        assert await eye.read_value() is False
        line.force(f"{C1}.PhotoEye", mode="flicker", period_s=4 * CYCLE_S)
        seen = [await eye.read_value()]
        for _ in range(7):
            await step()
            seen.append(await eye.read_value())
        assert seen == [True, True, False, False, True, True, False, False]

    controller(line, scenario)


def test_offline_input_reads_bad_until_released(line):
    async def scenario(client, node, step):
        at_start = node(f"{C1}.PartAtStart")
        line.force(f"{C1}.PartAtStart", mode="offline")
        await step()
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await at_start.read_value()
        assert refused.value.code == ua.StatusCodes.BadNoCommunication
        data = await at_start.read_data_value(raise_on_bad_status=False)
        assert data.StatusCode.value == ua.StatusCodes.BadNoCommunication
        line.release(f"{C1}.PartAtStart")
        assert isinstance(await at_start.read_value(), bool)

    controller(line, scenario)


def test_failed_drive_stands_though_commanded(line):
    async def scenario(client, node, step):
        speed, encoder = node(f"{C1}.Speed"), node(f"{C1}.Encoder")
        await run_belt(node)
        await step()
        assert await speed.read_value() == 0.3
        line.force(C1, mode="fail")
        before = await encoder.read_value()
        await step(5)
        assert await speed.read_value() == 0.0 and await encoder.read_value() == before
        assert await node(f"{C1}.Run").read_value() is True  # the controller's command stands
        line.release(C1)
        await step()
        assert await speed.read_value() == 0.3 and await encoder.read_value() > before

    controller(line, scenario)


def test_failed_station_faults_and_reset_clears_it_once_released(line):
    async def scenario(client, node, step):
        fault, state = node(f"{MACHINING}.Fault"), node(f"{MACHINING}.MachineryItemState.CurrentState")
        reset = node("Line.Reset")
        line.force(MACHINING, mode="fail")
        await step()
        assert await fault.read_value() is True and await state.read_value() == "OutOfService"
        await write(reset, True, ua.VariantType.Boolean)
        await step()
        assert await fault.read_value() is True  # no repair while failed on demand
        await write(reset, False, ua.VariantType.Boolean)
        line.release(MACHINING)
        await step()
        assert await fault.read_value() is True  # latched until the controller resets it
        await write(reset, True, ua.VariantType.Boolean)
        await step()
        await write(reset, False, ua.VariantType.Boolean)
        assert await fault.read_value() is False and await state.read_value() != "OutOfService"

    controller(line, scenario)


def test_release_all_lifts_every_force_and_the_audit_keeps_who_and_when(line):
    started = time.time()
    audited = len(line.audit())
    line.force(f"{C1}.PartAtEnd", True)
    line.force(f"{C1}.PhotoEye", mode="offline")
    line.force(C1, mode="fail")
    assert {force["node"] for force in line.forces()} == {f"{C1}.PartAtEnd", f"{C1}.PhotoEye", C1}
    assert sorted(line.release()) == sorted([f"{C1}.PartAtEnd", f"{C1}.PhotoEye", C1])
    assert line.forces() == [] and not line.server.plant.conveyors["Conveyor1"].drive_failed
    records = line.audit()[audited:]
    assert [(r["action"], r["node"], r["mode"]) for r in records[:3]] == [
        ("force", f"{C1}.PartAtEnd", "value"), ("force", f"{C1}.PhotoEye", "offline"), ("force", C1, "fail")]
    assert sorted(r["node"] for r in records[3:] if r["action"] == "release") == sorted(
        [f"{C1}.PartAtEnd", f"{C1}.PhotoEye", C1])
    assert all(r["user"] == "tester" and started <= r["time"] <= time.time() for r in records)


def test_forces_that_cannot_apply_are_refused_naming_the_node(line):
    refusals = [(f"{C1}.Run", {"value": True}, "is an output"),
                (f"{C1}.PartAtEnd", {"value": 1}, "Boolean input"),
                (f"{C1}.Encoder", {"value": -1}, "outside UInt32"),
                (f"{C1}.Speed", {"mode": "flicker", "period_s": 1.0}, "only a Boolean input can flicker"),
                (f"{C1}.PhotoEye", {"mode": "flicker", "period_s": CYCLE_S}, "at least two plant cycles"),
                (f"{C1}.PartAtEnd", {"mode": "stuck", "value": True}, "takes no value"),
                (f"{C1}.PartAtEnd", {"mode": "fail"}, "is a signal"),
                (C1, {"value": True}, "only mode is 'fail'"),
                ("Line.Simulation.CycleCount", {"value": 3}, "cannot be forced")]
    for node, options, message in refusals:
        with pytest.raises(InvalidRequestError, match=message) as refused:
            line.force(node, **options)
        assert node in str(refused.value)
    with pytest.raises(NotFoundError, match="Line.Conveyors.Nope"):
        line.force("Line.Conveyors.Nope.PartAtEnd", True)
    with pytest.raises(NotFoundError, match="is not forced"):
        line.release(f"{C1}.PartAtEnd")
    assert line.forces() == []


@pytest.fixture(scope="module")
def api(line, sample_layout) -> Iterator[dict]:
    """The twin's HTTP app on the line's own event loop, as `twin commission` serves it."""
    from twin.server.app import create_app
    from twin.server.auth import Access
    from twin.sim.runtime import Twin

    twin = Twin(sample_layout)
    access = Access(loopback_only=True)
    app = create_app(twin, access=access, commission=line.server)
    feed = PlantFeed(line.server.plant, twin.cache)
    port = free_port()
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))

    async def serve() -> asyncio.Task:
        return asyncio.create_task(http.serve())

    task = line.call(serve())
    deadline = time.monotonic() + 30
    while not http.started:
        assert time.monotonic() < deadline and not task.done(), "uvicorn did not start"
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "operator": access.issue("alice", "operator"), "twin": twin,
           "feed": feed}
    http.should_exit = True
    line.call(asyncio.wait_for(asyncio.shield(task), 10))


def test_rest_and_sdk_force_and_release_as_the_operator_with_an_audit(api, line):
    with TwinClient(api["url"], token=api["operator"]) as operator:
        forced = operator.force(f"{C1}.PartAtEnd", True)
        assert forced["user"] == "alice" and forced["mode"] == "value"
        operator.force(MACHINING, mode="fail")
        assert {force["node"] for force in operator.forces()} == {f"{C1}.PartAtEnd", MACHINING}
        io = operator._run(operator._async._call("GET", "/api/commission/io"))
        rows = {row["node"]: row for row in io["signals"]}
        assert rows[f"{C1}.PartAtEnd"]["value"] is True and rows[f"{C1}.PartAtEnd"]["forced"]["user"] == "alice"
        assert rows[f"{C1}.Run"]["direction"] == "output" and rows[f"{C1}.Run"]["forced"] is None
        assert {unit["node"]: unit["forced"] is not None for unit in io["units"]}[MACHINING] is True
        assert operator.release(f"{C1}.PartAtEnd") == [f"{C1}.PartAtEnd"]
        assert operator.release() == [MACHINING]
        audit = operator._run(operator._async._call("GET", "/api/commission/audit"))
        assert [(r["user"], r["action"], r["node"]) for r in audit[-4:]] == [
            ("alice", "force", f"{C1}.PartAtEnd"), ("alice", "force", MACHINING),
            ("alice", "release", f"{C1}.PartAtEnd"), ("alice", "release", MACHINING)]


def test_rest_refuses_bad_forces_with_422_and_unknown_nodes_with_404(api):
    import httpx

    headers = {"Authorization": f"Bearer {api['operator']}"}
    with httpx.Client(base_url=api["url"], headers=headers, timeout=10) as http:
        answer = http.post("/api/commission/forces", json={"node": f"{C1}.Run", "value": True})
        assert answer.status_code == 422 and f"{C1}.Run is an output" in answer.json()["detail"]
        answer = http.post("/api/commission/forces", json={"node": f"{C1}.PartAtEnd", "mode": "wobble"})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "mode"]
        answer = http.post("/api/commission/forces", json={"node": f"{C1}.PhotoEye", "mode": "flicker",
                                                             "period_s": -1})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "period_s"]
        answer = http.post("/api/commission/forces", json={"node": f"{C1}.Encoder", "value": 2**70})
        assert answer.status_code == 422
        answer = http.post("/api/commission/forces", json={"node": f"{C1}.Encoder", "value": 2**33})
        assert answer.status_code == 422 and "outside UInt32" in answer.json()["detail"]
        answer = http.post("/api/commission/forces", json={"node": "Line.Stations.Nope", "mode": "fail"})
        assert answer.status_code == 404 and "Line.Stations.Nope" in answer.json()["detail"]
        answer = http.delete(f"/api/commission/forces/{C1}.PartAtEnd")
        assert answer.status_code == 404 and f"{C1}.PartAtEnd is not forced" in answer.json()["detail"]
    with httpx.Client(base_url=api["url"], timeout=10) as anonymous:  # a viewer may look, not force
        assert anonymous.get("/api/commission/io").status_code == 200
        assert anonymous.post("/api/commission/forces", json={"node": f"{C1}.PartAtEnd", "value": True}
                              ).status_code in (401, 403)
        assert anonymous.get("/api/commission/audit").status_code in (401, 403)


def test_the_runtime_follows_the_simulated_line(api, line):
    async def scenario(client, node, step):
        await run_belt(node)
        await step(4)

    controller(line, scenario)
    cache, feed = api["twin"].cache, api["feed"]
    feed.write()
    row = cache.signal_row("/Factory/Line/Conveyor1", "twin:speed")
    assert cache.signal_value(row) == pytest.approx(0.3)
    state = cache.signal_row("/Factory/Line/Machining", "twin:state")
    assert cache.text[state] in ("idle", "working", "blocked", "starved", "down")


@pytest.mark.slow
@BROWSER[0]
@BROWSER[1]
def test_viewer_shows_simulated_badge_and_a_forced_input_in_the_io_panel(sample_layout, artifacts):
    port, http_port = free_port(), free_port()
    log = sample_layout.parent / "commission.log"
    process = subprocess.Popen([sys.executable, "-m", "twin.cli", "commission", str(sample_layout), "--port",
                                str(port), "--http-port", str(http_port), "--speedup", "2"],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        assert wait_for_health(url, process, 120), f"twin commission did not come up; its log:\n{log.read_text()}"
        token = next(line.split("?token=")[1].rstrip(")\n") for line in log.read_text().splitlines()
                     if "?token=" in line)
        with TwinClient(url, token=token) as operator:
            operator.force(f"{C1}.PartAtEnd", True)
        with viewer_page(f"{url}/?token={token}") as page:
            badge = page.locator("#simulated-badge")
            badge.wait_for(state="visible", timeout=15_000)
            assert badge.inner_text().strip() == "SIMULATED"
            row = page.locator(f'#io-panel tr[data-node="{C1}.PartAtEnd"]')
            row.wait_for(state="visible", timeout=15_000)
            assert "forced" in (row.get_attribute("class") or "")
            assert "true" in row.inner_text().lower()
            assert page.locator(f'#io-panel tr[data-node="{C1}.Run"] .direction').inner_text() == "output"
            row.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / "commissioning_io.png"))
            page.locator("#io-release-all").click()
            page.wait_for_function("!document.querySelector('#io-panel tr.forced')", timeout=10_000)
    finally:
        stop_process(process, signal.SIGINT)
