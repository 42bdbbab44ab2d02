"""MQTT out: what the twin knows and the plant does not, published to a broker for SCADA, dashboards or twins.

Live KPIs, machine states, the alarms with their lifecycle and finished what-if studies go out either as a
Sparkplug B edge node (NBIRTH/DBIRTH with aliases, then NDATA/DDATA by alias with seq numbers, NDEATH as the
will and on a clean stop, a rebirth on NCMD Node Control/Rebirth) or as JSON under a topic root (retained
state per signal, alarm and study; each alarm event; a retained status with a will). The binding file's
`publish:` section says which (docs/mqtt.md). It lives at the server level because it reads alarms and
what-if studies, which sit above the connectors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import paho.mqtt.client as paho

from twin.connectors import sparkplug as sp
from twin.connectors.bindings import PublishConfig
from twin.connectors.mqtt import broker_client
from twin.core.alarms import AlarmEngine, AlarmEvent
from twin.core.cache import RuntimeCache, quality_name
from twin.server.mqtt_out import PeriodicPublisher

if TYPE_CHECKING:  # for hints only: importing them loads the simulation stack
    from twin.server.routes.whatif import WhatIfStudies
    from twin.sim.runtime import Twin

log = logging.getLogger("twin.server.publish_mqtt")

SIGNALS_DEVICE, ALARMS_DEVICE = "Signals", "Alarms"
WHATIF_METRIC = "WhatIf/Last"  # the last finished study, as JSON text
_QUALITY = {"good": sp.QUALITY_GOOD, "uncertain": sp.QUALITY_GOOD, "stale": sp.QUALITY_STALE, "bad": sp.QUALITY_BAD}
_DATATYPE = {"float": sp.DOUBLE, "int": sp.INT64, "bool": sp.BOOLEAN, "text": sp.STRING}


def _name(key: str) -> str:
    """A signal key or rule id as a metric name or topic level: no leading "/" (an empty level)."""
    return key.lstrip("/")


class MqttPublisher(PeriodicPublisher):
    """Publishes the given signal rows, the alarm engine's state and events, and finished studies.

    `bd_seq_path` keeps the Sparkplug bdSeq of the last session across restarts, so that a twin restarted at once
    does not reuse the bdSeq of the session whose will the broker may still deliver: a host that matched that late
    NDEATH to the new birth would mark a live line dead."""

    def __init__(self, config: PublishConfig, binding_path: Path, cache: RuntimeCache, rows: list[int],
                 alarms: AlarmEngine, whatif: Callable[[], list[dict]] | None = None, *,
                 bd_seq_path: Path | None = None):
        super().__init__(config, config.period_s, "mqtt-publish")
        self.cache, self.rows, self.alarms = cache, list(rows), alarms
        self.whatif = whatif or list
        self.sparkplug = config.format == "sparkplug"
        client_id = f"twin-{config.group}-{config.edge_node}" if self.sparkplug else f"twin-{config.topic_root}"
        self.client = broker_client(config.broker, binding_path, client_id=client_id.replace("/", "-"))
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_message = self._on_command
        self.lock = threading.Lock()  # paho's thread (births) and the publishing task share the state below
        self.connected = False
        self.bd_seq_path = bd_seq_path
        self.bd_seq, self.seq = self._next_bd_seq(), 0
        self.births = 0
        self.sent_versions = np.zeros(len(self.rows), np.int64)
        self.alarm_seq = alarms.last_seq
        self.rule_states: dict[str, str] = {}
        self.studies_sent: set[str] = set()
        self._set_will()

    def _next_bd_seq(self) -> int:
        """One past the bdSeq the last run kept, 0 on a first run (or where what it kept cannot be read)."""
        if self.bd_seq_path is None or not self.sparkplug:
            return 0
        try:
            kept = int(self.bd_seq_path.read_text().strip())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as error:
            log.warning("%s: cannot read the last bdSeq (%s); starting at 0", self.bd_seq_path, error)
            return 0
        return (kept + 1) % 256 if 0 <= kept <= 255 else 0

    def _keep_bd_seq(self) -> None:
        """Write the bdSeq of the session just connected (its will's); a read-only folder costs only the guarantee."""
        if self.bd_seq_path is None or not self.sparkplug:
            return
        try:
            self.bd_seq_path.write_text(f"{self.bd_seq}\n")
        except OSError as error:
            log.warning("%s: cannot keep the bdSeq (%s); a restart will count from 0 again", self.bd_seq_path, error)

    # ------------------------------------------------------------------ topics and the will
    def _topic(self, message: str, device: str | None = None) -> str:
        return str(sp.Topic(self.config.group, message, self.config.edge_node, device))

    def _json_topic(self, *levels: str) -> str:
        return "/".join((self.config.topic_root, *levels))

    def _death(self) -> bytes:
        payload = sp.Payload(timestamp=sp.now_ms())
        sp.add_metric(payload, sp.BD_SEQ_METRIC, sp.INT64, self.bd_seq)
        return payload.SerializeToString()

    def _set_will(self) -> None:
        """The death certificate the broker sends if the twin vanishes; set before each connection."""
        if self.sparkplug:
            self.client.will_set(self._topic("NDEATH"), self._death(), qos=1)
        else:
            self.client.will_set(self._json_topic("status"), json.dumps({"online": False}), qos=1, retain=True)

    # ------------------------------------------------------------------ lifecycle
    def _goodbye(self) -> paho.MQTTMessageInfo | None:
        with self.lock:
            if not self.connected:
                return None
            if self.sparkplug:
                return self.client.publish(self._topic("NDEATH"), self._death(), qos=1)
            return self.client.publish(self._json_topic("status"), json.dumps({"online": False}), qos=1, retain=True)

    def _on_connect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the publisher: %s", self.config.broker.url, reason)
            return
        if self.sparkplug:
            client.subscribe(self._topic("NCMD"), 1)
        with self.lock:
            self.connected = True
            self._keep_bd_seq()
            self._publish_births()

    def _on_disconnect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        with self.lock:
            if self.connected and self.sparkplug:
                self.bd_seq = (self.bd_seq + 1) % 256  # the next session's births and will
                self._set_will()
            self.connected = False

    def _on_command(self, client: paho.Client, userdata, message: paho.MQTTMessage) -> None:
        with contextlib.suppress(Exception):
            payload = sp.Payload.FromString(message.payload)
            if any(m.name == sp.REBIRTH_METRIC and sp.metric_value(m) for m in payload.metrics):
                log.info("rebirth requested on %s", message.topic)
                with self.lock:
                    self._publish_births()

    # ------------------------------------------------------------------ what is published
    def _rule_states(self) -> dict[str, tuple[str, str, str]]:
        """Per rule: state (normal, active, acknowledged, cleared), message and severity."""
        states = {rule.id: ("normal", "", rule.severity) for rule in self.alarms.rules}
        for alarm in self.alarms.open_alarms():
            states[alarm["rule"]] = (alarm["state"], alarm["message"], alarm["severity"])
        return states

    def _signal(self, row: int) -> tuple[object, str, float]:
        """A row's value (a number, a list for arrays, text), quality name and source time."""
        info = self.cache.signals[row]
        value = self.cache.signal_value(row)
        if isinstance(value, np.ndarray):
            value = [float(v) for v in value]
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
        elif info.kind == "int" and value is not None:
            value = int(value)
        elif info.kind == "bool" and value is not None:
            value = bool(value)
        return value, quality_name(self.cache.status[row]), float(self.cache.source_time[row])

    def _add_signal_metric(self, payload, row: int, alias: int, *, birth: bool) -> None:
        info = self.cache.signals[row]
        value, quality, source_time = self._signal(row)
        kind = 31 if info.width > 1 else _DATATYPE.get(info.kind, sp.DOUBLE)  # 31: DoubleArray
        metric = sp.add_metric(payload, _name(info.key) if birth else None, kind, value, alias=alias,
                               timestamp=int(source_time * 1000) if math.isfinite(source_time) else None)
        metric.properties.keys.append("Quality")
        metric.properties.values.add(type=sp.INT32, int_value=_QUALITY[quality])

    def _publish_births(self) -> None:
        """Everything, as births (Sparkplug: seq starts again) or as retained JSON; called with the lock held."""
        self.births += 1
        self.sent_versions = self.cache.signal_version[self.rows].copy()
        self.rule_states = {rule: state for rule, (state, _, _) in self._rule_states().items()}
        self.alarm_seq = self.alarms.last_seq
        if not self.sparkplug:
            self.client.publish(self._json_topic("status"), json.dumps({"online": True, "time": time.time()}),
                                qos=1, retain=True)
            for row in self.rows:
                self._publish_json_signal(row)
            for rule, state in self._rule_states().items():
                self._publish_json_rule(rule, state)
            self.studies_sent.clear()
            self._publish_studies()
            return
        self.seq = 0
        node = sp.Payload(timestamp=sp.now_ms(), seq=self._next_seq())
        sp.add_metric(node, sp.BD_SEQ_METRIC, sp.INT64, self.bd_seq)
        sp.add_metric(node, sp.REBIRTH_METRIC, sp.BOOLEAN, False)
        last = self._last_study()
        sp.add_metric(node, WHATIF_METRIC, sp.STRING, json.dumps(last) if last else "", alias=1)
        self.studies_sent = {last["id"]} if last else set()
        self.client.publish(self._topic("NBIRTH"), node.SerializeToString(), qos=0)
        signals = sp.Payload(timestamp=sp.now_ms(), seq=self._next_seq())
        for index, row in enumerate(self.rows):
            self._add_signal_metric(signals, row, index + 1, birth=True)
        self.client.publish(self._topic("DBIRTH", SIGNALS_DEVICE), signals.SerializeToString(), qos=0)
        alarms = sp.Payload(timestamp=sp.now_ms(), seq=self._next_seq())
        for index, (rule, (state, message, severity)) in enumerate(self._rule_states().items()):
            for offset, (field, value) in enumerate((("State", state), ("Message", message),
                                                     ("Severity", severity), ("Event", ""))):
                sp.add_metric(alarms, f"{_name(rule)}/{field}", sp.STRING, value, alias=4 * index + offset + 1)
        self.client.publish(self._topic("DBIRTH", ALARMS_DEVICE), alarms.SerializeToString(), qos=0)

    def _next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def _last_study(self) -> dict | None:
        done = [study for study in self.whatif() if study.get("status") == "done"]
        return max(done, key=lambda study: study.get("finished") or 0) if done else None

    def _publish_json_signal(self, row: int) -> None:
        info = self.cache.signals[row]
        value, quality, source_time = self._signal(row)
        body = {"value": value, "quality": quality, "time": source_time if math.isfinite(source_time) else None,
                "unit": info.unit}
        if info.labels and self.cache.text[row]:
            body["state"] = self.cache.text[row]
        self.client.publish(self._json_topic("signals", _name(info.prim), info.attr), json.dumps(body), qos=1,
                            retain=True)

    def _publish_json_rule(self, rule: str, state: tuple[str, str, str]) -> None:
        body = {"rule": rule, "state": state[0], "message": state[1], "severity": state[2]}
        self.client.publish(self._json_topic("alarms", _name(rule)), json.dumps(body), qos=1, retain=True)

    def _publish_studies(self) -> None:
        for study in self.whatif():
            if study.get("status") == "done" and study["id"] not in self.studies_sent:
                self.studies_sent.add(study["id"])
                self.client.publish(self._json_topic("whatif", str(study["id"])), json.dumps(study), qos=1,
                                    retain=True)

    def publish_changes(self) -> None:
        """What changed since the last round: signals, alarm events and states, finished studies."""
        with self.lock:
            if not self.connected:
                return
            if len(self._rule_states()) != len(self.rule_states):
                self._publish_births()  # alarm rules came or went: metrics are announced only in births
                return
            versions = self.cache.signal_version[self.rows]
            changed = np.flatnonzero(versions != self.sent_versions)
            self.sent_versions = versions.copy()
            events = self.alarms.events_since(self.alarm_seq)
            if events:
                self.alarm_seq = events[-1].seq
            states = self._rule_states()
            moved = {rule: entry for rule, entry in states.items() if self.rule_states.get(rule) != entry[0]}
            self.rule_states = {rule: state for rule, (state, _, _) in states.items()}
            if self.sparkplug:
                self._sparkplug_data(changed, events, moved, states)
            else:
                for index in changed:
                    self._publish_json_signal(self.rows[index])
                for event in events:
                    self.client.publish(self._json_topic("alarms", "events"), json.dumps(event.to_json()), qos=1)
                for rule, state in moved.items():
                    self._publish_json_rule(rule, state)
                self._publish_studies()

    def _sparkplug_data(self, changed: np.ndarray, events: list[AlarmEvent], moved: dict,
                        states: dict[str, tuple[str, str, str]]) -> None:
        if changed.size:
            payload = sp.Payload(timestamp=sp.now_ms(), seq=self._next_seq())
            for index in changed:
                self._add_signal_metric(payload, self.rows[index], int(index) + 1, birth=False)
            self.client.publish(self._topic("DDATA", SIGNALS_DEVICE), payload.SerializeToString(), qos=0)
        if events or moved:
            aliases = {rule: 4 * index + 1 for index, rule in enumerate(states)}
            payload = sp.Payload(timestamp=sp.now_ms(), seq=self._next_seq())
            for event in events:  # the lifecycle, in order, at the times it happened
                if event.rule in aliases:
                    sp.add_metric(payload, None, sp.STRING, event.event, alias=aliases[event.rule] + 3,
                                  timestamp=int(event.time * 1000))
            for rule, (state, message, _) in moved.items():
                sp.add_metric(payload, None, sp.STRING, state, alias=aliases[rule])
                sp.add_metric(payload, None, sp.STRING, message, alias=aliases[rule] + 1)
            self.client.publish(self._topic("DDATA", ALARMS_DEVICE), payload.SerializeToString(), qos=0)
        last = self._last_study()
        if last is not None and last["id"] not in self.studies_sent:
            self.studies_sent.add(last["id"])
            payload = sp.Payload(timestamp=sp.now_ms(), seq=self._next_seq())
            sp.add_metric(payload, None, sp.STRING, json.dumps(last), alias=1)
            self.client.publish(self._topic("NDATA"), payload.SerializeToString(), qos=0)

    def health(self) -> dict:
        return {"endpoint": self.config.broker.url, "connected": self.connected, "format": self.config.format,
                "births": self.births, "bd_seq": self.bd_seq}


def published_rows(twin: Twin) -> list[int]:
    """What the twin derives and the plant does not send: the line's live KPIs and its stations' states."""
    if not twin.kpis.enabled:
        return []
    return [*twin.kpis.rows.values(), *twin.kpis.state_rows]


def finished_studies(studies: WhatIfStudies) -> list[dict]:
    """Finished what-if studies with their results; none before the first study made the queue."""
    jobs = studies._jobs  # made on first use: reading it must not build the line model
    return [] if jobs is None else [job.as_dict() for job in list(jobs.jobs.values()) if job.status == "done"]
