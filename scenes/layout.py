"""New and existing layout files: the stage settings every twin layout shares."""

from __future__ import annotations

import re
from pathlib import Path

from pxr import Sdf, Tf, Usd, UsdGeom

from twin.core.errors import LayoutError

ROOT = "/Factory"
_PARSE_ERROR = re.compile(r":(\d+):\d+: (.*?)'?$", re.MULTILINE)  # USD's "file:line:col: message"


def new_layout(path: str | Path) -> Usd.Stage:
    """A new layout file: Z up, metres, and an Xform `/Factory` as the default prim.

    A layer of that file still open in this process is cleared and reused (USD refuses to
    create a second one), so a scene can be rebuilt in place.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    layer = Sdf.Layer.Find(str(path))
    if layer:
        layer.Clear()
        stage = Usd.Stage.Open(layer)
    else:
        stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, ROOT).GetPrim())
    return stage


def open_layout(path: str | Path) -> Usd.Stage:
    """Open a layout file; a missing or unreadable file is a LayoutError naming it."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(path, "file not found")
    try:
        layer = Sdf.Layer.FindOrOpen(str(path))
    except Tf.ErrorException as error:
        match = _PARSE_ERROR.search(str(error))
        if match:
            raise LayoutError(path, match.group(2).strip(), line=int(match.group(1))) from None
        raise LayoutError(path, f"cannot be read as USD: {str(error).strip()}") from None
    if layer is None:
        raise LayoutError(path, "cannot be opened as a USD layer")
    return Usd.Stage.Open(layer)
