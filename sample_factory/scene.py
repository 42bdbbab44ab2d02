"""The sample line authored as USD (and GLB) from the specs of `layout.py`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pxr import Sdf, Vt

from twin.kinematics.urdf import rtb_urdf
from twin.sample_factory import layout, line_model
from twin.scenes import (
    add_conveyor,
    add_machine,
    add_robot,
    add_sensor,
    add_sink,
    add_source,
    add_table,
    export_glb,
    new_layout,
)
from twin.scenes.collision import add_collision_boxes
from twin.scenes.meshes import DARK_GREY, SAFETY_YELLOW, STEEL, add_boxes, define_xform, pose, set_attributes
from twin.scenes.robot import add_gripper

FLOOR_GREY = (0.42, 0.43, 0.44)
STATION_COLORS = {"Machining": (0.14, 0.36, 0.62), "Inspection": (0.86, 0.87, 0.88)}
CELL_MARGIN = 1.5  # the yellow robot-cell marking keeps this distance from the robot bases


def build_sample_factory(out_dir: Path) -> Path:
    """Write `factory.usda` and `factory.glb` into `out_dir`; returns the layout's path."""
    out_dir = Path(out_dir)
    stage = new_layout(out_dir / "factory.usda")
    define_xform(stage, layout.LINE)
    _floor(stage)
    add_source(stage, f"{layout.LINE}/Source", pose(*layout.SOURCE), height=layout.BELT_HEIGHT)
    add_sink(stage, f"{layout.LINE}/Sink", pose(*layout.SINK), height=layout.TAKEAWAY.height)
    _takeaway(stage)
    for spec in layout.CONVEYORS:
        add_conveyor(stage, spec.path, pose(*spec.start), length=spec.length, width=spec.width,
                     belt_height=layout.BELT_HEIGHT, capacity=spec.capacity, speed=spec.speed,
                     guide_channel=layout.PART_SIZE + 2 * layout.GUIDE_CLEARANCE, guide_height=layout.GUIDE_HEIGHT)
    for spec in layout.STATIONS:
        if spec.has_table:
            add_table(stage, spec.path, pose(*spec.center), title=spec.title, size=spec.size,
                      cycle_time=spec.cycle_time, table_height=layout.TABLE_HEIGHT)
        else:
            add_machine(stage, spec.path, pose(*spec.center), title=spec.title, size=spec.size,
                        cycle_time=spec.cycle_time, table_height=layout.TABLE_HEIGHT,
                        color=STATION_COLORS.get(spec.name, STEEL))
    for spec in layout.ROBOTS:
        robot = add_robot(stage, spec.path, rtb_urdf(spec.urdf), spec.base)
        set_attributes(robot, {"twin:title": spec.title})
        add_gripper(stage, f"{spec.path}/tool0", **layout.GRIPPERS[spec.name])
    _process(stage)
    for spec in layout.SENSORS:
        add_sensor(stage, spec.path, spec.offset, sensor_type=spec.sensor_type, signal=spec.attr,
                   unit=spec.unit)
    # An alarm authored in the layout (docs/alarms.md); the binding file holds the others.
    set_attributes(stage.GetPrimAtPath(f"{layout.LINE}/Machining/SpindleTemp"), {
        "twin:alarm:hot:high": 60.0, "twin:alarm:hot:deadband": 3.0, "twin:alarm:hot:severity": "high",
        "twin:alarm:hot:message": "Machining spindle above 60 degC"})
    stage.GetRootLayer().Save()
    export_glb(stage, out_dir / "factory.glb")
    return out_dir / "factory.usda"


def _process(stage) -> None:
    """What the line simulation reads (docs/line-model.md): routing and the process parameters."""
    flow = [f"{layout.LINE}/{name}" for name in layout.FLOW]
    for here, there in zip(flow, flow[1:], strict=False):
        stage.GetPrimAtPath(here).CreateRelationship("twin:next", custom=False).SetTargets([there])
    set_attributes(stage.GetPrimAtPath(f"{layout.LINE}/Source"), {
        "twin:interarrival": layout.SOURCE_INTERARRIVAL, "twin:arrivalDistribution": "exponential"})
    for spec in layout.CONVEYORS:
        set_attributes(stage.GetPrimAtPath(spec.path), {"twin:partPitch": line_model.GAP,
                                                        "twin:partLength": layout.PART_SIZE})
    for spec in layout.STATIONS:
        set_attributes(stage.GetPrimAtPath(spec.path), {
            "twin:cycleDistribution": "normal", "twin:cycleSpread": spec.cycle_spread,
            "twin:mtbf": spec.mtbf, "twin:mttr": spec.mttr})
    for spec in layout.ROBOTS:
        robot = stage.GetPrimAtPath(spec.path)
        set_attributes(robot, {"twin:route": list(line_model.ROBOT_ROUTE), "twin:gripTime": line_model.GRIP_SECONDS,
                               "twin:jointSpeed": line_model.ROBOT_SPEED,
                               "twin:jointAcceleration": line_model.ROBOT_ACCELERATION})
        for name, joints in spec.poses.items():
            robot.CreateAttribute(f"twin:pose:{name}", Sdf.ValueTypeNames.DoubleArray).Set(Vt.DoubleArray(joints))


def _takeaway(stage) -> None:
    """The sink's takeaway belt after Conveyor4's end: a transfer, then into the bin (docs/physics.md)."""
    spec, thickness = layout.TAKEAWAY, 0.1
    path = f"{layout.LINE}/Sink/Takeaway"
    prim = define_xform(stage, path, pose(spec.start - layout.SINK[0], -layout.SINK[1]))
    set_attributes(prim, {"twin:speed": spec.speed})
    belt = ((spec.length, spec.width, thickness), (spec.length / 2, 0.0, spec.height - thickness / 2))
    add_boxes(stage, f"{path}/Belt", [belt], DARK_GREY)
    legs = spec.height - thickness
    frame = [((0.06, spec.width, legs), (x, 0.0, legs / 2)) for x in (0.45, spec.length - 0.1)]
    add_boxes(stage, f"{path}/Frame", frame, STEEL)
    add_collision_boxes(stage, f"{path}/Collision", [("Belt", *belt)], role="belt")


def _floor(stage) -> None:
    """Concrete slab (top at z = 0), robot base plates and the yellow marking of the robot cell."""
    xs = [layout.SOURCE[0], layout.SINK[0]]
    margin = 3.0
    length, centre = xs[1] - xs[0] + 2 * margin, (xs[0] + xs[1]) / 2
    floor = f"{layout.LINE}/Floor"
    define_xform(stage, floor)
    slab = ((length, 8.0, 0.1), (centre, 0.0, -0.05))
    add_boxes(stage, f"{floor}/Slab", [slab], FLOOR_GREY)
    add_collision_boxes(stage, f"{floor}/Collision", [("Slab", *slab)])
    bases = [spec.base[:2] for spec in layout.ROBOTS]
    add_boxes(stage, f"{floor}/BasePlates", [((0.9, 0.9, 0.02), (x, y, 0.01)) for x, y in bases], DARK_GREY)
    (x0, y0), (x1, y1) = np.min(bases, axis=0) - CELL_MARGIN, np.max(bases, axis=0) + CELL_MARGIN
    strip = 0.06
    add_boxes(stage, f"{floor}/CellMarking", [
        *[((x1 - x0, strip, 0.004), ((x0 + x1) / 2, y, 0.002)) for y in (y0, y1)],
        *[((strip, y1 - y0, 0.004), (x, (y0 + y1) / 2, 0.002)) for x in (x0, x1)],
    ], SAFETY_YELLOW)
