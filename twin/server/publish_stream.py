"""The line's stream state on the broker, for relays (`twin relay`, docs/scale.md): `publish: {stream: true}`.

At the stream rate the twin publishes what changed in its runtime cache as a delta (twin/stream/mirror.py) on
ROOT/stream/state, and a retained keyframe there when it connects, when its schema grows and when a relay asks
on ROOT/stream/request (a relay that missed a delta, or started late and found an old keyframe). ROOT/stream/status
says whether the line is online (retained; the will says it is not).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho

from twin.connectors.bindings import PublishConfig
from twin.connectors.mqtt import broker_client
from twin.core.cache import RuntimeCache
from twin.server.mqtt_out import PeriodicPublisher
from twin.stream.mirror import encode_state

log = logging.getLogger("twin.server.publish_stream")

KEYFRAME_INTERVAL_S = 0.5  # requests from many relays at once are answered by one keyframe


def stream_topics(root: str) -> tuple[str, str, str]:
    """(state, request, status) topics under a topic root."""
    base = f"{root.strip('/')}/stream"
    return f"{base}/state", f"{base}/request", f"{base}/status"


class StreamStatePublisher(PeriodicPublisher):
    """Publishes a runtime cache's keyframes and deltas to the binding file's publish broker."""

    def __init__(self, config: PublishConfig, binding_path: Path, cache: RuntimeCache, rate_hz: float):
        super().__init__(config, 1.0 / rate_hz, "mqtt-stream-state")
        self.cache = cache
        self.state_topic, self.request_topic, self.status_topic = stream_topics(config.topic_root)
        self.session = uuid.uuid4().hex[:16]  # a relay holding another session's state needs a keyframe
        client_id = f"twin-stream-{config.topic_root}".replace("/", "-")
        self.client = broker_client(config.broker, binding_path, client_id=client_id)
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_message = self._on_request
        self.client.will_set(self.status_topic, self._status(False), qos=1, retain=True)
        self.connected = False
        self.keyframe_wanted = threading.Event()
        self.version: int | None = None  # the cache version of the last message published
        self.schema = -1  # the cache schema of the last keyframe
        self.last_keyframe = 0.0
        self.keyframes = self.deltas = self.requests = self.bytes_sent = 0

    def _status(self, online: bool) -> str:
        return json.dumps({"online": online, "session": self.session, "time": time.time()})

    def _goodbye(self) -> paho.MQTTMessageInfo | None:
        if not self.connected:
            return None
        return self.client.publish(self.status_topic, self._status(False), qos=1, retain=True)

    def _on_connect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the stream publisher: %s", self.config.broker.url, reason)
            return
        client.subscribe(self.request_topic, 1)
        client.publish(self.status_topic, self._status(True), qos=1, retain=True)
        self.connected = True
        self.keyframe_wanted.set()

    def _on_disconnect(self, client: paho.Client, userdata, flags, reason, properties) -> None:
        self.connected = False

    def _on_request(self, client: paho.Client, userdata, message: paho.MQTTMessage) -> None:
        self.requests += 1
        self.keyframe_wanted.set()

    def publish_changes(self) -> None:
        """A keyframe when one is due, else the delta since the last message (nothing if nothing changed)."""
        if not self.connected:
            return
        now = time.monotonic()
        keyframe = self.version is None or self.cache.schema != self.schema or (
            self.keyframe_wanted.is_set() and now - self.last_keyframe >= KEYFRAME_INTERVAL_S)
        if keyframe:
            self.keyframe_wanted.clear()
            schema = self.cache.schema
            data, version = encode_state(self.cache, self.session, None)
            self.schema, self.last_keyframe = schema, now
            self.keyframes += 1
        else:
            data, version = encode_state(self.cache, self.session, self.version)
            if data is None:
                return
            self.deltas += 1
        info = self.client.publish(self.state_topic, data, qos=1 if keyframe else 0, retain=keyframe)
        if info.rc != paho.MQTT_ERR_SUCCESS:  # not sent: the next round says it all again
            self.version = None
            return
        self.version = version
        self.bytes_sent += len(data or b"")

    def health(self) -> dict:
        return {"endpoint": self.config.broker.url, "connected": self.connected, "topic": self.state_topic,
                "session": self.session, "version": self.version, "keyframes": self.keyframes,
                "deltas": self.deltas, "keyframe_requests": self.requests, "bytes_sent": self.bytes_sent}
