"""MQTT connector: topics of the binding file's brokers into the runtime cache, as the OPC-UA connector does.

One paho client per broker, each on its own network thread (paho reconnects with capped backoff); the cache
takes writes from any thread. A JSON binding reads one value (and optionally its source time) from a topic's
payload. A Sparkplug B binding reads one metric of an edge node or device, as a Sparkplug host application:
births map metric aliases to names, data messages are checked against the sequence number (0..255, one per
message), a gap or data from a node whose birth the twin has not seen is answered by a rebirth request
(NCMD Node Control/Rebirth), and a death certificate (NDEATH whose bdSeq matches the birth, DDEATH) or a lost
broker marks the signals stale. Values enter the cache with a status code, a source time and a state label,
exactly as OPC-UA values do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho

from twin.core.cache import UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache, quality_name, state_name

from . import sparkplug as sp
from .bindings import Binding, BindingFile, BrokerConfig
from .opcua import BAD_TYPE_MISMATCH, to_twin

log = logging.getLogger("twin.connectors.mqtt")

BAD = 0x80000000  # a null metric, or one whose Quality property says bad
BAD_NO_DATA = 0x809B0000  # the path names nothing in the payload
REBIRTH_INTERVAL_S = 2.0  # at most one rebirth request per edge node this often, while its birth is awaited


def _path_value(document: object, path: str, where: str) -> object:
    """The value at a dotted path ("data.axes.0"); list items by index. KeyError names the missing step."""
    value = document
    for step in path.split(".") if path else ():
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.lstrip("-").isdigit() and -len(value) <= int(step) < len(value):
            value = value[int(step)]
        else:
            raise KeyError(f"the payload has no {where} {path!r} (no {step!r} there)")
    return value


def _epoch(value: object) -> float:
    """A JSON time: epoch seconds, epoch milliseconds (a number above 1e11) or ISO 8601 text."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"a time must be epoch seconds, milliseconds or ISO 8601 text, got {value!r}")
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.timestamp() if moment.tzinfo else (moment - datetime(1970, 1, 1)).total_seconds()
    return value / 1000.0 if value > 1e11 else float(value)


