"""What the site knows of its lines, read from the broker (the unified namespace) and nothing else.

Each line's twin publishes as a Sparkplug B edge node (`spBv1.0/GROUP/.../LINE`) or as JSON under
`ROOT/LINE` (twin/server/publish_mqtt.py). A line is `up` after its NBIRTH (or a retained `status` saying
online) and `down` after its NDEATH with the birth's bdSeq (or `status` offline), which the broker sends as the
line's will when the line falls silent for 1.5 x its keepalive. Its live KPIs and alarm states come with the
births and data. The site is a Sparkplug host application: births are not retained, so it asks each line for
them when it connects, and again when data arrives from a line whose birth it has not seen.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as paho

from twin.connectors import sparkplug as sp
from twin.connectors.mqtt import broker_client
from twin.site.config import Site

log = logging.getLogger("twin.site.uns")

KPI_PREFIX = "twin:kpi:"
SIGNALS_DEVICE, ALARMS_DEVICE = "Signals", "Alarms"  # the devices of twin/server/publish_mqtt.py
ALARM_FIELDS = ("State", "Message", "Severity", "Event")
REBIRTH_INTERVAL_S = 2.0
SUMMED_KPIS = ("throughputPerHour", "wip")  # a site's KPI is the lines' sum; the others (ratios) their mean


@dataclass
class LineState:
    """One line as the broker shows it."""

    name: str
    format: str  # sparkplug | json
    state: str = "unknown"  # unknown (nothing heard yet), up, down
    since: float | None = None  # when the state last changed (epoch s)
    last_seen: float | None = None  # the last message from the line
    bd_seq: int | None = None
    kpis: dict[str, object] = field(default_factory=dict)  # "oee" -> 0.82
    alarms: dict[str, dict] = field(default_factory=dict)  # rule -> {state, message, severity}
    signal_aliases: dict[int, str] = field(default_factory=dict)
    alarm_aliases: dict[int, tuple[str, str]] = field(default_factory=dict)  # alias -> (rule, field)
    rebirth_asked: float = 0.0

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()

    def describe(self) -> dict:
        return {"name": self.name, "state": self.state, "since": self.since, "last_seen": self.last_seen,
                "format": self.format, "kpis": dict(self.kpis)}

    def active_alarms(self) -> list[dict]:
        return [{"line": self.name, "rule": rule, **alarm} for rule, alarm in sorted(self.alarms.items())
                if alarm.get("state", "normal") != "normal"]


def _kpi(key: str) -> str | None:
    """A published signal name or key ("Factory/Line.twin:kpi:oee") as a KPI name ("oee"), or None."""
    _, _, attr = key.rpartition(".")
    return attr.removeprefix(KPI_PREFIX) if attr.startswith(KPI_PREFIX) else None


class SiteNamespace:
    """Subscribes to every line's topics and keeps each line's state; paho's thread writes, the server reads."""

    def __init__(self, site: Site):
        self.site = site
        self.lines = {line.name: LineState(line.name, line.publish) for line in site.lines}
        self.json_roots = {site.line_topic_root(line) + "/": line.name for line in site.lines
                           if line.publish == "json"}
        self.lock = threading.Lock()
        self.connected = False
        self.client = broker_client(site.broker, site.path, client_id=f"twin-site-{site.group}")
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        broker = self.site.broker
        self.client.connect_async(broker.host, broker.port, keepalive=round(broker.keepalive_s))
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ what the server reads
    def snapshot(self) -> list[dict]:
        with self.lock:
            return [line.describe() for line in self.lines.values()]

    def alarms(self) -> list[dict]:
        with self.lock:
            return [alarm for line in self.lines.values() for alarm in line.active_alarms()]

    def kpis(self) -> dict:
        """Across the lines that are up: sums of rates and counts, means of ratios; with how many lines each."""
        values: dict[str, list[float]] = {}
        with self.lock:
            for line in self.lines.values():
                for name, value in line.kpis.items() if line.state == "up" else ():
                    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
                        values.setdefault(name, []).append(float(value))
        return {name: {"value": sum(found) if name in SUMMED_KPIS else sum(found) / len(found),
                       "aggregate": "sum" if name in SUMMED_KPIS else "mean", "lines": len(found)}
                for name, found in sorted(values.items())}

    # ------------------------------------------------------------------ the link
    def _on_connect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the site: %s", self.site.broker.url, reason)
            return
        self.connected = True
        topics = [(f"{sp.NAMESPACE}/{self.site.group}/#", 1)] if any(
            line.format == "sparkplug" for line in self.lines.values()) else []
        topics += [(f"{root}#", 1) for root in self.json_roots]
        client.subscribe(topics)
        for line in self.lines.values():
            if line.format == "sparkplug":
                self._ask_rebirth(line, "the site connected")

    def _on_disconnect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        if self.connected:
            log.warning("lost the broker %s (%s): lines unknown until it is back", self.site.broker.url, reason)
        self.connected = False
        with self.lock:
            for line in self.lines.values():
                line.set_state("unknown")

    def _ask_rebirth(self, line: LineState, why: str) -> None:
        if time.monotonic() - line.rebirth_asked < REBIRTH_INTERVAL_S:
            return
        line.rebirth_asked = time.monotonic()
        log.info("asking line %s for its births: %s", line.name, why)
        self.client.publish(str(sp.Topic(self.site.group, "NCMD", line.name)), sp.rebirth_request(), qos=0)

    def _on_message(self, client: paho.Client, userdata, message: paho.MQTTMessage) -> None:
        try:
            with self.lock:
                if (topic := sp.parse_topic(message.topic)) is not None:
                    line = self.lines.get(topic.edge_node)
                    if line is not None and line.format == "sparkplug" and topic.group == self.site.group:
                        self._sparkplug(line, topic, sp.Payload.FromString(bytes(message.payload)))
                    return
                for root, name in self.json_roots.items():
                    if message.topic.startswith(root):
                        self._json(self.lines[name], message.topic.removeprefix(root), json.loads(message.payload))
        except Exception:  # a callback that raises would stop paho's thread
            log.exception("site: message on %s", message.topic)

    # ------------------------------------------------------------------ Sparkplug B
    def _sparkplug(self, line: LineState, topic: sp.Topic, payload) -> None:
        kind = topic.message
        if kind in ("NCMD", "DCMD"):
            return
        if kind == "NDEATH":
            bd_seq = sp.bd_seq(payload)
            if line.bd_seq is None or bd_seq is None or bd_seq == line.bd_seq:  # not a late will of a past session
                line.set_state("down")
            return
        line.last_seen = time.time()
        if kind == "NBIRTH":
            line.bd_seq = sp.bd_seq(payload)
            line.rebirth_asked = 0.0
            line.set_state("up")
            return
        if kind == "DBIRTH" and topic.device == SIGNALS_DEVICE:
            line.signal_aliases = {metric.alias: metric.name for metric in payload.metrics}
            line.kpis = {}
        elif kind == "DBIRTH" and topic.device == ALARMS_DEVICE:
            line.alarm_aliases = {}
            line.alarms = {}
            for metric in payload.metrics:
                rule, _, name = metric.name.rpartition("/")
                line.alarm_aliases[metric.alias] = ("/" + rule, name)  # the rule's id, as JSON and the line say it
        elif line.state != "up":
            self._ask_rebirth(line, f"{kind} before its birth")
            return
        if topic.device == SIGNALS_DEVICE:
            for metric in payload.metrics:
                name = metric.name or line.signal_aliases.get(metric.alias, "")
                if (kpi := _kpi(name)) is not None:
                    line.kpis[kpi] = sp.metric_value(metric)
        elif topic.device == ALARMS_DEVICE:
            for metric in payload.metrics:
                rule, name = line.alarm_aliases.get(metric.alias, ("", ""))
                if name in ("State", "Message", "Severity"):
                    line.alarms.setdefault(rule, {})[name.lower()] = sp.metric_value(metric)

    # ------------------------------------------------------------------ JSON
    def _json(self, line: LineState, topic: str, body: object) -> None:
        if topic == "status" and isinstance(body, dict):
            if body.get("online"):
                line.last_seen = time.time()
            line.set_state("up" if body.get("online") else "down")
            return
        line.last_seen = time.time()
        if topic.startswith("signals/") and isinstance(body, dict) and (kpi := _kpi(topic.replace("/", "."))):
            line.kpis[kpi] = body.get("value")
        elif topic.startswith("alarms/") and topic != "alarms/events" and isinstance(body, dict):
            line.alarms[str(body.get("rule"))] = {key: body.get(key) for key in ("state", "message", "severity")}

