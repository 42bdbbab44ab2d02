"""A what-if sweep as data, and the request body that carries it: stdlib only, so a remote client
(`twin.connect`, `WhatIfClient`) can describe a study without loading Warp or USD."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SweepParameter:
    prim: str
    attribute: str
    values: tuple[float, ...]

    def __init__(self, prim: str, attribute: str, values: Sequence[float]):
        object.__setattr__(self, "prim", prim)
        object.__setattr__(self, "attribute", attribute)
        object.__setattr__(self, "values", tuple(float(v) for v in values))

    @property
    def label(self) -> str:
        return f"{self.prim}.{self.attribute}"


def whatif_request(*, sweep: Sequence[SweepParameter], replications: int, hours: float, warmup_hours: float,
                   seed: int, start: str) -> dict:
    """The body of POST /api/whatif (docs/line-model.md), for WhatIfClient and the SDK."""
    return {"sweep": [{"prim": p.prim, "attr": p.attribute, "values": list(p.values)} for p in sweep],
            "replications": replications, "hours": hours, "warmup_hours": warmup_hours, "seed": seed,
            "start": start}
