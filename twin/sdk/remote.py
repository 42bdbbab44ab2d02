"""The SDK against a running twin: REST over httpx, live updates over the binary websocket stream.

`AsyncTwinClient` does the work; `TwinClient` is the same API for scripts and notebooks without
asyncio: it runs one event loop in a background thread and waits for each call.

    import twin
    with twin.connect("http://127.0.0.1:8000", token=TOKEN) as plant:
        print(plant.read("/Factory/Line/Sink.twin:partsIn").value)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
import websockets

from twin.core.errors import TwinError
from twin.core.motion import MotionCheck
from twin.line.sweep import SweepParameter, whatif_request
from twin.sdk.types import Alarm, History, IkSolution, Robot, Sample, Update, api_error, prim_paths, update_from_frame
from twin.stream.protocol import Frame, Gap, StreamState

T = TypeVar("T")


class AsyncTwinClient:
    """A connection to a twin server. Errors the server reports arrive as `ApiError` subclasses
    (NotFoundError, PermissionDeniedError, ConflictError, InvalidRequestError); an unreachable server
    as TwinError."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncTwinClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, params: dict | None = None, body: Any = None) -> Any:
        request = f"{method} {path}"
        try:
            response = await self._http.request(method, path, params=params, json=body)
        except httpx.TransportError as error:
            raise TwinError(f"{request}: cannot reach the twin at {self.url}: {error}") from None
        if response.is_success:
            return response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else response.content
        try:  # FastAPI's {"detail": ...}, or a refused write's {"status": ..., "message": ...}
            answer = response.json()
            detail = answer.get("detail") or (f"{answer['status']}: {answer['message']}" if "message" in answer
                                              else answer)
        except (ValueError, AttributeError, KeyError):
            detail = response.text or response.reason_phrase
        raise api_error(response.status_code, detail, request)

    # ------------------------------------------------------------------ scene
    async def health(self) -> dict:
        return await self._call("GET", "/api/health")

    async def scene(self) -> dict:
        """The prim tree: {path, name, type, kind, children}."""
        return await self._call("GET", "/api/scene")

    async def prims(self, kind: str | None = None) -> list[str]:
        """Prim paths, depth first; `kind` filters by twin:kind (robot, conveyor, station, sensor...)."""
        return prim_paths(await self.scene(), kind)

    async def prim(self, path: str) -> dict:
        """A prim's authored attributes and its live signals."""
        return await self._call("GET", f"/api/prims/{path.strip('/')}")

    # ------------------------------------------------------------------ signals
    async def read(self, key: str) -> Sample:
        """The latest value of one signal, 'prim.attr'."""
        return (await self.read_many([key]))[key]

    async def read_many(self, keys: Sequence[str] | None = None) -> dict[str, Sample]:
        """The latest values of some signals (all when `keys` is None)."""
        params = None if keys is None else {"keys": ",".join(keys)}
        found = await self._call("GET", "/api/signals", params=params)
        return {key: Sample.from_json(key, data) for key, data in found.items()}

    async def write(self, key: str, value: float | int | bool | str) -> dict:
        """Send a value to the plant through the signal's writable binding (operator role)."""
        prim, _, attr = key.rpartition(".")
        return await self._call("POST", "/api/write", body={"prim": prim, "attr": attr, "value": value})

    # ------------------------------------------------------------------ commissioning (docs/commissioning.md)
    async def force(self, node: str, value: object = None, *, mode: str | None = None,
                    period_s: float | None = None) -> dict:
        """Force a commissioned line's input to `value`, or by `mode` ("stuck", "flicker" with `period_s`,
        "offline"); fail a drive or a station with mode "fail" (operator role)."""
        body = {"node": node, "mode": mode or "value", "value": value, "period_s": period_s}
        return await self._call("POST", "/api/commission/forces", body=body)

    async def release(self, node: str = "all") -> list[str]:
        """Lift the force on `node`, or every force ("all", the default); returns the nodes released."""
        path = "/api/commission/forces" + ("" if node == "all" else f"/{quote(node, safe='')}")
        return (await self._call("DELETE", path))["released"]

    async def forces(self) -> list[dict]:
        """The forces in effect on a commissioned line."""
        return await self._call("GET", "/api/commission/forces")

    async def subscribe(self, signals: Sequence[str] = (), subtrees: Sequence[str] = (), *,
                        idle_timeout: float = 30.0) -> AsyncGenerator[Update, None]:
        """Updates as the twin changes: the first holds everything in scope, then only what changed.
        Subscribe to signal keys and/or prim subtrees (nothing named: everything). Alarm transitions come
        as updates too. Frames are never queued up: each is acknowledged once the reader asks for the next
        update, and the server sends a slow reader the latest state when it is ready, not a backlog."""
        ws_url = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        state = StreamState()
        try:
            # max_queue=1: the frames in flight (at most the server's max_unacked) wait in the socket, not here
            socket = await websockets.connect(ws_url, additional_headers=headers, max_size=None, compression=None,
                                              max_queue=1)
        except (OSError, websockets.InvalidHandshake) as error:
            raise TwinError(f"cannot open the stream at {ws_url}: {error}") from None
        try:
            awaiting_scope = bool(signals or subtrees)  # frames before the server confirms the scope are not ours
            if awaiting_scope:
                await socket.send(json.dumps({"type": "subscribe", "signals": list(signals),
                                              "subtrees": list(subtrees)}))
            while True:
                try:
                    message = await asyncio.wait_for(socket.recv(), idle_timeout)
                except websockets.ConnectionClosed as closed:
                    raise TwinError(f"the stream closed: {closed.rcvd.code if closed.rcvd else ''} "
                                    f"{closed.rcvd.reason if closed.rcvd else ''}".strip()) from None
                try:
                    decoded = state.receive(message)
                except Gap:
                    await socket.send(json.dumps({"type": "resync"}))
                    continue
                if isinstance(decoded, Frame):
                    if not awaiting_scope:
                        yield update_from_frame(decoded, state)
                    await socket.send(json.dumps({"type": "ack", "version": decoded.version}))
                elif decoded.get("type") == "subscribed":
                    awaiting_scope = False
                elif decoded.get("type") == "alarms" and decoded["events"]:
                    yield Update(state.version, time.time(), alarm_events=decoded["events"])
                elif decoded.get("type") == "error":
                    raise api_error(400, decoded["error"], "stream")
        finally:
            await socket.close()

    # ------------------------------------------------------------------ history
    async def history(self, key: str, start: float, end: float, *, step: float | None = None,
                      how: str = "last") -> History:
        """A signal's values over [start, end] (Unix seconds): raw, or one per `step` ('last' or 'mean')."""
        params: dict[str, Any] = {"key": key, "start": start, "end": end}
        if step is not None:
            params.update(step=step, how=how)
        return History.from_json(await self._call("GET", "/api/history/signal", params=params))

    async def state_at(self, instant: float) -> dict[str, Sample]:
        """Every signal as it was at `instant` (Unix seconds)."""
        found = await self._call("GET", "/api/history/state", params={"at": instant})
        return {key: Sample.from_json(key, data) for key, data in found.items()}

    async def export(self, path: str | Path, *, keys: Sequence[str] | None = None, start: float | None = None,
                     end: float | None = None) -> Path:
        """Samples into a file: Parquet for a .parquet path, CSV for .csv."""
        path = Path(path)
        if path.suffix not in (".parquet", ".csv"):
            raise ValueError(f"export to a .parquet or .csv file, not {path.name!r}")
        params = {name: value for name, value in (("keys", ",".join(keys) if keys else None), ("start", start),
                                                 ("end", end)) if value is not None}
        path.write_bytes(await self._call("GET", f"/api/history/export{path.suffix}", params=params))
        return path

    # ------------------------------------------------------------------ alarms
    async def alarms(self) -> list[Alarm]:
        """Open alarms (active, or not yet acknowledged), most severe first."""
        return [Alarm.from_json(a) for a in (await self._call("GET", "/api/alarms"))["alarms"]]

    async def acknowledge(self, alarm_id: int, comment: str = "") -> Alarm:
        """Acknowledge an alarm (operator role); ConflictError if someone was first."""
        return Alarm.from_json(await self._call("POST", f"/api/alarms/{alarm_id}/acknowledge",
                                                body={"comment": comment}))

    async def alarm_history(self, start: float | None = None, end: float | None = None,
                            key: str | None = None) -> list[dict]:
        """Stored alarm transitions (raised, acknowledged, cleared), oldest first."""
        params = {name: value for name, value in (("start", start), ("end", end), ("key", key)) if value is not None}
        return await self._call("GET", "/api/alarms/history", params=params)

    # ------------------------------------------------------------------ robots
    async def robots(self) -> list[Robot]:
        return [Robot.from_json(r) for r in await self._call("GET", "/api/robots")]

    async def fk(self, robot: str, q) -> np.ndarray:
        """World transforms (B, n_links, 4, 4) of a robot's links for joint vectors (B, n) or (n,)."""
        q = np.asarray(q, np.float64)
        found = await self._call("POST", "/api/robots/fk", body={"robot": robot, "q": q.tolist()})
        return np.array(found["poses"], np.float64)

    async def ik(self, robot: str, targets, *, link: str | None = None, seeds: int = 8) -> IkSolution:
        """Joint vectors bringing `link` (default: the flange) to world targets, 4x4 or (B, 4, 4)."""
        body = {"robot": robot, "targets": np.asarray(targets, np.float64).tolist(), "link": link, "seeds": seeds}
        return IkSolution.from_json(await self._call("POST", "/api/robots/ik", body=body))

    # ------------------------------------------------------------------ what-if
    async def check_motion(self, robot: str, trajectory, *, times=None, distance: bool = True,
                           max_distance: float = 0.5) -> MotionCheck | list[MotionCheck]:
        """First contact of a joint trajectory (T, n), or of each of a batch (B, T, n), with the cell or the
        robot itself; clearance when free. See docs/robots.md."""
        body = {"robot": robot, "trajectory": np.asarray(trajectory, np.float64).tolist(), "distance": distance,
                "max_distance": max_distance, "times": None if times is None else np.asarray(times).tolist()}
        found = await self._call("POST", "/api/robots/check_motion", body=body)
        if "results" in found:
            return [MotionCheck.from_json(result) for result in found["results"]]
        return MotionCheck.from_json(found)

    async def whatif(self, *, sweep: Sequence[SweepParameter] = (), replications: int = 30, hours: float = 8.0,
                     warmup_hours: float = 0.0, seed: int = 1, start: str = "empty", wait: bool = True,
                     timeout: float = 600.0) -> dict:
        """Run a what-if study of the line (docs/line-model.md); with `wait`, its results when done."""
        body = whatif_request(sweep=sweep, replications=replications, hours=hours, warmup_hours=warmup_hours,
                              seed=seed, start=start)
        job = await self._call("POST", "/api/whatif", body=body)
        deadline = time.monotonic() + timeout
        while wait and job["status"] not in ("done", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"what-if job {job['id']} still {job['status']} after {timeout} s")
            await asyncio.sleep(0.2)
            job = await self._call("GET", f"/api/whatif/{job['id']}")
        if job["status"] == "failed":
            raise TwinError(f"what-if job {job['id']} failed: {job['error']}")
        return job


