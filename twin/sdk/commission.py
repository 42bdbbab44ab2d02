"""The commissioning server in this process: serve a layout's line over OPC-UA and force its I/O from Python.

The same `force`, `release` and `forces` as the remote client (`twin.connect(url).force(...)`), with errors
of the same types; the server runs on its own event loop in a background thread, so a test or a script can
drive a controller against it from asyncio or plain code.

    from twin.sdk.commission import LocalCommission
    with LocalCommission("factory.usda", port=4841, lockstep=True) as line:
        line.force("Line.Conveyors.Conveyor1.PartAtEnd", mode="stuck")
        ...  # run the control program against line.endpoint
        line.release()  # every force
"""

from __future__ import annotations

import asyncio
import getpass
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from twin.commission.forcing import ALL, ForceError, UnknownNodeError
from twin.commission.server import CommissionServer
from twin.sdk.types import InvalidRequestError, NotFoundError

T = TypeVar("T")


class LocalCommission:
    """`CommissionServer(layout, **options)` served until `close()`; `self.server` is the server itself."""

    def __init__(self, layout: str | Path, *, user: str | None = None, **options: Any):
        self.server = CommissionServer(layout, **options)
        self.endpoint = self.server.endpoint
        self.user = user or _login()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="twin-commission", daemon=True)
        self._thread.start()
        self.call(self.server.start())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def force(self, node: str, value: object = None, *, mode: str | None = None,
              period_s: float | None = None) -> dict:
        """Force an input to `value`, or by `mode` ("stuck", "flicker" with `period_s`, "offline"); fail a drive
        or a station with mode "fail". Returns the force."""
        try:
            force = self.call(self.server.force(node, mode or "value", value, period_s=period_s, user=self.user))
        except ForceError as error:
            raise InvalidRequestError(422, str(error), f"force {node}") from None
        except UnknownNodeError as error:
            raise NotFoundError(404, str(error), f"force {node}") from None
        return force.json()

    def release(self, node: str = ALL) -> list[str]:
        """Lift the force on `node`, or every force ("all", the default); returns the nodes released."""
        try:
            return self.call(self.server.release(node, user=self.user))
        except UnknownNodeError as error:
            raise NotFoundError(404, str(error), f"release {node}") from None

    def forces(self) -> list[dict]:
        """The forces in effect."""
        return [force.json() for force in self.server.forces.active.values()]

    def audit(self) -> list[dict]:
        """Every force and release: time, user, action, node, mode, value."""
        return self.server.forces.audit_json()

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            self.call(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> LocalCommission:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container without a user entry
        return "local"
