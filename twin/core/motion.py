"""The answer of a motion check: plain data, so that the remote SDK returns it without Warp or USD."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MotionCheck:
    """The answer for one trajectory: its first contact, or its least clearance when it is free.

    `sample` is the last trajectory sample at or before the contact and `fraction` how far towards the next
    one the contact lies; `time` interpolates the trajectory's times the same way. `other` is the prim the link
    touches (a cell prim, or another link's prim). `penetration` is the deepest vertex of either body inside
    the other; `min_distance` the least vertex-to-surface clearance over the trajectory's samples (None when
    over `max_distance`, or not asked for).
    """

    collides: bool
    sample: int | None = None
    fraction: float | None = None
    time: float | None = None
    link: str | None = None
    other: str | None = None
    penetration: float | None = None
    min_distance: float | None = None
    q: list[float] | None = None

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict) -> MotionCheck:
        return cls(bool(data["collides"]), **{key: data.get(key) for key in cls.__dataclass_fields__
                                              if key != "collides"})