def broker_client(config: BrokerConfig, binding_path: Path, *, min_backoff: float = 1.0, max_backoff: float = 10.0,
                  client_id: str = "") -> paho.Client:
    """A paho client set up as the binding file says (credentials, TLS, reconnect backoff), not yet connected."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or config.client_id,
                         protocol=paho.MQTTv311)
    if config.username is not None:
        password = os.environ.get(config.password_env or "")
        if password is None:
            raise RuntimeError(f"{binding_path}:{config.line}: broker {config.name!r}: the password environment "
                               f"variable {config.password_env} is not set")
        client.username_pw_set(config.username, password)
    if config.tls is not None:
        tls = config.tls
        client.tls_set(ca_certs=str(tls.ca) if tls.ca else None,
                       certfile=str(tls.certificate) if tls.certificate else None,
                       keyfile=str(tls.private_key) if tls.private_key else None, cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(tls.insecure)
    client.reconnect_delay_set(max(1, round(min_backoff)), max(1, round(max_backoff)))
    return client


@dataclass
class _EdgeNode:
    """What the twin knows of one Sparkplug edge node (and its devices) between births and deaths."""

    born: bool = False
    bd_seq: int | None = None
    seq: int | None = None  # of the last message
    aliases: dict[tuple[str | None, int], str] = field(default_factory=dict)  # (device, alias) -> metric name
    rebirth_asked: float = 0.0
    rebirths: int = 0


class _BrokerSession:
    """One broker: subscribe to the bound topics, decode, store; stale when the link or an edge node dies."""

    def __init__(self, config: BrokerConfig, bindings: list[Binding], rows: list[int], cache: RuntimeCache,
                 binding_file: BindingFile, min_backoff: float, max_backoff: float):
        self.config, self.bindings, self.rows, self.cache = config, bindings, rows, cache
        self.binding_file = binding_file
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.connected = False
        self.last_error: str | None = None
        self.updates = self.connects = self.sequence_gaps = 0
        self.binding_errors: dict[int, str] = {}
        self.json_topics: dict[str, list[int]] = {}
        self.metrics: dict[tuple[str, str, str | None, str], list[int]] = {}  # group, edge, device, metric
        self.node_rows: dict[tuple[str, str], dict[str | None, list[int]]] = {}  # per edge node, per device
        for index, binding in enumerate(bindings):
            if binding.topic:
                self.json_topics.setdefault(binding.topic, []).append(index)
            else:
                group, edge, *device = binding.sparkplug.split("/")
                key = (group, edge, device[0] if device else None, binding.metric)
                self.metrics.setdefault(key, []).append(index)
                self.node_rows.setdefault((group, edge), {}).setdefault(key[2], []).append(rows[index])
        self.nodes = {key: _EdgeNode() for key in self.node_rows}
        self.lock = threading.Lock()  # health() reads what the network thread writes
        self.client: paho.Client | None = None

    # ------------------------------------------------------------------ the link
    def start(self) -> None:
        client = broker_client(self.config, self.binding_file.path, min_backoff=self.min_backoff,
                               max_backoff=self.max_backoff)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_message, client.on_connect_fail = self._on_message, self._on_connect_fail
        self.client = client
        client.connect_async(self.config.host, self.config.port, keepalive=round(self.config.keepalive_s))
        client.loop_start()

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        self._mark_stale(self.rows)

    def _on_connect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self.last_error = self._where(f"the broker refused the connection: {reason}")
            log.warning("%s", self.last_error)
            return
        with self.lock:
            self.connected, self.last_error = True, None
            self.connects += 1
        topics = [(topic, 1) for topic in self.json_topics]
        topics += [(f"{sp.NAMESPACE}/{group}/+/{edge}/#", 1) for group, edge in self.node_rows]
        if topics:
            client.subscribe(topics)
        for key in self.nodes:  # births are not retained: ask each bound edge node for its aliases and values
            self._ask_rebirth(key, "the twin connected")
        log.info("connected to %s: %d bindings", self.config.url, len(self.bindings))

    def _on_connect_fail(self, client: paho.Client, userdata) -> None:
        self.last_error = self._where("cannot reach the broker")
        log.warning("%s; retrying", self.last_error)

    def _on_disconnect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        with self.lock:
            was_connected, self.connected = self.connected, False
            for node in self.nodes.values():
                node.born, node.seq = False, None
        if was_connected:
            self.last_error = self._where(f"connection lost ({reason})")
            log.warning("%s", self.last_error)
            self._mark_stale(self.rows)

    def _where(self, message: str) -> str:
        return f"{self.binding_file.path}:{self.config.line}: broker {self.config.name!r} ({self.config.url}): " \
               f"{message}"

    def _mark_stale(self, rows: list[int]) -> None:
        """What had a usable value keeps it, marked stale; what was bad (or never came) stays so."""
        usable = [row for row in rows if quality_name(self.cache.status[row]) != "bad"]
        self.cache.mark_status(usable, UNCERTAIN_LAST_USABLE_VALUE)

    # ------------------------------------------------------------------ messages
    def _on_message(self, client: paho.Client, userdata, message: paho.MQTTMessage) -> None:
        try:
            if message.topic in self.json_topics:
                self._json(message.topic, bytes(message.payload))
            elif (topic := sp.parse_topic(message.topic)) is not None and topic.node_key in self.nodes:
                self._sparkplug(topic, bytes(message.payload))
        except Exception:  # a callback that raises would stop paho's thread: never lose the link over a message
            log.exception("%s: message on %s", self._where("unexpected error"), message.topic)

    def _json(self, topic: str, payload: bytes) -> None:
        try:
            document = json.loads(payload)
        except ValueError as error:
            for index in self.json_topics[topic]:
                self._binding_error(index, f"the payload is not JSON ({error})", BAD_TYPE_MISMATCH)
            return
        for index in self.json_topics[topic]:
            binding = self.bindings[index]
            try:
                value = _path_value(document, binding.value_path, "value_path")
                source_time = _epoch(_path_value(document, binding.time_path, "time_path")) \
                    if binding.time_path else None
            except KeyError as error:
                self._binding_error(index, str(error.args[0]), BAD_NO_DATA)
                continue
            except ValueError as error:
                self._binding_error(index, str(error), BAD_TYPE_MISMATCH)
                continue
            self._store(index, value, 0, source_time)

    def _store(self, index: int, value: object, status: int, source_time: float | None) -> None:
        binding = self.bindings[index]
        try:
            converted = to_twin(binding, value) if value is not None else None
        except ValueError as error:
            self._binding_error(index, str(error).replace("the server sent", "the broker sent"), BAD_TYPE_MISMATCH)
            return
        self.binding_errors.pop(index, None)
        label = None
        if binding.enum and converted is not None:
            label = state_name(binding.enum, float(converted[0]) if not isinstance(converted, str) else math.nan)
        self.cache.write_signal(self.rows[index], converted, status=BAD if value is None and not status else status,
                                source_time=source_time, label=label)
        self.updates += 1

    def _binding_error(self, index: int, message: str, status: int) -> None:
        text = str(self.binding_file.error(self.bindings[index], message))
        if self.binding_errors.get(index) != text:
            log.error("%s", text)
        self.binding_errors[index] = text
        self.cache.write_signal(self.rows[index], None, status=status)

    def _sparkplug(self, topic: sp.Topic, raw: bytes) -> None:
        node = self.nodes[topic.node_key]
        try:
            payload = sp.Payload.FromString(raw)
        except Exception as error:
            log.error("%s", self._where(f"{topic}: not a Sparkplug B payload ({error})"))
            return
        kind = topic.message
        if kind == "NDEATH":
            bd_seq = sp.bd_seq(payload)
            if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
                return  # the will of an earlier session, delivered late: the node has been born again since
            node.born, node.seq = False, None
            self._mark_stale([row for rows in self.node_rows[topic.node_key].values() for row in rows])
            return
        if kind in ("NCMD", "DCMD"):
            return
        if kind == "NBIRTH":
            node.born, node.seq, node.aliases = True, payload.seq, {}
            node.rebirth_asked = 0.0  # the request was answered: the next gap is asked about at once
            node.bd_seq = sp.bd_seq(payload)
        else:
            expected = None if node.seq is None else (node.seq + 1) % 256
            node.seq = payload.seq
            if not node.born:
                self._ask_rebirth(topic.node_key, f"{kind} before the node's birth")
            elif payload.seq != expected:
                self.sequence_gaps += 1
                node.born = False  # aliases may have changed in what was lost: wait for the new birth
                self._ask_rebirth(topic.node_key, f"sequence gap: {kind} seq {payload.seq}, expected {expected}")
        if kind == "DBIRTH":
            node.aliases = {key: name for key, name in node.aliases.items() if key[0] != topic.device}
        if kind == "DDEATH":
            self._mark_stale(self.node_rows[topic.node_key].get(topic.device, []))
            return
        self._metrics(topic, node, payload, birth=kind.endswith("BIRTH"))

    def _metrics(self, topic: sp.Topic, node: _EdgeNode, payload, *, birth: bool) -> None:
        for metric in payload.metrics:
            if birth and metric.name and metric.HasField("alias"):
                node.aliases[(topic.device, metric.alias)] = metric.name
            name = metric.name or node.aliases.get((topic.device, metric.alias))
            indexes = self.metrics.get((topic.group, topic.edge_node, topic.device, name or ""))
            if not indexes:
                continue
            quality = sp.metric_quality(metric)
            status = {None: 0, sp.QUALITY_GOOD: 0, sp.QUALITY_STALE: UNCERTAIN_LAST_USABLE_VALUE}.get(quality, BAD)
            stamp = metric.timestamp or payload.timestamp
            try:
                value = sp.metric_value(metric)
            except sp.SparkplugError as error:
                for index in indexes:
                    self._binding_error(index, str(error), BAD_TYPE_MISMATCH)
                continue
            for index in indexes:
                self._store(index, value, status, stamp / 1000.0 if stamp else None)

    def _ask_rebirth(self, key: tuple[str, str], why: str) -> None:
        node = self.nodes[key]
        now = time.monotonic()
        if self.client is None or (node.rebirth_asked and now - node.rebirth_asked < REBIRTH_INTERVAL_S):
            return
        node.rebirth_asked = now
        node.rebirths += 1
        group, edge = key
        log.info("asking edge node %s/%s to rebirth: %s", group, edge, why)
        self.client.publish(f"{sp.NAMESPACE}/{group}/NCMD/{edge}", sp.rebirth_request(), qos=0)


class MqttConnector:
    """All brokers of a binding file feeding one runtime cache (the same start/stop/health as OpcUaConnector)."""

    def __init__(self, binding_file: BindingFile, cache: RuntimeCache, *, min_backoff: float = 1.0,
                 max_backoff: float = 10.0):
        self.binding_file = binding_file
        self.sessions: dict[str, _BrokerSession] = {}
        for name, config in binding_file.brokers.items():
            bindings = [b for b in binding_file.bindings if b.server == name]
            rows = [cache.add_signal(b.prim, b.attr, width=b.width, unit=b.unit,
                                     kind="text" if b.kind == "json" else b.kind, labels=b.enum or None)
                    for b in bindings]
            self.sessions[name] = _BrokerSession(config, bindings, rows, cache, binding_file, min_backoff,
                                                 max_backoff)

    async def start(self) -> None:
        for session in self.sessions.values():
            session.start()

    async def stop(self) -> None:
        for session in self.sessions.values():
            with contextlib.suppress(Exception):
                session.stop()

    @property
    def errors(self) -> list[str]:
        return [message for session in self.sessions.values() for message in session.binding_errors.values()]

    def health(self) -> dict:
        """Per broker: connected or not, why not, failing bindings, and the Sparkplug bookkeeping."""
        return {
            name: {"endpoint": s.config.url, "connected": s.connected, "subscribed": s.connected,
                   "last_error": s.last_error, "n_bindings": len(s.bindings), "n_errors": len(s.binding_errors),
                   "errors": sorted(s.binding_errors.values()), "updates": s.updates, "connects": s.connects,
                   "sequence_gaps": s.sequence_gaps,
                   "edge_nodes": {"/".join(key): {"born": node.born, "bd_seq": node.bd_seq, "rebirths": node.rebirths}
                                  for key, node in s.nodes.items()}}
            for name, s in self.sessions.items()
        }
