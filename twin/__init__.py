"""Factory twin: a digital twin of a factory line on USD, OPC-UA and Warp.

The public API is what this module exports; everything else may change.

    from twin import Twin, Chain
    twin = Twin("factory.usda")            # authored layout + live layer + runtime cache
    chain = Chain.from_urdf("kr16_2.urdf")
    poses = chain.fk(q)                   # (B, n_links, 4, 4), one Warp launch
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Twin": "twin.runtime",
    "TwinStage": "twin.stage",
    "RuntimeCache": "twin.cache",
    "Chain": "twin.kinematics",
    "KinematicsBatch": "twin.kinematics",
    "load_urdf": "twin.urdf",
    "TwinError": "twin.errors",
    "LayoutError": "twin.errors",
    "UrdfError": "twin.errors",
    "BindingError": "twin.errors",
    "KinematicsError": "twin.errors",
    "read_line": "twin.line.model",
    "LineModel": "twin.line.model",
    "run_whatif": "twin.line.whatif",
    "SweepParameter": "twin.line.whatif",
    "LiveStart": "twin.line.live",
    "WhatIfClient": "twin.line.client",
    "WhatIfError": "twin.line.client",
}

__all__ = [
    "BindingError", "Chain", "KinematicsBatch", "KinematicsError", "LayoutError", "LineModel", "LiveStart",
    "RuntimeCache", "SweepParameter", "Twin", "TwinError", "TwinStage", "UrdfError", "WhatIfClient", "WhatIfError",
    "load_urdf", "read_line", "run_whatif",
]

if TYPE_CHECKING:
    from twin.cache import RuntimeCache
    from twin.errors import BindingError, KinematicsError, LayoutError, TwinError, UrdfError
    from twin.kinematics import Chain, KinematicsBatch
    from twin.line.client import WhatIfClient, WhatIfError
    from twin.line.live import LiveStart
    from twin.line.model import LineModel, read_line
    from twin.line.whatif import SweepParameter, run_whatif
    from twin.runtime import Twin
    from twin.stage import TwinStage
    from twin.urdf import load_urdf


def __getattr__(name: str):
    """Import on first use: `import twin` stays fast, Warp and USD load only when needed."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'twin' has no attribute {name!r}")
