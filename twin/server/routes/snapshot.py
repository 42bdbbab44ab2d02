"""The twin's live state exported as USD."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from twin.server.deps import TwinDep

router = APIRouter(prefix="/api")


@router.get("/snapshot.usda", response_class=PlainTextResponse)
async def snapshot(twin: TwinDep) -> str:
    """The live state as a USD layer over the authored layout (what `twin snapshot` saves)."""
    twin.live_writer.flush()
    return twin.stage.snapshot_layer().ExportToString()
