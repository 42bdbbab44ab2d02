"""Sensors: small Xforms with `twin:sensorType` and a little geometry so they can be seen and picked."""

from __future__ import annotations

from collections.abc import Sequence

from pxr import Usd

from .meshes import DARK_GREY, STEEL, add_boxes, add_mesh, box, cylinder, define_xform, merge, pose

SENSOR_TYPES = ("photoEye", "temperature", "motorCurrent")
SENSOR_BLUE = (0.1, 0.35, 0.75)
PROBE_RED = (0.75, 0.12, 0.1)


def add_sensor(
    stage: Usd.Stage,
    path: str,
    position: Sequence[float],
    *,
    sensor_type: str,
    signal: str = "",
    unit: str = "",
) -> Usd.Prim:
    """A sensor at `position` in its parent's frame; `signal` names the attribute carrying its reading.

    A photo-eye looks along local +Y at a reflector across the belt (0.7 m away).
    """
    if sensor_type not in SENSOR_TYPES:
        raise ValueError(f"{path}: unknown sensor type {sensor_type!r}; expected one of {SENSOR_TYPES}")
    attributes = {"kind": "sensor", "sensorType": sensor_type}
    if signal:
        attributes["signal"] = signal
    if unit:
        attributes["unit"] = unit
    prim = define_xform(stage, path, pose(*position), **attributes)
    if sensor_type == "photoEye":
        add_boxes(stage, f"{path}/Post", [  # posts with brackets reaching inwards to the conveyor frame
            ((0.03, 0.03, 0.14), (0.0, 0.0, -0.09)), ((0.03, 0.08, 0.02), (0.0, 0.04, -0.15)),
            ((0.03, 0.03, 0.14), (0.0, 0.7, -0.09)), ((0.03, 0.08, 0.02), (0.0, 0.66, -0.15)),
        ], STEEL)
        add_boxes(stage, f"{path}/Head", [((0.05, 0.04, 0.07), (0.0, 0.0, 0.0)),
                                          ((0.05, 0.01, 0.07), (0.0, 0.7, 0.0))], SENSOR_BLUE)
    elif sensor_type == "temperature":
        add_mesh(stage, f"{path}/Probe", cylinder(0.012, 0.16, (0.0, 0.0, -0.05), sections=10), STEEL)
        head = merge([box((0.06, 0.06, 0.05), (0.0, 0.0, 0.055)),
                      cylinder(0.012, 0.04, (0.03, 0.0, 0.055), axis="x", sections=8)])
        add_mesh(stage, f"{path}/Head", head, PROBE_RED)
    else:
        add_boxes(stage, f"{path}/Housing", [((0.1, 0.06, 0.12), (0.0, 0.0, 0.0))], DARK_GREY)
        add_boxes(stage, f"{path}/Label", [((0.06, 0.005, 0.04), (0.0, 0.0325, 0.02))], SENSOR_BLUE)
    return prim
