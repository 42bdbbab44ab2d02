"""What the SDK returns: plain, typed values built from the server's JSON (or the same JSON made in-process),
so a remote client and an in-process twin give identical results."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.core.errors import TwinError
from twin.core.transforms import pose_to_matrix
from twin.stream.protocol import Frame, StreamState


class ApiError(TwinError):
    """The twin refused a request; `status` is the HTTP status, `detail` the server's reason."""

    def __init__(self, status: int, detail: str, request: str = ""):
        self.status, self.detail, self.request = status, detail, request
        super().__init__(f"{request}: {status} {detail}" if request else f"{status} {detail}")


class NotFoundError(ApiError, KeyError):
    """No such signal, prim, robot, alarm or job (404)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return ApiError.__str__(self)


class PermissionDeniedError(ApiError, PermissionError):
    """The token is missing, unknown, or its role may not do this (401/403)."""


class ConflictError(ApiError):
    """The request clashes with the twin's state, e.g. an alarm someone else acknowledged (409)."""


class InvalidRequestError(ApiError, ValueError):
    """The request is malformed or out of range (400/422)."""


def api_error(status: int, detail: Any, request: str = "") -> ApiError:
    """The exception class for an HTTP status, with the server's detail as readable text."""
    if isinstance(detail, list):  # FastAPI's validation errors: say which field and why
        detail = "; ".join(f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}"
                           for item in detail if isinstance(item, dict)) or str(detail)
    kind = {404: NotFoundError, 401: PermissionDeniedError, 403: PermissionDeniedError, 409: ConflictError,
            400: InvalidRequestError, 422: InvalidRequestError}.get(status, ApiError)
    return kind(status, str(detail), request)


def _floats(values) -> np.ndarray:
    """JSON numbers as float64, with null (how the server sends NaN) back to NaN; nested lists keep their shape."""
    return np.array([_floats(v) if isinstance(v, list) else math.nan if v is None else v for v in values],
                    np.float64)


@dataclass(frozen=True)
class Sample:
    """One signal's value with its OPC-UA status, quality ('good', 'uncertain', 'bad', 'stale') and source
    time (Unix seconds). Arrays are float64 numpy arrays; `label` names an enum code."""

    key: str
    value: float | np.ndarray | str | None
    quality: str
    status: int
    time: float | None
    label: str | None = None

    @classmethod
    def from_json(cls, key: str, data: dict) -> Sample:
        value = data.get("v")
        if isinstance(value, list):
            value = _floats(value)
        when = data.get("t")
        return cls(key, value, data.get("q", "bad"), int(data.get("s", 0)), when, data.get("l"))


@dataclass(frozen=True)
class History:
    """A signal's past values: `times` (Unix seconds) and `values` as numpy arrays (`status` for raw)."""

    key: str
    times: np.ndarray
    values: np.ndarray | list
    status: np.ndarray | None = None

    @classmethod
    def from_json(cls, data: dict) -> History:
        values = data["values"]
        if values and not any(isinstance(v, str) for v in values):
            values = _floats(values)
        elif not values:
            values = np.zeros(0)
        status = np.array(data["status"], np.uint32) if data.get("status") is not None else None
        return cls(data["key"], np.array(data["times"], np.float64), values, status)

    def __len__(self) -> int:
        return len(self.times)

    def to_pandas(self):
        """A DataFrame indexed by UTC time: `value` (or one column per array element), `status`."""
        try:
            import pandas as pd  # type: ignore[import-untyped]  # an optional extra, without pandas-stubs
        except ImportError:
            raise ImportError("History.to_pandas needs pandas: pip install 'factory-twin[pandas]'") from None
        index = pd.to_datetime(self.times, unit="s", utc=True)
        values = self.values
        if isinstance(values, np.ndarray) and values.ndim == 2:
            frame = pd.DataFrame(values, index=index, columns=[f"value[{i}]" for i in range(values.shape[1])])
        else:
            frame = pd.DataFrame({"value": values}, index=index)
        if self.status is not None:
            frame["status"] = self.status
        frame.index.name = "time"
        return frame


@dataclass(frozen=True)
class Alarm:
    """An open alarm: `state` is 'active', 'acknowledged' or 'cleared' (cleared, not yet acknowledged)."""

    id: int
    key: str
    rule: str
    kind: str
    severity: str
    message: str
    state: str
    raised: float
    value: Any = None
    acknowledged_by: str | None = None
    comment: str = ""

    @classmethod
    def from_json(cls, data: dict) -> Alarm:
        return cls(data["id"], data["key"], data["rule"], data["kind"], data["severity"], data["message"],
                   data["state"], data["raised"], data.get("value"), data.get("acknowledged_by"),
                   data.get("comment", ""))


@dataclass(frozen=True)
class Robot:
    """A robot of the scene: its joints and limits, its links, its pose in the world, its current joints."""

    path: str
    joints: tuple[str, ...]
    links: tuple[str, ...]
    flange: str  # the link IK moves by default
    lower: np.ndarray
    upper: np.ndarray
    base: np.ndarray  # 4x4 world transform of the robot prim
    q: np.ndarray | None  # the current joint vector, if the twin has one

    @classmethod
    def from_json(cls, data: dict) -> Robot:
        return cls(data["path"], tuple(data["joints"]), tuple(data["links"]), data["flange"], _floats(data["lower"]),
                   _floats(data["upper"]), np.array(data["base"], np.float64),
                   None if data.get("q") is None else _floats(data["q"]))


@dataclass(frozen=True)
class IkSolution:
    """Joint vectors (B, n) reaching world targets, with per-target success and residual errors."""

    q: np.ndarray
    success: np.ndarray
    position_error: np.ndarray
    rotation_error: np.ndarray

    @classmethod
    def from_json(cls, data: dict) -> IkSolution:
        return cls(np.array(data["q"], np.float64), np.array(data["success"], bool),
                   np.array(data["position_error"], np.float64), np.array(data["rotation_error"], np.float64))


@dataclass(frozen=True)
class Update:
    """What changed in one stream frame: signals by key, link and prim transforms (4x4, in their parent's
    frame, as USD holds them), and alarm transitions. `replay`: the frame shows a past instant (its `time`),
    not the live twin."""

    version: int | None
    time: float
    signals: dict[str, Sample] = field(default_factory=dict)
    transforms: dict[str, np.ndarray] = field(default_factory=dict)
    alarm_events: list[dict] = field(default_factory=list)
    replay: bool = False


def prim_paths(tree: dict, kind: str | None = None) -> list[str]:
    """Paths of a prim tree (as /api/scene gives it), depth first, optionally of one twin:kind."""
    found = [tree["path"]] if kind is None or tree.get("kind") == kind else []
    for child in tree.get("children", []):
        found.extend(prim_paths(child, kind))
    return found


def update_from_frame(frame: Frame, state: StreamState) -> Update:
    """A stream frame's content as an Update, read from the StreamState that has just applied it."""
    schema = state.schema
    if schema is None:
        raise ValueError("a frame is read only after the schema it was decoded with")
    signals = {}
    for row in frame.signal_rows:
        key = schema["signals"][row]["key"]
        entry = state.signals[key]
        value = entry["v"].tolist() if isinstance(entry["v"], np.ndarray) else entry["v"]
        signals[key] = Sample.from_json(key, {**entry, "v": value})
    transforms = {schema["transforms"][row]: pose_to_matrix(np.asarray(pose, np.float64))
                  for row, pose in zip(frame.transform_rows, frame.poses, strict=True)}
    return Update(frame.version, frame.time, signals, transforms, replay=frame.replay)
