"""Stations (machines and tables) and the line's source and sink, each an Xform on the floor.

A station's origin is the centre of its footprint; a part in it sits at `twin:tableHeight`.
Machines leave their work zone open above the table so the part inside stays visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pxr import Usd

from .collision import add_collision_boxes
from .meshes import DARK_GREY, STEEL, Color, add_boxes, add_mesh, cylinder, define_xform

LIGHT_GREEN, LIGHT_AMBER, LIGHT_RED = (0.1, 0.75, 0.2), (1.0, 0.6, 0.0), (0.85, 0.1, 0.1)
CRATE_BLUE = (0.15, 0.3, 0.6)


def add_machine(
    stage: Usd.Stage,
    path: str,
    transform: np.ndarray,
    *,
    title: str,
    size: Sequence[float],
    cycle_time: float,
    table_height: float,
    color: Color,
) -> Usd.Prim:
    """A machine cell of `size` (x, y, z): cabinet, open work zone, head housing, panel and stack light."""
    prim = _station(stage, path, transform, title, cycle_time, table_height)
    sx, sy, sz = size
    head = max(0.3, 0.25 * sz)  # housing height at the top
    zone = sz - head - table_height  # open work zone between table and housing
    wall = 0.08
    body = [
        ((sx, sy, table_height - 0.04), (0.0, 0.0, (table_height - 0.04) / 2)),  # cabinet
        ((sx, sy, head), (0.0, 0.0, sz - head / 2)),  # head housing
        ((sx, wall, zone), (0.0, sy / 2 - wall / 2, table_height + zone / 2)),  # back wall
        *[((wall, wall, zone), (x, -sy / 2 + wall / 2, table_height + zone / 2))
          for x in (-sx / 2 + wall / 2, sx / 2 - wall / 2)],  # front pillars
    ]
    table = ((sx * 0.8, sy * 0.8, 0.04), (0.0, 0.0, table_height - 0.02))
    add_boxes(stage, f"{path}/Body", body, color)
    add_boxes(stage, f"{path}/Table", [table], STEEL)
    add_collision_boxes(stage, f"{path}/Collision", [*_named("Body", body), ("Table", *table)])
    add_boxes(stage, f"{path}/Trim", [
        ((sx + 0.01, sy + 0.01, 0.08), (0.0, 0.0, 0.04)),  # plinth
        ((0.3, 0.12, 0.4), (sx / 2 + 0.06, -sy / 2 + 0.2, table_height + 0.35)),  # control panel
    ], DARK_GREY)
    corner = (sx / 2 - 0.1, sy / 2 - 0.1)
    for name, color_, level in (("Green", LIGHT_GREEN, 0), ("Amber", LIGHT_AMBER, 1), ("Red", LIGHT_RED, 2)):
        add_mesh(stage, f"{path}/StackLight{name}",
                 cylinder(0.035, 0.06, (*corner, sz + 0.05 + 0.065 * level), sections=12), color_)
    return prim


def add_table(
    stage: Usd.Stage,
    path: str,
    transform: np.ndarray,
    *,
    title: str,
    size: Sequence[float],
    cycle_time: float,
    table_height: float,
) -> Usd.Prim:
    """A work table of footprint `size` (x, y) with its top at `table_height`."""
    prim = _station(stage, path, transform, title, cycle_time, table_height)
    sx, sy = size[0], size[1]
    top = ((sx, sy, 0.05), (0.0, 0.0, table_height - 0.025))
    add_boxes(stage, f"{path}/Top", [top], STEEL)
    add_collision_boxes(stage, f"{path}/Collision", [("Top", *top)])
    leg = table_height - 0.05
    add_boxes(stage, f"{path}/Legs", [
        *[((0.06, 0.06, leg), (x, y, leg / 2)) for x in (-sx / 2 + 0.06, sx / 2 - 0.06)
          for y in (-sy / 2 + 0.06, sy / 2 - 0.06)],
        ((sx - 0.12, sy - 0.12, 0.03), (0.0, 0.0, 0.2)),  # shelf
    ], DARK_GREY)
    return prim


def _station(stage, path, transform, title: str, cycle_time: float, table_height: float) -> Usd.Prim:
    return define_xform(stage, path, transform, kind="station", title=title, cycleTime=float(cycle_time),
                        tableHeight=float(table_height))


def add_source(stage: Usd.Stage, path: str, transform: np.ndarray, *, height: float) -> Usd.Prim:
    """Where raw parts enter: a stand of `height` (the belt top) with a crate of parts."""
    prim = define_xform(stage, path, transform, kind="source")
    stand = [((0.7, 0.7, height - 0.05), (0.0, 0.0, (height - 0.05) / 2))]
    crate = _open_box(0.6, 0.6, 0.3, height - 0.05)
    add_boxes(stage, f"{path}/Stand", stand, STEEL)
    add_boxes(stage, f"{path}/Crate", crate, CRATE_BLUE)
    add_collision_boxes(stage, f"{path}/Collision", [*_named("Stand", stand), *_named("Crate", crate)])
    return prim


def add_sink(stage: Usd.Stage, path: str, transform: np.ndarray, *, height: float) -> Usd.Prim:
    """Where finished parts leave: an open bin whose rim sits just below the belt top at `height`."""
    prim = define_xform(stage, path, transform, kind="sink")
    bin_ = _open_box(0.8, 0.8, height - 0.05, 0.0)
    add_boxes(stage, f"{path}/Bin", bin_, CRATE_BLUE)
    add_collision_boxes(stage, f"{path}/Collision", _named("Bin", bin_))
    return prim


def _named(name: str, boxes: list) -> list:
    """(size, centre) boxes as the (name, size, centre) triples that collision boxes take."""
    return [(f"{name}{i}", size, centre) for i, (size, centre) in enumerate(boxes)]


def _open_box(sx: float, sy: float, sz: float, bottom: float, wall: float = 0.03) -> list:
    """Floor and four walls of a box open at the top, as (size, centre) pairs."""
    z = bottom + sz / 2
    return [
        ((sx, sy, wall), (0.0, 0.0, bottom + wall / 2)),
        *[((wall, sy, sz), (x, 0.0, z)) for x in (-sx / 2 + wall / 2, sx / 2 - wall / 2)],
        *[((sx - 2 * wall, wall, sz), (0.0, y, z)) for y in (-sy / 2 + wall / 2, sy / 2 - wall / 2)],
    ]
