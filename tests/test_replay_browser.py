"""Replay and alarms in a real browser (Debian chromium): the time bar rewinds the 3D scene and the panels
(alarm list included) to known past instants, plays forward at 60x, and returns to live values; an operator
acknowledges an alarm in the page. The test writes the history itself (no PLC): joint vectors and signal
values into the live cache at known source times."""

import math
import time

import numpy as np
import pytest

from tests.helpers import BROWSER, require_viewer_build, serve_app, viewer_page
from twin.core.stage import TwinStage
from twin.history.store import Historian
from twin.kinematics.chain import Chain
from twin.kinematics.usd import link_prim_paths
from twin.server.app import create_app
from twin.server.auth import Access, Principal
from twin.sim.runtime import Twin

pytestmark = BROWSER

ROBOT = "/Factory/Line/Robot1"
COUNTER = "/Factory/Line/Sink.twin:partsIn"
SPINDLE = ("/Factory/Line/Machining/SpindleTemp", "twin:temperature")  # the layout has an alarm above 60 degC
OPERATOR = "replay-operator"
T0 = float(int(time.time()) - 3600)  # an hour ago: far from what the page shows live
T1, T2 = T0 + 10, T0 + 20
Q1 = np.array([0.4, -0.6, 0.8, -0.5, 0.9, 0.3])
Q2 = np.array([-1.2, 0.3, 1.1, 0.7, -1.0, -0.4])
Q_LIVE = np.array([0.0, -1.0, 0.5, 0.0, 0.5, 0.0])
Q_LATER = np.array([1.5, -0.2, -0.3, 1.2, 0.4, 2.0])  # written live while the page replays
DOWN, WORKING = "#e5484d", "#2fbf71"  # web/src/plant_status.js STATE_COLORS
STATES = {0: "idle", 1: "working", 2: "blocked", 3: "starved", 4: "down"}
NAN = math.nan
# instant -> [(prim, attr, value)]
HISTORY = {
    T1: [(ROBOT, "twin:jointPositions", Q1), ("/Factory/Line/Sink", "twin:partsIn", 5.0),
         ("/Factory/Line/Machining", "twin:state", 4.0), ("/Factory/Line", "twin:kpi:wip", 3.0),
         ("/Factory/Line/Conveyor1", "twin:partPositions", [0.5, 1.5, *[NAN] * 6]), (*SPINDLE, 65.0)],
    T2: [(ROBOT, "twin:jointPositions", Q2), ("/Factory/Line/Sink", "twin:partsIn", 9.0),
         ("/Factory/Line/Machining", "twin:state", 1.0), ("/Factory/Line", "twin:kpi:wip", 6.0),
         ("/Factory/Line/Conveyor1", "twin:partPositions", [0.8, 1.8, 2.8, *[NAN] * 5]), (*SPINDLE, 50.0)],
    None: [(ROBOT, "twin:jointPositions", Q_LIVE), ("/Factory/Line/Sink", "twin:partsIn", 42.0),  # None: now
           ("/Factory/Line/Conveyor1", "twin:partPositions", [0.1, *[NAN] * 7])],
}


def write(twin: Twin, prim: str, attr: str, value, when: float | None = None) -> None:
    twin.cache.write_signal(twin.cache.signal_row(prim, attr), value, source_time=when)


@pytest.fixture(scope="module")
def served(sample_layout, tmp_path_factory):
    require_viewer_build()
    twin = Twin(sample_layout)
    twin.cache.add_signal(*SPINDLE, unit="degC")  # what the PLC's binding registers
    twin.cache.add_signal("/Factory/Line/Machining", "twin:state", labels=STATES)  # the binding's enum map
    historian = Historian(tmp_path_factory.mktemp("replay") / "history.duckdb", twin.cache)
    historian.attach_alarms(twin.alarms)
    for when, updates in HISTORY.items():
        for prim, attr, value in updates:
            write(twin, prim, attr, value, when)
        twin.alarms.evaluate(now=when)  # as the live step would have, then
    historian.flush()
    historian.start()
    access = Access({OPERATOR: Principal("olga", "operator")})
    app = create_app(twin, glb_path=sample_layout.with_suffix(".glb"), tick_hz=10, historian=historian,
                     access=access)
    with serve_app(app) as url:
        yield f"{url}/", twin
    historian.stop()
    historian.close()