class TwinClient:
    """The same API as AsyncTwinClient, without asyncio (one event loop in a background thread)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout: float = 30.0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="twin-client", daemon=True)
        self._thread.start()
        self._async = self._run(_make_async(url, token, timeout))
        self.url = self._async.url

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed() or not self._loop.is_running():
            coroutine.close()
            raise TwinError(f"this client of {self.url if hasattr(self, 'url') else 'the twin'} is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> TwinClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            self._run(self._async.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_running():
                self._loop.close()

    def health(self) -> dict:
        return self._run(self._async.health())

    def scene(self) -> dict:
        return self._run(self._async.scene())

    def prims(self, kind: str | None = None) -> list[str]:
        return self._run(self._async.prims(kind))

    def prim(self, path: str) -> dict:
        return self._run(self._async.prim(path))

    def read(self, key: str) -> Sample:
        return self._run(self._async.read(key))

    def read_many(self, keys: Sequence[str] | None = None) -> dict[str, Sample]:
        return self._run(self._async.read_many(keys))

    def write(self, key: str, value: float | int | bool | str) -> dict:
        return self._run(self._async.write(key, value))

    def force(self, node: str, value: object = None, *, mode: str | None = None,
              period_s: float | None = None) -> dict:
        return self._run(self._async.force(node, value, mode=mode, period_s=period_s))

    def release(self, node: str = "all") -> list[str]:
        return self._run(self._async.release(node))

    def forces(self) -> list[dict]:
        return self._run(self._async.forces())

    def subscribe(self, signals: Sequence[str] = (), subtrees: Sequence[str] = (), *,
                  idle_timeout: float = 30.0) -> Iterator[Update]:
        updates = self._async.subscribe(signals, subtrees, idle_timeout=idle_timeout)
        try:
            while True:
                try:
                    yield self._run(updates.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(updates.aclose())

    def history(self, key: str, start: float, end: float, *, step: float | None = None,
                how: str = "last") -> History:
        return self._run(self._async.history(key, start, end, step=step, how=how))

    def state_at(self, instant: float) -> dict[str, Sample]:
        return self._run(self._async.state_at(instant))

    def export(self, path: str | Path, *, keys: Sequence[str] | None = None, start: float | None = None,
               end: float | None = None) -> Path:
        return self._run(self._async.export(path, keys=keys, start=start, end=end))

    def alarms(self) -> list[Alarm]:
        return self._run(self._async.alarms())

    def acknowledge(self, alarm_id: int, comment: str = "") -> Alarm:
        return self._run(self._async.acknowledge(alarm_id, comment))

    def alarm_history(self, start: float | None = None, end: float | None = None,
                      key: str | None = None) -> list[dict]:
        return self._run(self._async.alarm_history(start, end, key))

    def robots(self) -> list[Robot]:
        return self._run(self._async.robots())

    def fk(self, robot: str, q) -> np.ndarray:
        return self._run(self._async.fk(robot, q))

    def ik(self, robot: str, targets, *, link: str | None = None, seeds: int = 8) -> IkSolution:
        return self._run(self._async.ik(robot, targets, link=link, seeds=seeds))

    def check_motion(self, robot: str, trajectory, *, times=None, distance: bool = True,
                     max_distance: float = 0.5) -> MotionCheck | list[MotionCheck]:
        return self._run(self._async.check_motion(robot, trajectory, times=times, distance=distance,
                                                  max_distance=max_distance))

    def whatif(self, *, sweep: Sequence[SweepParameter] = (), replications: int = 30, hours: float = 8.0,
               warmup_hours: float = 0.0, seed: int = 1, start: str = "empty", wait: bool = True,
               timeout: float = 600.0) -> dict:
        return self._run(self._async.whatif(sweep=sweep, replications=replications, hours=hours,
                                            warmup_hours=warmup_hours, seed=seed, start=start, wait=wait,
                                            timeout=timeout))


async def _make_async(url: str, token: str | None, timeout: float) -> AsyncTwinClient:
    return AsyncTwinClient(url, token=token, timeout=timeout)  # created on the loop that will use it


def connect(url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout: float = 30.0) -> TwinClient:
    """A synchronous client of the twin at `url`; use it in a `with` block or call close()."""
    return TwinClient(url, token=token, timeout=timeout)


def connect_async(url: str = "http://127.0.0.1:8000", *, token: str | None = None,
                  timeout: float = 30.0) -> AsyncTwinClient:
    """An asyncio client of the twin at `url`: `async with twin.connect_async(url) as plant: ...`."""
    return AsyncTwinClient(url, token=token, timeout=timeout)
