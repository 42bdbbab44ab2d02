"""A minimal glTF 2.0 binary (GLB) builder: one buffer, tightly packed views, accessors with bounds."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

_COMPONENT = {np.dtype(np.float32): 5126, np.dtype(np.uint32): 5125, np.dtype(np.uint16): 5123,
              np.dtype(np.uint8): 5121}
_TYPE = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


class GlbBuilder:
    """Collects glTF objects; `add_*` return their index, `to_bytes` packs the GLB."""

    def __init__(self) -> None:
        self.gltf: dict[str, Any] = {"asset": {"version": "2.0", "generator": "twin.scenes.gltf"}, "scene": 0,
                                     "scenes": [{"nodes": []}], "nodes": []}
        self._binary = bytearray()

    def _append(self, key: str, item: dict) -> int:
        self.gltf.setdefault(key, []).append(item)
        return len(self.gltf[key]) - 1

    def add_view(self, data: bytes, target: int | None = None) -> int:
        self._binary.extend(b"\0" * (-len(self._binary) % 4))  # every view starts 4-byte aligned
        view = {"buffer": 0, "byteOffset": len(self._binary), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self._binary.extend(data)
        return self._append("bufferViews", view)

    def add_accessor(self, array: np.ndarray, *, indices: bool = False, normalized: bool = False,
                     bounds: bool = False) -> int:
        """An accessor over a new view of `array` (n,) or (n, k)."""
        array = np.ascontiguousarray(array)
        width = 1 if array.ndim == 1 else array.shape[1]
        view = self.add_view(array.tobytes(), ELEMENT_ARRAY_BUFFER if indices else ARRAY_BUFFER)
        accessor = {"bufferView": view, "componentType": _COMPONENT[array.dtype], "count": len(array),
                    "type": _TYPE[width]}
        if normalized:
            accessor["normalized"] = True
        if bounds:
            accessor["min"] = array.reshape(len(array), -1).min(axis=0).tolist()
            accessor["max"] = array.reshape(len(array), -1).max(axis=0).tolist()
        return self._append("accessors", accessor)

    def add_indices(self, triangles: np.ndarray, vertex_count: int) -> int:
        dtype = np.uint16 if vertex_count < 65535 else np.uint32
        return self.add_accessor(triangles.reshape(-1).astype(dtype), indices=True)

    def add(self, key: str, item: dict) -> int:
        """Any other glTF object (meshes, materials, textures, samplers, images)."""
        return self._append(key, item)

    def add_node(self, node: dict, parent: int | None) -> int:
        index = self._append("nodes", node)
        if parent is None:
            self.gltf["scenes"][0]["nodes"].append(index)
        else:
            self.gltf["nodes"][parent].setdefault("children", []).append(index)
        return index

    def to_bytes(self) -> bytes:
        gltf = dict(self.gltf)
        if self._binary:
            self._binary.extend(b"\0" * (-len(self._binary) % 4))
            gltf["buffers"] = [{"byteLength": len(self._binary)}]
        text = json.dumps(gltf, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
        if self._binary:
            chunks += struct.pack("<II", len(self._binary), 0x004E4942) + bytes(self._binary)
        return struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks
