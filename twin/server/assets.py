"""What the server hands the browser: the built viewer, and the layout's GLB built from its stage and cached."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from pxr import Sdf, UsdUtils

from twin.core.errors import LayoutError
from twin.scenes.gltf import EXPORTER_VERSION, export_glb
from twin.scenes.layout import open_layout

log = logging.getLogger(__name__)

_PACKAGED = Path(__file__).resolve().parent / "viewer"  # put there by the wheel's build step
_REPOSITORY = Path(__file__).resolve().parents[2] / "web" / "dist"  # an editable install or a checkout


def viewer_dir() -> Path:
    """The folder holding the viewer's index.html: the packaged copy first, then the checkout's build."""
    for candidate in (_PACKAGED, _REPOSITORY):
        if (candidate / "index.html").is_file():
            return candidate
    return _REPOSITORY  # not built: the server says so and names this folder


WEB_DIST = viewer_dir()


def default_glb_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "twin" / "glb"


def layout_key(layout: str | Path) -> str:
    """A digest of everything the GLB depends on: every layer the layout composes (sublayers, references,
    payloads), every asset they name (textures), and the exporter's version."""
    layout = Path(layout)
    if not layout.is_file():
        raise LayoutError(layout, "file not found")
    layers, _, _ = UsdUtils.ComputeAllDependencies(Sdf.AssetPath(str(layout.resolve())))
    _reload_changed(layers)  # a layer this process had open may have been edited on disk since: read again
    layers, assets, _ = UsdUtils.ComputeAllDependencies(Sdf.AssetPath(str(layout.resolve())))
    digest = hashlib.sha256(f"twin glb exporter {EXPORTER_VERSION}\n".encode())
    files = sorted({layer.realPath for layer in layers if layer.realPath} | {str(asset) for asset in assets})
    for file in files:
        digest.update(f"{Path(file).name}\n".encode())
        digest.update(hashlib.sha256(Path(file).read_bytes()).digest())
    for layer in layers:
        if not layer.realPath:  # an anonymous layer has no file: its text is its content
            digest.update(layer.ExportToString().encode())
    return digest.hexdigest()[:32]


def _reload_changed(layers: list[Sdf.Layer]) -> None:
    """USD keeps every opened layer in memory: reload those whose file changed since (USD compares the file's
    modification time); a layer with unsaved edits in this process is left as it is."""
    for layer in layers:
        if layer.realPath and not layer.dirty and Path(layer.realPath).is_file():
            layer.Reload()


def layout_glb(layout: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The viewer's GLB of a layout: taken from the cache when nothing it depends on changed, else built."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_glb_cache()
    glb = cache_dir / f"{Path(layout).stem}-{layout_key(layout)}.glb"
    if glb.is_file():
        log.info("GLB of %s from the cache: %s", layout, glb)
        return glb
    stage = open_layout(layout)
    partial = glb.with_name(f"{glb.name}.{os.getpid()}.part")  # another process may build the same key
    export_glb(stage, partial)
    os.replace(partial, glb)
    log.info("GLB of %s built: %s", layout, glb)
    return glb
