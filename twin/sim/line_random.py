"""The line model's random streams in plain Python, so a run on physics draws the numbers a what-if study draws.

`twin.line.kernels` gives each (replication, element) its own PCG stream seeded with Warp's
`rand_init(seed, replication * n_elements + element)`, elements in the line's breadth-first order from the
sources. `LineStream` reproduces that stream bit for bit (tests/test_physics_runtime.py checks it against Warp),
and draws durations as the kernels do: a physics run with seed s sees the arrivals, cycle times and failures of
replication 0 of the study with seed s.
"""

from __future__ import annotations

import math

from pxr import Usd

MASK = 0xFFFFFFFF
DISTRIBUTIONS = ("constant", "normal", "exponential", "lognormal")  # as twin.line.model


def _pcg(state: int) -> int:
    """Warp's `rand_pcg`: one PCG hash of a 32-bit word."""
    b = (state * 747796405 + 2891336453) & MASK
    c = (((b >> ((b >> 28) + 4)) ^ b) * 277803737) & MASK
    return (c >> 22) ^ c


class LineStream:
    """One element's stream: uniform, exponential, normal and the line model's durations."""

    def __init__(self, seed: int, offset: int):
        self.state = _pcg((seed + _pcg(offset & MASK)) & MASK)
        self.uniform()  # the kernels' reset discards the first number

    def uniform(self) -> float:
        self.state = (self.state * 747796405 + 2891336453) & MASK
        word = ((((self.state >> ((self.state >> 28) + 4)) ^ self.state) * 277803737) & MASK)
        return (((word >> 22) ^ word) + 0.5) / 4294967296.0

    def exponential(self, mean: float) -> float:
        return -mean * math.log(self.uniform())

    def standard_normal(self) -> float:
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def duration(self, distribution: str, mean: float, spread: float) -> float:
        """A duration of `mean` and coefficient of variation `spread`; normal is cut at 10 % of the mean."""
        if distribution == "exponential":
            return self.exponential(mean)
        if spread <= 0.0 or distribution == "constant":
            return mean
        if distribution == "lognormal":
            sigma2 = math.log(1.0 + spread * spread)
            return math.exp(math.log(mean) - 0.5 * sigma2 + math.sqrt(sigma2) * self.standard_normal())
        return max(mean * (1.0 + spread * self.standard_normal()), 0.1 * mean)


def line_order(stage: Usd.Stage) -> list[str]:
    """The line's element paths in the line model's order: breadth-first from the sources, `twin:next` in order."""
    order: list[str] = []
    pending = [prim for prim in stage.Traverse() if prim.GetAttribute("twin:kind").Get() == "source"]
    while pending:
        prim = pending.pop(0)
        path = str(prim.GetPath())
        if path in order:
            continue
        order.append(path)
        relationship = prim.GetRelationship("twin:next")
        pending += [stage.GetPrimAtPath(target) for target in (relationship.GetTargets() if relationship else [])]
    return order
