"""`twin site`: real mosquitto, a real `twin site` process running real `twin serve` processes of the sample
layout, one publishing as a Sparkplug B edge node and one as JSON. The site shows both lines up with the KPIs they
compute from the plant's values, lists a line's alarm, reaches a line through its proxy with the SDK, shows a
killed line down and then up again once restarted, and stops every line when it stops. Bad site files are refused
with their file, line and field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
import yaml

import twin
from tests.helpers import BROWSER, free_port, stop_process, viewer_page
from tests.mqtt_broker import Broker, needs_mosquitto, start_broker
from twin.connectors.bindings import load_bindings
from twin.core.errors import BindingError
from twin.site.config import SiteError, line_bindings, load_site

LINE_BINDINGS = """\
brokers:
  plant: {{url: "mqtt://127.0.0.1:{port}", keepalive_s: 2}}
bindings:
  - {{server: plant, topic: plant/{line}/out, prim: /Factory/Line/Source, attr: twin:partsOut, kind: int}}
  - {{server: plant, topic: plant/{line}/in, prim: /Factory/Line/Sink, attr: twin:partsIn, kind: int}}
  - server: plant
    topic: plant/{line}/temperature
    prim: /Factory/Line/Conveyor1
    attr: twin:temperature
    kind: float
    alarms: [{{high: 50, name: hot, severity: high, message: "conveyor 1 too hot"}}]
"""


def _write_site(folder: Path, layout: Path, broker_port: int, site_port: int) -> Path:
    for line in ("north", "south"):
        (folder / f"{line}.yaml").write_text(LINE_BINDINGS.format(port=broker_port, line=line))
    site = folder / "site.yaml"
    site.write_text(f"""\
broker: {{url: "mqtt://127.0.0.1:{broker_port}", keepalive_s: 1}}
period_s: 0.2
server: {{port: {site_port}}}
lines:
  - {{name: north, layout: {layout}, bindings: north.yaml}}
  - {{name: south, layout: {layout}, bindings: south.yaml, publish: json}}
