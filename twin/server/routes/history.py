"""REST API of the historian: a signal's past values, the twin's state at an instant, CSV export, and replay
frames (the whole twin as it was at an instant, in the live stream's binary format; twin/history/replay.py)."""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from twin.core.errors import TwinError, UnknownSignalError
from twin.history.replay import Replay
from twin.history.store import Historian
from twin.server.deps import Finite, HistorianDep

router = APIRouter(prefix="/api")


async def need_replay(request: Request, historian: HistorianDep) -> Replay:
    """The replay that create_app made beside the historian, or the historian's 404 without one."""
    return request.app.state.replay


ReplayDep = Annotated[Replay, Depends(need_replay)]


def _json(values) -> list:
    array = np.asarray(values, dtype=object if isinstance(values, list) else None)
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in array.tolist()]


@router.get("/history/range")
async def history_range(store: HistorianDep) -> dict:
    """Source times of the first and last stored samples (null while empty): the replay slider's extent."""
    start, end = await asyncio.to_thread(store.time_range)
    return {"start": start, "end": end}


@router.get("/replay/frame", response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
async def replay_frame(at: Finite, replay: ReplayDep) -> Response:
    """Every row of the twin as it was at `at` (Unix seconds): a binary snapshot frame of the live stream's
    format, flagged as a replay (docs/history.md). Signals with no value yet at `at` are waiting."""
    replay.prepare()  # here, on the event loop: it reads the stage, which the live step writes on this thread
    data = await asyncio.to_thread(replay.frame_at, at)
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


@router.get("/history/signal")
async def signal(key: str, start: Finite, end: Finite, store: HistorianDep,
                 step: Annotated[Finite | None, Query(gt=0)] = None,
                 how: str = Query("last", pattern="^(last|mean)$")) -> dict:
    """Raw samples of one signal over [start, end] (Unix seconds), or resampled every `step` seconds."""
    try:
        if step is None:
            raw = await asyncio.to_thread(store.series, key, start, end)
            return {"key": key, "times": raw["times"].tolist(), "values": _json(raw["values"]),
                    "status": raw["status"].tolist()}
        if (end - start) / step > 100_000:
            raise HTTPException(422, "more than 100,000 steps: take a longer step")
        out = await asyncio.to_thread(store.resample, key, start, end, step, how)
        return {"key": key, "times": out["times"].tolist(), "values": _json(out["values"]), "how": how}
    except TwinError as error:
        raise HTTPException(404 if isinstance(error, UnknownSignalError) else 422, str(error)) from None


@router.get("/history/state")
async def state(at: Finite, store: HistorianDep) -> dict:
    """Every signal's value, quality and source time as they were at `at` (Unix seconds)."""
    return await asyncio.to_thread(store.state_at, at)


async def _export(store: Historian, store_method: str, suffix: str, media_type: str, keys: str | None,
                  start: float | None, end: float | None) -> FileResponse:
    """Write the samples over [start, end] (unbounded where None) to a temporary file, sent then deleted."""
    start, end = -math.inf if start is None else start, math.inf if end is None else end
    descriptor, name = tempfile.mkstemp(suffix=suffix)
    os.close(descriptor)
    path = Path(name)
    try:
        await asyncio.to_thread(getattr(store, store_method), path, keys.split(",") if keys else None, start, end)
    except TwinError as error:
        path.unlink(missing_ok=True)
        raise HTTPException(404, str(error)) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(path, media_type=media_type, filename=f"history{suffix}",
                        background=BackgroundTask(path.unlink, missing_ok=True))


@router.get("/history/export.csv")
async def export_csv(store: HistorianDep, keys: str | None = None, start: Finite | None = None,
                     end: Finite | None = None) -> FileResponse:
    """Samples as CSV; `keys` is a comma-separated list of signals (default: all)."""
    return await _export(store, "export_csv", ".csv", "text/csv", keys, start, end)


@router.get("/history/export.parquet")
async def export_parquet(store: HistorianDep, keys: str | None = None, start: Finite | None = None,
                         end: Finite | None = None) -> FileResponse:
    """Samples as Parquet (zstd; arrays as lists of float64); `keys` as for CSV."""
    return await _export(store, "export_parquet", ".parquet", "application/vnd.apache.parquet", keys, start, end)