@pytest.fixture(scope="module")
def link_world(sample_layout):
    """Each Robot1 link's world matrix in the page's three.js frame (Y-up) for joints q, by the chain's FK."""
    stage = TwinStage(sample_layout)  # the test's own copy: the server's stage is its tick's business
    chain = Chain.from_usd(stage.stage, ROBOT)
    paths = link_prim_paths(stage.stage, ROBOT)
    robot_world = stage.world_transform(ROBOT)
    y_up = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)  # the viewer's root

    def expected(q: np.ndarray) -> dict[str, np.ndarray]:
        local = chain.fk(q)[0]
        return {paths[name]: y_up @ robot_world @ local[i] for i, name in enumerate(chain.link_names)}

    return expected


def page_links(page, paths) -> dict[str, np.ndarray]:
    matrices = page.evaluate("(paths) => paths.map((p) => window.twin.worldMatrix(p))", list(paths))
    return {path: np.array(m).reshape(4, 4).T for path, m in zip(paths, matrices, strict=True)}  # column-major


def assert_links(page, expected: dict[str, np.ndarray]) -> None:
    shown = page_links(page, expected)
    for path, matrix in expected.items():
        # float32 positions and int16 quaternions per link, composed down the chain in the page
        np.testing.assert_allclose(shown[path], matrix, atol=1e-4, err_msg=path)


def show_instant(page, instant: float, links: dict[str, np.ndarray], *, counter: str, wip: str, parts: str,
                 machining: str) -> None:
    """Move the slider to `instant`, then check what the page shows: robot links, the sink's counter in the
    inspector, WIP in the KPI bar, the parts count and the Machining lamp and state name."""
    page.fill("#timebar input[type=range]", str(instant))
    page.wait_for_function(f"window.twin.replay.instant === {instant}", timeout=15_000)
    assert page.evaluate("window.twin.replay.active")
    assert_links(page, links)
    assert page.text_content(f'[data-signal-key="{COUNTER}"] .value') == counter
    assert page.text_content("#kpi-wip") == wip
    assert page.text_content("#parts-count") == parts
    lamps = {lamp["path"]: lamp["color"] for lamp in page.evaluate("window.twin.lamps()")}
    assert lamps["/Factory/Line/Machining"] == machining
    state = page.evaluate("window.twin.signals.get('/Factory/Line/Machining.twin:state').l")
    assert state == {DOWN: "down", WORKING: "working"}[machining]  # the name, though the history keeps the code