""")
    return site


@dataclass
class RunningSite:
    url: str
    process: subprocess.Popen
    broker: Broker
    log: Path

    def get(self, path: str) -> dict | list:
        return httpx.get(f"{self.url}{path}", timeout=10).json()

    def line(self, name: str) -> dict:
        return next(line for line in self.get("/api/site")["lines"] if line["name"] == name)

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the site exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if predicate():
                    return
            except (httpx.TransportError, ValueError, StopIteration, KeyError):  # not up yet, or starting
                pass
            time.sleep(0.2)
        pytest.fail(f"timed out after {timeout} s waiting for {what}; site: {self._state()}")

    def _state(self) -> str:
        try:
            return json.dumps(self.get("/api/site"))[:2000]
        except httpx.TransportError:
            return self.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def running_site(sample_layout, tmp_path_factory) -> Iterator[RunningSite]:
    folder = tmp_path_factory.mktemp("site")
    broker = start_broker(folder / "broker")
    plant = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    plant.connect("127.0.0.1", broker.port)
    plant.loop_start()
    for line, parts_out, parts_in in (("north", 10, 4), ("south", 7, 2)):  # retained: read whenever a line starts
        plant.publish(f"plant/{line}/out", str(parts_out), qos=1, retain=True).wait_for_publish(5)
        plant.publish(f"plant/{line}/in", str(parts_in), qos=1, retain=True).wait_for_publish(5)
    site_port = free_port()
    site_file = _write_site(folder, sample_layout, broker.port, site_port)
    log = folder / "site.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "twin.cli", "site", str(site_file)], stdout=output,
                                   stderr=subprocess.STDOUT)
    site = RunningSite(f"http://127.0.0.1:{site_port}", process, broker, log)
    site.plant = plant  # type: ignore[attr-defined]
    try:
        yield site
    finally:
        if process.poll() is None:  # a run of some of the tests: stop it as a user would
            stop_process(process)
        plant.loop_stop()
        broker.stop()


@needs_mosquitto
@pytest.mark.slow
def test_the_site_shows_both_lines_up_with_their_kpis(running_site):
    site = running_site
    site.wait(lambda: all(line["state"] == "up" and line["kpis"].get("wip") is not None
                          for line in site.get("/api/site")["lines"]), 90, "both lines up with a WIP")
    north, south = site.line("north"), site.line("south")
    assert (north["format"], south["format"]) == ("sparkplug", "json")
    assert (north["kpis"]["wip"], south["kpis"]["wip"]) == (6, 5)  # parts out minus parts in, per line
    assert north["url"] == "/lines/north/" and north["process"]["running"] and north["last_seen"] > 0
    kpis = site.get("/api/site/kpis")
    assert kpis["wip"] == {"value": 11, "aggregate": "sum", "lines": 2}
    assert httpx.get(f"{site.url}/api/site", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401


@needs_mosquitto
@pytest.mark.slow
def test_the_sdk_reaches_a_line_through_the_site(running_site):
    site = twin.Site(running_site.url)
    assert {line["name"]: line["state"] for line in site.lines()} == {"north": "up", "south": "up"}
    with site.line("north") as north:
        assert north.read("/Factory/Line/Source.twin:partsOut").value == 10
        update = next(iter(north.subscribe(["/Factory/Line/Sink.twin:partsIn"], idle_timeout=20)))
        assert update.signals["/Factory/Line/Sink.twin:partsIn"].value == 4  # the stream, through the proxy
    with pytest.raises(twin.NotFoundError, match="no line 'west'"), site.line("west") as west:
        west.health()
    viewer = httpx.get(f"{running_site.url}/lines/south/", timeout=10)
    assert viewer.status_code == 200 and "<canvas" in viewer.text  # the viewer, served by the site for the line


@needs_mosquitto
@pytest.mark.slow
def test_site_alarms_list_each_lines_alarms(running_site):
    """South publishes JSON, north Sparkplug B: the site names the same rule the same way for both."""
    assert running_site.get("/api/site/alarms") == []
    running_site.plant.publish("plant/south/temperature", "80", qos=1).wait_for_publish(5)
    running_site.wait(lambda: running_site.get("/api/site/alarms"), 20, "south's alarm")
    running_site.plant.publish("plant/north/temperature", "90", qos=1).wait_for_publish(5)
    running_site.wait(lambda: len(running_site.get("/api/site/alarms")) == 2, 20, "north's alarm too")
    alarms = running_site.get("/api/site/alarms")
    assert [alarm["line"] for alarm in alarms] == ["north", "south"]
    for alarm in alarms:
        assert alarm == {"line": alarm["line"], "rule": "/Factory/Line/Conveyor1.twin:temperature:hot",
                         "state": "active", "severity": "high", "message": "conveyor 1 too hot"}


@needs_mosquitto
@pytest.mark.slow
@BROWSER[0]
@BROWSER[1]
def test_the_viewer_switches_lines(running_site):
    """The site's viewer shows a line's scene and live stream through the proxy, and a switcher of the lines;
    choosing one opens that line's page."""
    with viewer_page(f"{running_site.url}/") as page:
        assert page.url.endswith("/lines/north/")
        assert page.locator("#status").inner_text() == "live"
        page.wait_for_function("document.querySelectorAll('#line-switcher option').length === 2")
        assert page.locator("#line-switcher option").all_inner_texts() == ["north (up)", "south (up)"]
        page.select_option("#line-switcher", "south")
        page.wait_for_url("**/lines/south/")
        page.wait_for_function("document.querySelector('#line-switcher')?.value === 'south'")


@needs_mosquitto
@pytest.mark.slow
def test_a_killed_line_shows_down_then_up_again(running_site):
    site = running_site
    before = site.line("north")["process"]
    os.kill(before["pid"], signal.SIGKILL)
    killed = time.monotonic()
    site.wait(lambda: site.line("north")["state"] == "down", 10, "north down (its will, after its keepalive)")
    assert time.monotonic() - killed < 6  # the broker's keepalive (1 s) x 1.5, plus its check interval
    assert site.line("south")["state"] == "up"
    answer = httpx.get(f"{site.url}/lines/north/api/health", timeout=10)  # its new process is not serving yet
    assert answer.status_code == 502 and "line north does not answer" in answer.json()["detail"]
    site.wait(lambda: site.line("north")["state"] == "up", 90, "north up again after its restart")
    after = site.line("north")["process"]
    assert after["starts"] == before["starts"] + 1 and after["pid"] != before["pid"] and after["last_exit"] == -9


@needs_mosquitto
@pytest.mark.slow
def test_stopping_the_site_stops_every_line(running_site):
    pids = [line["process"]["pid"] for line in running_site.get("/api/site")["lines"]]
    running_site.process.send_signal(signal.SIGTERM)
    assert running_site.process.wait(20) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ---------------------------------------------------------------- the site file
SITE = """\
broker: {url: "mqtt://127.0.0.1:1883"}
lines:
  - name: north
    layout: line.usda
  - name: south
    layout: line.usda
    bindings: south.yaml
    publish: json
"""


@pytest.fixture
def site_folder(tmp_path) -> Path:
    (tmp_path / "line.usda").write_text("#usda 1.0\n")
    (tmp_path / "south.yaml").write_text("servers: {plc: {endpoint: 'opc.tcp://127.0.0.1:4840'}}\n"
                                         "bindings: []\n")
    return tmp_path


