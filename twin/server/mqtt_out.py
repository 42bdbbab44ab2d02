"""What the twin's MQTT publishers share: a paho client whose network thread runs beside a task on the event loop
that publishes what changed every period, and a stop that says goodbye before it disconnects (a clean
disconnect makes the broker drop the will, so the publisher must send the offline message itself)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import paho.mqtt.client as paho

from twin.connectors.bindings import PublishConfig

log = logging.getLogger("twin.server.mqtt_out")


class PeriodicPublisher:
    """Subclasses build `self.client` (callbacks and will set) and define `publish_changes` and `_goodbye`."""

    client: paho.Client

    def __init__(self, config: PublishConfig, period_s: float, task_name: str):
        self.config, self.period_s, self._task_name = config, period_s, task_name
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        broker = self.config.broker
        self.client.connect_async(broker.host, broker.port, keepalive=round(broker.keepalive_s))
        self.client.loop_start()
        self._task = asyncio.create_task(self._run(), name=self._task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        info = None
        with contextlib.suppress(Exception):  # a broker gone already: disconnect all the same
            info = self._goodbye()
        if info is not None:
            with contextlib.suppress(Exception):
                info.wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def publish_changes(self) -> None:
        raise NotImplementedError

    def _goodbye(self) -> paho.MQTTMessageInfo | None:
        """Publish the offline message while still connected; None if there is nothing to wait for."""
        return None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                self.publish_changes()
            except Exception:  # one bad round never ends publishing
                log.exception("%s: publishing to %s", self._task_name, self.config.broker.url)
