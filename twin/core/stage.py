"""The twin's USD stage: the authored layout below, a live layer on top.

Runtime values never land in the authored file. They go to an anonymous live
layer, inserted as a sublayer of the stage's session layer so it is stronger than
the layout; `LiveLayerWriter` copies the runtime cache into it at a bounded rate
inside one `Sdf.ChangeBlock` per flush, so USD sees one batched change, not hundreds.
"""

from __future__ import annotations

import math
import os
import re
import time
from functools import cached_property
from pathlib import Path

import numpy as np
from pxr import Gf, Sdf, Tf, Usd, UsdGeom, Vt

from twin.core.cache import RuntimeCache
from twin.core.errors import LayoutError

_PARSE_ERROR = re.compile(r":(\d+):\d+: (.*?)'?$", re.MULTILINE)


def _parse_error(path: Path, error: Exception) -> LayoutError:
    match = _PARSE_ERROR.search(str(error))
    if match:
        return LayoutError(path, match.group(2).strip(), line=int(match.group(1)))
    message = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
    return LayoutError(path, f"cannot be read as USD: {message}")


def usd_to_numpy(matrix: Gf.Matrix4d) -> np.ndarray:
    """USD stores row-vector matrices; the twin uses column vectors (p' = M @ p)."""
    return np.array(matrix, dtype=np.float64).T


def numpy_to_usd(matrix: np.ndarray) -> Gf.Matrix4d:
    return Gf.Matrix4d(np.asarray(matrix, np.float64).T.tolist())


class TwinStage:
    """An authored layout opened read-only, with a live layer for runtime values."""

    def __init__(self, layout: str | Path):
        self.path = Path(layout).resolve()
        if not self.path.is_file():
            raise LayoutError(self.path, "file not found")
        try:
            authored = Sdf.Layer.FindOrOpen(str(self.path))
        except Tf.ErrorException as error:
            raise _parse_error(self.path, error) from None
        if authored is None:
            raise LayoutError(self.path, "cannot be opened as a USD layer")
        self.authored = authored
        self.live = Sdf.Layer.CreateAnonymous("live.usda")
        self.stage = Usd.Stage.Open(authored)
        self.stage.GetSessionLayer().subLayerPaths.append(self.live.identifier)
        self.stage.SetEditTarget(Usd.EditTarget(self.live))
        root = self.stage.GetDefaultPrim()
        if not root:
            raise LayoutError(self.path, "has no defaultPrim; the twin needs one (e.g. /Factory)")
        self.root_path = str(root.GetPath())

    @cached_property
    def authored_stage(self) -> Usd.Stage:
        """The layout as authored, without the live layer: models (robot chains) are read from here, so a
        model built after the runtime has written poses is the same as one built at start."""
        return Usd.Stage.Open(self.authored, Sdf.Layer.CreateAnonymous("authored-session.usda"))

    def prim(self, path: str) -> Usd.Prim:
        prim = self.stage.GetPrimAtPath(path) if Sdf.Path.IsValidPathString(path) else None
        if not prim:
            raise KeyError(f"no prim {path!r} in {self.path.name}")
        return prim

    def prims_of_kind(self, kind: str) -> list[Usd.Prim]:
        """Prims whose `twin:kind` attribute equals `kind`, in stage order."""
        found = []
        for prim in self.stage.Traverse():
            attribute = prim.GetAttribute("twin:kind")
            if attribute and attribute.Get() == kind:
                found.append(prim)
        return found

    def world_transform(self, path: str) -> np.ndarray:
        xformable = UsdGeom.Xformable(self.prim(path))
        return usd_to_numpy(xformable.ComputeLocalToWorldTransform(Usd.TimeCode.Default()))

    def local_transform(self, path: str, *, authored: bool = False) -> np.ndarray:
        """The prim's local transform, live (the default) or as the layout authors it."""
        prim = self.authored_stage.GetPrimAtPath(path) if authored else self.prim(path)
        xformable = UsdGeom.Xformable(prim)
        return usd_to_numpy(xformable.GetLocalTransformation(Usd.TimeCode.Default()))

    def attribute(self, path: str, name: str, default=None):
        attribute = self.prim(path).GetAttribute(name)
        value = attribute.Get() if attribute else None
        return default if value is None else value

    def snapshot_layer(self, layout_reference: str | None = None) -> Sdf.Layer:
        """The live state as a standalone layer over the authored layout, with the layout's stage metadata.

        `layout_reference` is how the sublayer names the layout (default: its absolute path); a path
        relative to where the snapshot is saved lets the pair move together.
        """
        layer = Sdf.Layer.CreateAnonymous("snapshot.usda")
        layer.TransferContent(self.live)
        layer.subLayerPaths.append(layout_reference or self.path.as_posix())
        layer.defaultPrim = self.authored.defaultPrim
        for key in _STAGE_METADATA:  # a stage opened from the snapshot alone reads these from its root layer
            if self.authored.pseudoRoot.HasInfo(key):
                layer.pseudoRoot.SetInfo(key, self.authored.pseudoRoot.GetInfo(key))
        layer.customLayerData = {"twin:snapshotTime": time.time(), "twin:layout": self.path.as_posix()}
        return layer

    def save_snapshot(self, out: str | Path) -> Path:
        """Write the snapshot to `out`, naming the layout relative to it."""
        out = Path(out).resolve()
        layer = self.snapshot_layer(Path(os.path.relpath(self.path, out.parent)).as_posix())
        if not layer.Export(str(out)):
            raise OSError(f"could not write snapshot {out}")
        return out