@pytest.mark.parametrize(("change", "error"), [
    (("publish: json", "publish: xml"), r"site.yaml:8: lines\[1\]\.publish \(south\): publish must be one of"),
    (("    layout: line.usda\n  - name: south", "    port: 80\n    layout: line.usda\n  - name: south"),
     r"site.yaml:4: lines\[0\]\.port \(north\): port must be 1024 to 65535 or 'auto', got 80"),
    (("name: south", "name: north"), r"site.yaml:5: lines\[1\]\.name \(north\): line 'north' is already lines\[0\]"),
    (("name: south", "name: so/uth"), r"site.yaml:5: lines\[1\]\.name \(so/uth\): name must be letters, digits"),
    (("url: \"mqtt://127.0.0.1:1883\"", "url: \"http://x\""), r"site.yaml:1: broker\.url: url must be an mqtt://"),
    (("lines:", "colour: red\nlines:"), r"site.yaml:2: colour: unknown key 'colour' \(allowed: broker, group,"),
    (("bindings: south.yaml", "bindings: south.yaml\n    port: auto\n    layout: other.usda"),
     r"site.yaml:9: key 'layout' appears twice"),
])
def test_bad_site_files_name_file_line_and_field(site_folder, change, error):
    path = site_folder / "site.yaml"
    path.write_text(SITE.replace(*change))
    with pytest.raises(SiteError, match=error):
        load_site(path)


def test_missing_layouts_and_line_binding_files_are_named(site_folder):
    path = site_folder / "site.yaml"
    path.write_text(SITE.replace("layout: line.usda\n  - name: south", "layout: lost.usda\n  - name: south"))
    with pytest.raises(SiteError, match=r"site.yaml:4: lines\[0\] \(north\): layout .*lost.usda does not exist"):
        load_site(path)
    path.write_text(SITE)
    (site_folder / "south.yaml").write_text("servers: {plc: {endpoint: 'http://x'}}\nbindings: []\n")
    with pytest.raises(BindingError, match=r"south.yaml:1: .*endpoint"):  # the line's own file and line
        load_site(path)
    (site_folder / "south.yaml").write_text("brokers: {uns: {url: 'mqtt://127.0.0.1'}}\n"
                                            "publish: {broker: uns, edge_node: x}\nbindings: []\n")
    with pytest.raises(SiteError, match=r"south.yaml:2: line south: the site publishes each line"):
        load_site(path)


def test_each_line_publishes_under_its_own_name(site_folder):
    path = site_folder / "site.yaml"
    path.write_text(SITE.replace("broker: {url: \"mqtt://127.0.0.1:1883\"}",
                                 "broker: {url: \"mqtts://127.0.0.1:8883\", tls: {ca: pki/ca.pem}}\ngroup: Plant"))
    site = load_site(path)
    north, south = (line_bindings(site, line) for line in site.lines)
    assert north["publish"] == {"broker": "site", "format": "sparkplug", "period_s": 1.0, "group": "Plant",
                                "edge_node": "north"}
    assert south["publish"]["topic_root"] == "site/south" and south["servers"]["plc"]
    assert north["brokers"]["site"]["tls"] == {"ca": str(site_folder / "pki" / "ca.pem")}  # absolute: copied away
    assert north["bindings"] == []


def test_a_line_for_relays_publishes_its_stream_under_its_topic_root(site_folder, tmp_path):
    """`relays: true` gives the line's twin `stream: true` and a topic root (Sparkplug lines have none), so
    `twin relay --topic-root site/NAME` can serve its viewers; a line without it publishes no stream."""
    path = site_folder / "site.yaml"
    path.write_text(SITE.replace("  - name: north\n    layout: line.usda\n",
                                 "  - name: north\n    layout: line.usda\n    relays: true\n"))
    site = load_site(path)
    north, south = (line_bindings(site, line) for line in site.lines)
    assert north["publish"] == {"broker": "site", "format": "sparkplug", "period_s": 1.0, "group": "Site",
                                "edge_node": "north", "topic_root": "site/north", "stream": True}
    assert "stream" not in south["publish"]
    written = tmp_path / "north-bindings.yaml"  # what `twin site` hands the line's `twin serve`
    written.write_text(yaml.safe_dump(north))
    publish = load_bindings(written).publish
    assert publish is not None and publish.stream and publish.topic_root == "site/north"
    path.write_text(SITE.replace("layout: line.usda\n  - name: south", "layout: line.usda\n    relays: yes please\n"
                                 "  - name: south", 1))
    with pytest.raises(SiteError, match=r"site.yaml:5: lines\[0\]\.relays \(north\): relays must be true or false"):
        load_site(path)