def test_replay_rewinds_plays_and_returns_to_live(served, link_world, artifacts):
    url, twin = served
    cell = f'[data-signal-key="{COUNTER}"] .value'
    with viewer_page(url) as page:
        page.wait_for_selector("#timebar:not([hidden])", timeout=15_000)
        assert page.evaluate("window.twin.replay.start") == T1  # the first recorded sample
        page.evaluate("window.twin.select('/Factory/Line/Sink')")
        page.wait_for_function(f"document.querySelector('{cell}')?.textContent === '42'", timeout=15_000)
        assert_links(page, link_world(Q_LIVE))
        assert not page.is_visible("#replay-badge")

        # t1 through the slider: the robot, the inspector, the lamps, the KPI bar and the parts as they were
        show_instant(page, T1, link_world(Q1), counter="5", wip="3", parts="2", machining=DOWN)
        clock = page.evaluate(f"new Date({T1} * 1000).toLocaleTimeString([], {{hour12: false}})")
        assert page.is_visible("#replay-badge") and clock in page.text_content("#replay-badge")
        assert clock in page.text_content("#timebar .replay-instant")
        # the sparkline ends at the instant, on its value
        page.wait_for_function(f"(() => {{ const s = window.twin.history.series('{COUNTER}');"
                               f" return s && s[0].length > 0 && s[0].at(-1) === {T1} && s[1].at(-1) === 5; }})()",
                               timeout=15_000)
        page.screenshot(path=str(artifacts / "replay-t1.png"))

        # live data keeps arriving; the page keeps showing the past
        write(twin, ROBOT, "twin:jointPositions", Q_LATER)
        write(twin, "/Factory/Line/Sink", "twin:partsIn", 43.0)
        page.wait_for_timeout(800)  # several live frames
        assert page.text_content(cell) == "5"
        assert_links(page, link_world(Q1))

        # t2, a keystroke-free jump of the slider again
        show_instant(page, T2, link_world(Q2), counter="9", wip="6", parts="3", machining=WORKING)

        # play at 60x: about a minute of history per second of wall time
        page.select_option("#timebar [data-speed]", "60")
        page.click("#timebar [data-play]")
        page.wait_for_function("window.twin.replay.playing", timeout=5_000)
        page.wait_for_timeout(1000)
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            samples.append((time.monotonic(), page.evaluate("window.twin.replay.instant")))
            page.wait_for_timeout(200)
        walls, instants = np.array(samples).T
        rate = np.polyfit(walls - walls[0], instants - instants[0], 1)[0]
        assert 45 < rate < 75, f"{rate:.1f} s of history per second at 60x"
        assert page.evaluate("window.twin.replay.playing")
        assert page.text_content(cell) == "9"  # nothing recorded after t2: still the t2 value
        page.screenshot(path=str(artifacts / "replay-playing.png"))

        # Live: the latest values at once, and the bar and badge say so
        page.click("#timebar [data-live]")
        page.wait_for_function(f"document.querySelector('{cell}')?.textContent === '43'", timeout=5_000)
        assert not page.evaluate("window.twin.replay.active")
        assert not page.is_visible("#replay-badge")
        assert page.text_content("#timebar .replay-instant") == "live"
        page.wait_for_timeout(300)
        assert_links(page, link_world(Q_LATER))
        assert page.text_content("#parts-count") == "1"
        page.screenshot(path=str(artifacts / "replay-live-again.png"))


def rule_alarms(page) -> list[dict]:
    return page.evaluate("window.twin.alarms().filter((alarm) => alarm.rule)")


def test_alarm_list_replays_and_an_operator_acknowledges(served, artifacts):
    url, twin = served
    with viewer_page(f"{url}?token={OPERATOR}") as page:
        # live: raised at t1, cleared at t2, nobody acknowledged it: still listed, as cleared
        page.wait_for_function("window.twin.alarms().some((alarm) => alarm.state === 'cleared')", timeout=15_000)
        (alarm,) = rule_alarms(page)
        assert alarm["message"] == "Machining spindle above 60 degC" and alarm["raised"] == T1

        page.fill("#timebar input[type=range]", str(T1 + 5))  # back to when it was active
        page.wait_for_function("window.twin.alarms().some((alarm) => alarm.state === 'active')", timeout=15_000)
        assert [(a["state"], a["value"]) for a in rule_alarms(page)] == [("active", 65.0)]
        page.fill("#timebar input[type=range]", str(T2 + 5))  # cleared at t2
        page.wait_for_function("window.twin.alarms().some((alarm) => alarm.state === 'cleared')", timeout=15_000)
        page.click("#timebar [data-live]")
        page.wait_for_function("window.twin.alarms().some((alarm) => alarm.state === 'cleared')", timeout=15_000)

        write(twin, *SPINDLE, 66.0)  # hot again, live: raised again before anyone acknowledged it
        page.wait_for_function("window.twin.alarms().some((alarm) => alarm.state === 'active')", timeout=15_000)
        assert rule_alarms(page)[0]["raised_count"] == 2
        page.click("#alarms")
        page.once("dialog", lambda dialog: dialog.accept("checked the coolant"))
        page.click(f"#alarm-panel button[data-ack='{alarm['id']}']")
        page.wait_for_function("window.twin.alarms().some((alarm) => alarm.state === 'acknowledged')",
                               timeout=15_000)
        (acknowledged,) = rule_alarms(page)
        assert acknowledged["acknowledged_by"] == "olga" and acknowledged["comment"] == "checked the coolant"
        assert "acknowledged" in page.text_content("#alarm-panel")
        page.screenshot(path=str(artifacts / "alarms-acknowledged.png"))
        write(twin, *SPINDLE, 50.0)  # cleared and acknowledged: it leaves the list
        page.wait_for_function("window.twin.alarms().filter((alarm) => alarm.rule).length === 0", timeout=15_000)