_STAGE_METADATA = (UsdGeom.Tokens.upAxis, UsdGeom.Tokens.metersPerUnit)
_SIGNAL_TYPES = {"float": Sdf.ValueTypeNames.Double, "int": Sdf.ValueTypeNames.Int64,
                 "bool": Sdf.ValueTypeNames.Bool, "text": Sdf.ValueTypeNames.String}


class LiveLayerWriter:
    """Copies changed cache rows into the live layer, at most `max_rate_hz` times a second."""

    def __init__(self, twin_stage: TwinStage, cache: RuntimeCache, max_rate_hz: float = 4.0):
        self.twin_stage = twin_stage
        self.cache = cache
        self.min_interval = 1.0 / max_rate_hz
        self.flushed_version = 0
        self.last_flush = -math.inf
        self.flushes = 0
        self._signal_specs: dict[int, Sdf.AttributeSpec] = {}
        self._transform_specs: dict[int, Sdf.AttributeSpec] = {}
        self.rejected: dict[int, str] = {}  # signal rows USD refused (an integer beyond Int64), and why

    def maybe_flush(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self.last_flush < self.min_interval:
            return False
        self.flush()
        self.last_flush = now
        return True

    def flush(self) -> int:
        """Write every row changed since the last flush; returns how many rows were written."""
        cache = self.cache
        with cache.lock:
            version = cache.version
            signal_rows = cache.changed_signals(self.flushed_version)
            transform_rows = cache.changed_transforms(self.flushed_version)
            values = [cache.signal_value(int(row)) for row in signal_rows]
            matrices = cache.transforms[transform_rows].copy()
        layer = self.twin_stage.live
        with Sdf.ChangeBlock():
            for row, value in zip(signal_rows, values, strict=True):
                spec = self._signal_specs.get(row) or self._signal_spec(int(row))
                if value is None or (isinstance(value, float) and not math.isfinite(value)):
                    continue
                try:
                    spec.default = self._usd_value(int(row), value)
                except (Tf.ErrorException, OverflowError, ValueError) as error:  # one bad row never blocks the rest
                    self.rejected[int(row)] = str(error).strip().splitlines()[-1]
            for row, matrix in zip(transform_rows, matrices, strict=True):
                spec = self._transform_specs.get(row) or self._transform_spec(layer, int(row))
                spec.default = numpy_to_usd(matrix)
        self.flushed_version = version
        self.flushes += 1
        return len(signal_rows) + len(transform_rows)

    def _usd_value(self, row: int, value):
        info = self.cache.signals[row]
        if info.width > 1:
            return Vt.DoubleArray(np.asarray(value, np.float64).tolist())  # NaN marks an empty place
        if info.kind == "bool":
            return bool(value)
        if info.kind == "int":
            return int(value)
        return value

    def _signal_spec(self, row: int) -> Sdf.AttributeSpec:
        info = self.cache.signals[row]
        prim_spec = Sdf.CreatePrimInLayer(self.twin_stage.live, info.prim)
        type_name = Sdf.ValueTypeNames.DoubleArray if info.width > 1 else _SIGNAL_TYPES[info.kind]
        spec = prim_spec.attributes.get(info.attr) or Sdf.AttributeSpec(prim_spec, info.attr, type_name)
        self._signal_specs[row] = spec
        return spec

    def _transform_spec(self, layer: Sdf.Layer, row: int) -> Sdf.AttributeSpec:
        prim_spec = Sdf.CreatePrimInLayer(layer, self.cache.transform_prims[row])
        spec = Sdf.AttributeSpec(prim_spec, "xformOp:transform", Sdf.ValueTypeNames.Matrix4d)
        order = Sdf.AttributeSpec(prim_spec, "xformOpOrder", Sdf.ValueTypeNames.TokenArray,
                                  Sdf.VariabilityUniform)
        order.default = Vt.TokenArray(["xformOp:transform"])
        self._transform_specs[row] = spec
        return spec
