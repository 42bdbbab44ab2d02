"""REST API of the historian: a signal's past values, the twin's state at an instant, CSV export."""

from __future__ import annotations

import asyncio
import math
import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from twin.errors import TwinError
from twin.history import Historian


def _json(values) -> list:
    array = np.asarray(values, dtype=object if isinstance(values, list) else None)
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in array.tolist()]


def history_router(historian: Historian | None) -> APIRouter:
    router = APIRouter(prefix="/api/history")

    def need() -> Historian:
        if historian is None:
            raise HTTPException(404, "this twin keeps no history: start it with --history FILE")
        return historian

    @router.get("/signal")
    async def signal(key: str, start: float, end: float, step: float | None = Query(None, gt=0),
                     how: str = Query("last", pattern="^(last|mean)$")) -> dict:
        """Raw samples of one signal over [start, end] (Unix seconds), or resampled every `step` seconds."""
        store = need()
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
            raise HTTPException(404 if "no signal" in str(error) else 422, str(error)) from None

    @router.get("/state")
    async def state(at: float) -> dict:
        """Every signal's value, quality and source time as they were at `at` (Unix seconds)."""
        return await asyncio.to_thread(need().state_at, at)

    @router.get("/export.csv")
    async def export(keys: str | None = None, start: float = -math.inf, end: float = math.inf) -> FileResponse:
        """Samples as CSV; `keys` is a comma-separated list of signals (default: all)."""
        store = need()
        path = Path(tempfile.mkstemp(suffix=".csv")[1])
        try:
            await asyncio.to_thread(store.export_csv, path, keys.split(",") if keys else None, start, end)
        except TwinError as error:
            path.unlink(missing_ok=True)
            raise HTTPException(404, str(error)) from None
        return FileResponse(path, media_type="text/csv", filename="history.csv",
                            background=BackgroundTask(path.unlink, missing_ok=True))

    return router
