"""The scene as JSON: the prim tree, and one prim's authored attributes with its live signals.

Shared by the REST API and the in-process SDK, so both describe a prim the same way.
"""

from __future__ import annotations

import math

import numpy as np
from pxr import Gf, Sdf, Usd, Vt

from twin.sim.runtime import Twin
from twin.stream.frames import signal_json

_MAX_INLINE_ARRAY = 32  # larger attribute arrays (mesh points...) are summarised, not sent
# An instanceable prim's contents are instance proxies, which plain GetChildren skips; the GLB has them, so the
# tree has them too, for the viewer to name what it selects.
_CHILDREN = Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)


def json_value(value):
    """USD attribute values as JSON: numbers, strings, lists; large arrays summarised."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Gf.Matrix4d | Gf.Matrix3d):
        return np.array(value).tolist()
    if isinstance(value, Gf.Quatf | Gf.Quatd | Gf.Quath):
        return [value.GetReal(), *value.GetImaginary()]
    if isinstance(value, Sdf.AssetPath):
        return value.path
    if hasattr(value, "__len__"):
        if len(value) > _MAX_INLINE_ARRAY:
            return f"<{len(value)} values>"
        return [json_value(v) for v in value]
    if isinstance(value, Vt.Array | Sdf.Path):
        return str(value)
    return str(value)


def prim_tree(prim: Usd.Prim) -> dict:
    """The prim and everything below it, instances' contents included: `instance` marks an instanceable prim,
    `instance_proxy` a prim of its contents (read-only in USD: shared by every instance of the prototype)."""
    kind = prim.GetAttribute("twin:kind")
    node = {
        "path": str(prim.GetPath()),
        "name": prim.GetName(),
        "type": str(prim.GetTypeName()),
        "kind": kind.Get() if kind else None,
        "children": [prim_tree(child) for child in prim.GetFilteredChildren(_CHILDREN)],
    }
    if prim.IsInstance():
        node["instance"] = True
    if prim.IsInstanceProxy():
        node["instance_proxy"] = True
    return node


def scene_tree(twin: Twin) -> dict:
    return prim_tree(twin.stage.stage.GetPrimAtPath(twin.stage.root_path))


def prim_details(twin: Twin, prim_path: str) -> dict:
    """Authored attributes and live signals of one prim; KeyError naming the path if there is none."""
    prim = twin.stage.prim(prim_path)
    attributes = {attribute.GetName(): json_value(attribute.Get()) for attribute in prim.GetAttributes()}
    cache = twin.cache
    signals = []
    for info in cache.signals_of(prim_path):
        frame = signal_json(cache, info.row)
        server_time = cache.server_time[info.row]
        signals.append({
            "key": info.key, "attr": info.attr, "value": frame["v"], "quality": frame["q"],
            "status": frame["s"], "unit": info.unit, "source_time": frame["t"],
            "server_time": None if math.isnan(server_time) else round(float(server_time), 3),
        })
    kind = prim.GetAttribute("twin:kind")
    return {"path": prim_path, "type": str(prim.GetTypeName()), "kind": kind.Get() if kind else None,
            "attributes": attributes, "signals": signals}
