"""Factory twin: a digital twin of a factory line on USD, OPC-UA and Warp.

The public API is what this module exports; everything else may change. The SDK (docs/sdk.md):

    import twin
    with twin.connect("http://127.0.0.1:8000") as plant:      # or twin.open("factory.usda") in-process
        print(plant.read("/Factory/Line/Sink.twin:partsIn").value)
        for update in plant.subscribe(["/Factory/Line/Robot1.twin:jointPositions"]):
            ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS: dict[str, str | tuple[str, str]] = {
    "connect": "twin.sdk.remote",
    "connect_async": "twin.sdk.remote",
    "open": ("twin.sdk.local", "open_twin"),
    "TwinClient": "twin.sdk.remote",
    "AsyncTwinClient": "twin.sdk.remote",
    "Site": "twin.sdk.site",
    "LocalTwin": "twin.sdk.local",
    "Sample": "twin.sdk.types",
    "History": "twin.sdk.types",
    "Update": "twin.sdk.types",
    "Alarm": "twin.sdk.types",
    "Robot": "twin.sdk.types",
    "IkSolution": "twin.sdk.types",
    "ApiError": "twin.sdk.types",
    "NotFoundError": "twin.sdk.types",
    "PermissionDeniedError": "twin.sdk.types",
    "ConflictError": "twin.sdk.types",
    "InvalidRequestError": "twin.sdk.types",
    "Twin": "twin.sim.runtime",
    "TwinStage": "twin.core.stage",
    "RuntimeCache": "twin.core.cache",
    "Chain": "twin.kinematics.chain",
    "KinematicsBatch": "twin.kinematics.batch",
    "load_urdf": "twin.kinematics.urdf",
    "TwinError": "twin.core.errors",
    "LayoutError": "twin.core.errors",
    "UrdfError": "twin.core.errors",
    "BindingError": "twin.core.errors",
    "KinematicsError": "twin.core.errors",
    "read_line": "twin.line.model",
    "LineModel": "twin.line.model",
    "run_whatif": "twin.line.whatif",
    "SweepParameter": "twin.line.sweep",
    "LiveStart": "twin.line.live",
    "WhatIfClient": "twin.line.client",
    "WhatIfError": "twin.line.client",
}

__all__ = [
    "Alarm", "ApiError", "AsyncTwinClient", "BindingError", "Chain", "ConflictError", "History", "IkSolution",
    "InvalidRequestError", "KinematicsBatch", "KinematicsError", "LayoutError", "LineModel", "LiveStart", "LocalTwin",
    "NotFoundError", "PermissionDeniedError", "Robot", "RuntimeCache", "Sample", "Site", "SweepParameter", "Twin",
    "TwinClient", "TwinError", "TwinStage", "Update", "UrdfError", "WhatIfClient", "WhatIfError", "connect",
    "connect_async", "load_urdf", "open", "read_line", "run_whatif",
]

if TYPE_CHECKING:
    from twin.core.cache import RuntimeCache
    from twin.core.errors import BindingError, KinematicsError, LayoutError, TwinError, UrdfError
    from twin.core.stage import TwinStage
    from twin.kinematics.batch import KinematicsBatch
    from twin.kinematics.chain import Chain
    from twin.kinematics.urdf import load_urdf
    from twin.line.client import WhatIfClient, WhatIfError
    from twin.line.live import LiveStart
    from twin.line.model import LineModel, read_line
    from twin.line.sweep import SweepParameter
    from twin.line.whatif import run_whatif
    from twin.sdk.local import LocalTwin
    from twin.sdk.local import open_twin as open
    from twin.sdk.remote import AsyncTwinClient, TwinClient, connect, connect_async
    from twin.sdk.types import (
        Alarm,
        ApiError,
        ConflictError,
        History,
        IkSolution,
        InvalidRequestError,
        NotFoundError,
        PermissionDeniedError,
        Robot,
        Sample,
        Update,
    )
    from twin.sim.runtime import Twin


def __getattr__(name: str):
    """Import on first use: `import twin` stays fast, Warp and USD load only when needed."""
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'twin' has no attribute {name!r}")
