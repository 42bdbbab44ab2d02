"""The layout: its GLB for the viewer, its prim tree, and one prim's details."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from twin.server.deps import SettingsDep, TwinDep
from twin.sim.scene_info import prim_details, scene_tree

router = APIRouter()


@router.get("/scene.glb")
def scene_glb(settings: SettingsDep) -> FileResponse:
    glb_path = settings.glb_path
    if glb_path is None or not Path(glb_path).is_file():
        raise HTTPException(404, "this twin was started without a GLB of its layout")
    return FileResponse(glb_path, media_type="model/gltf-binary")


@router.get("/api/scene")
async def scene(twin: TwinDep) -> dict:
    return scene_tree(twin)


@router.get("/api/prims/{path:path}")
async def prim(path: str, twin: TwinDep) -> dict:
    try:
        return prim_details(twin, "/" + path.strip("/"))
    except KeyError as error:
        raise HTTPException(404, str(error.args[0])) from None
