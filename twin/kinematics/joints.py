"""Joint type codes, shared by the chain builders (Python) and the kernels (Warp) that branch on them."""

from __future__ import annotations

FIXED, REVOLUTE, PRISMATIC = 0, 1, 2
TYPE_CODES = {"fixed": FIXED, "revolute": REVOLUTE, "continuous": REVOLUTE, "prismatic": PRISMATIC}
