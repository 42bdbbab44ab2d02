"""Belt conveyors: an Xform at the belt's start, belt along local +X, geometry as child meshes."""

from __future__ import annotations

import math

import numpy as np
from pxr import Usd

from .collision import add_collision_boxes
from .meshes import (
    BELT_GREY,
    DARK_GREY,
    SAFETY_YELLOW,
    STEEL,
    add_boxes,
    add_mesh,
    box,
    cylinder,
    define_xform,
    merge,
)

MOTOR_BLUE = (0.12, 0.25, 0.5)
LEG_SPACING = 1.5  # metres between leg pairs, a common frame module


def add_conveyor(
    stage: Usd.Stage,
    path: str,
    transform: np.ndarray,
    *,
    length: float,
    width: float,
    belt_height: float,
    capacity: int,
    speed: float | None = None,
    guide_channel: float | None = None,
    guide_height: float = 0.04,
) -> Usd.Prim:
    """A belt conveyor; `speed` is the nominal belt speed (m/s) the runtime may override. With `guide_channel`
    (m), two static guide rails `guide_height` tall run along the belt that far apart (docs/physics.md, "Guide
    rails"): parts ride single file and wait at the belt's end on its centre line, where a gripper picks."""
    attributes = dict(kind="conveyor", length=float(length), width=float(width),
                      beltHeight=float(belt_height), capacity=int(capacity))
    if speed is not None:
        attributes["speed"] = float(speed)
    prim = define_xform(stage, path, transform, **attributes)

    drum = 0.05  # drum radius: the belt wraps the drums at both ends
    belt = ((length, width, 2 * drum), (length / 2, 0.0, belt_height - drum))
    add_boxes(stage, f"{path}/Belt", [belt], BELT_GREY)
    add_mesh(stage, f"{path}/Drums", merge(
        cylinder(drum, width, (x, 0.0, belt_height - drum), axis="y", sections=12) for x in (0.0, length)
    ), STEEL)

    rail_y = width / 2 + 0.03
    rails = [((length + 0.1, 0.06, 0.16), (length / 2, side * rail_y, belt_height - 0.06))
             for side in (-1, 1)]
    pairs = max(2, math.ceil(length / LEG_SPACING) + 1)
    leg_x = np.linspace(0.12, length - 0.12, pairs)
    leg_height = belt_height - 0.14
    legs = [((0.06, 0.06, leg_height), (x, side * rail_y, leg_height / 2)) for x in leg_x for side in (-1, 1)]
    braces = [((0.04, 2 * rail_y, 0.04), (x, 0.0, 0.25)) for x in leg_x]
    add_boxes(stage, f"{path}/Frame", rails + legs + braces, SAFETY_YELLOW)
    add_collision_boxes(stage, f"{path}/Collision", [("Belt", *belt)], role="belt")
    add_collision_boxes(stage, f"{path}/Collision", [(f"Guard{i}", *rail) for i, rail in enumerate(rails)])
    add_boxes(stage, f"{path}/Feet", [((0.12, 0.12, 0.015), (x, side * rail_y, 0.0075))
                                      for x in leg_x for side in (-1, 1)], DARK_GREY)

    motor_y = -(rail_y + 0.12)
    add_mesh(stage, f"{path}/Motor", merge([
        cylinder(0.07, 0.22, (length - 0.05, motor_y, belt_height - drum), axis="y", sections=16),
        box((0.16, 0.1, 0.16), (length - 0.05, motor_y + 0.12, belt_height - drum)),
    ]), MOTOR_BLUE)
    if guide_channel is not None:
        _add_guide_rails(stage, f"{path}/Guides", length, belt_height, guide_channel, guide_height)
    return prim


def _add_guide_rails(stage: Usd.Stage, path: str, length: float, belt_height: float, channel: float,
                     height: float) -> None:
    """Two rails along the belt, `channel` apart on the inside, set 5 mm clear of the belt's top."""
    thickness, gap = 0.02, 0.005
    offset = channel / 2 + thickness / 2
    rails = [((length, thickness, height), (length / 2, side * offset, belt_height + gap + height / 2))
             for side in (-1, 1)]
    define_xform(stage, path)
    add_boxes(stage, f"{path}/Rails", rails, STEEL)
    add_collision_boxes(stage, f"{path}/Collision", [(f"Rail{i}", *rail) for i, rail in enumerate(rails)])


def add_stopper(stage: Usd.Stage, conveyor: Usd.Prim, at: float, *, height: float = 0.06) -> Usd.Prim:
    """A stopper bar across `conveyor` whose upstream face is `at` metres from the belt's start.

    Physics holds the parts that reach it while it is raised (docs/physics.md).
    """
    length = conveyor.GetAttribute("twin:length").Get()
    if not 0.0 < at <= length:
        raise ValueError(f"{conveyor.GetPath()}: stopper at {at} m is off the belt (0 to {length} m)")
    width, belt_height = conveyor.GetAttribute("twin:width").Get(), conveyor.GetAttribute("twin:beltHeight").Get()
    bar = ((0.03, width, height), (at + 0.015, 0.0, belt_height + height / 2 + 0.005))
    path = f"{conveyor.GetPath()}/Stopper"
    define_xform(stage, path)
    add_boxes(stage, f"{path}/Bar", [bar], SAFETY_YELLOW)
    return add_collision_boxes(stage, f"{path}/Collision", [("Bar", *bar)], role="stopper")
