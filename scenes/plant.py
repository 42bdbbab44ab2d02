"""`twin layout build`: a layout (USD and the viewer's GLB) from a plant file (scenes/plant_schema.py).

Every element becomes the prim the line simulation and the runtime read (docs/line-model.md,
docs/architecture.md): `/Factory/<line>/<name>`, with `twin:next` for the routing and the process
parameters as `twin:` attributes; sensors sit under the element they are mounted on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pxr import Sdf, Usd, Vt

from twin.core.errors import FileError

from .conveyor import add_conveyor
from .gltf import export_glb
from .layout import ROOT, new_layout
from .meshes import DARK_GREY, STEEL, add_boxes, define_xform, pose, set_attributes
from .plant_schema import (
    BufferSpec,
    ConveyorSpec,
    PlantFile,
    PlantSpec,
    RobotSpec,
    SinkSpec,
    SourceSpec,
    StationSpec,
)
from .robot import add_robot
from .sensor import add_sensor
from .station import add_machine, add_sink, add_source, add_table

FLOOR_GREY = (0.42, 0.43, 0.44)
FLOOR_MARGIN = 3.0  # metres of floor around the outermost elements
BUFFER_GREEN = (0.2, 0.45, 0.3)


def build_plant(plant_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write `<plant>.usda` and `<plant>.glb` into `out_dir` (default: beside the plant file); returns the layout."""
    plant = PlantFile(plant_path)
    out = Path(out_dir) if out_dir is not None else plant.path.parent
    layout = out / f"{plant.path.stem}.usda"
    spec = plant.spec
    line = f"{ROOT}/{spec.line}"
    stage = new_layout(layout)
    define_xform(stage, line)
    _floor(stage, line, spec)
    paths = {element.name: f"{line}/{element.name}" for _, _, element in spec.elements()}
    for _, index, element in spec.elements():
        path = paths[element.name]
        placement = pose(*element.at, 0.0, math.radians(element.yaw))
        if isinstance(element, SourceSpec):
            prim = add_source(stage, path, placement, height=spec.belt_height)
            set_attributes(prim, {"twin:interarrival": element.interarrival,
                                  "twin:arrivalDistribution": element.distribution,
                                  "twin:arrivalSpread": element.spread})
        elif isinstance(element, ConveyorSpec):
            prim = add_conveyor(stage, path, placement, length=element.length, width=element.width,
                                belt_height=spec.belt_height, capacity=element.capacity, speed=element.speed)
            set_attributes(prim, {"twin:partPitch": element.pitch, "twin:partLength": spec.part_size})
        elif isinstance(element, BufferSpec):
            prim = _add_buffer(stage, path, placement, element, spec.belt_height)
        elif isinstance(element, StationSpec):
            prim = _add_station(stage, path, placement, element, spec.table_height)
        elif isinstance(element, RobotSpec):
            prim = _add_robot(stage, path, placement, element, plant, index)
        else:
            assert isinstance(element, SinkSpec)
            prim = add_sink(stage, path, placement, height=spec.belt_height)
        if element.next:
            prim.CreateRelationship("twin:next", custom=False).SetTargets([paths[name] for name in element.next])
        if element.routing != "first_free":
            set_attributes(prim, {"twin:routing": element.routing})
    for sensor in spec.sensors:
        add_sensor(stage, f"{paths[sensor.mounted_on]}/{sensor.name}", sensor.at, sensor_type=sensor.type,
                   signal=sensor.signal, unit=sensor.unit)
    stage.GetRootLayer().Save()
    export_glb(stage, layout.with_suffix(".glb"))
    return layout


def _add_station(stage: Usd.Stage, path: str, placement: np.ndarray, station: StationSpec,
                 table_height: float) -> Usd.Prim:
    title = station.title or station.name
    if station.table:
        prim = add_table(stage, path, placement, title=title, size=station.size, cycle_time=station.cycle_time,
                         table_height=table_height)
    else:
        prim = add_machine(stage, path, placement, title=title, size=station.size, cycle_time=station.cycle_time,
                           table_height=table_height, color=STEEL)
    set_attributes(prim, {
        "twin:cycleDistribution": station.distribution, "twin:cycleSpread": station.spread,
        "twin:mtbf": station.mtbf, "twin:mttr": station.mttr, "twin:scrapRate": station.scrap_rate,
        "twin:setupTime": station.setup_time, "twin:setupEvery": float(station.setup_every)})
    return prim


def _add_buffer(stage: Usd.Stage, path: str, placement: np.ndarray, buffer: BufferSpec,
                height: float) -> Usd.Prim:
    """A first-in-first-out store: a rack whose top shelf is at belt height."""
    prim = define_xform(stage, path, placement, kind="buffer", capacity=int(buffer.capacity))
    sx, sy = buffer.size
    add_boxes(stage, f"{path}/Shelves", [((sx, sy, 0.04), (0.0, 0.0, z)) for z in (0.25, height - 0.02)],
              BUFFER_GREEN)
    add_boxes(stage, f"{path}/Posts", [((0.05, 0.05, height), (x, y, height / 2))
                                       for x in (-sx / 2 + 0.025, sx / 2 - 0.025)
                                       for y in (-sy / 2 + 0.025, sy / 2 - 0.025)], DARK_GREY)
    return prim


def _add_robot(stage: Usd.Stage, path: str, placement: np.ndarray, robot: RobotSpec, plant: PlantFile,
               index: int) -> Usd.Prim:
    """The robot from its URDF or xacro file (relative to the plant file), with its taught cycle."""
    folder = plant.path.parent
    urdf = folder / robot.urdf
    package_dirs = {name: folder / directory for name, directory in robot.package_dirs.items()}
    try:
        prim = add_robot(stage, path, urdf, placement, package_dirs=package_dirs or None,
                         xacro_args=robot.xacro_args or None)
    except FileError as error:
        raise plant.error(("robots", index, "urdf"), str(error)) from None
    joints = list(prim.GetAttribute("twin:jointNames").Get())
    for name, values in robot.poses.items():
        if len(values) != len(joints):
            raise plant.error(("robots", index, "poses", name),
                              f"pose {name!r} has {len(values)} values, but {robot.urdf} has {len(joints)} joints "
                              f"({', '.join(joints)})")
        prim.CreateAttribute(f"twin:pose:{name}", Sdf.ValueTypeNames.DoubleArray).Set(Vt.DoubleArray(values))
    set_attributes(prim, {"twin:title": robot.title or robot.name})
    if robot.poses:
        set_attributes(prim, {"twin:route": list(robot.route), "twin:gripTime": robot.grip_time,
                              "twin:jointSpeed": robot.joint_speed,
                              "twin:jointAcceleration": robot.joint_acceleration})
    for attribute, seconds in (("twin:pickTime", robot.pick_time), ("twin:placeTime", robot.place_time),
                               ("twin:returnTime", robot.return_time)):
        if seconds is not None:
            set_attributes(prim, {attribute: seconds})
    return prim


def _floor(stage: Usd.Stage, line: str, spec: PlantSpec) -> None:
    """A concrete slab (top at z = 0) under every element, with a margin."""
    points = np.array([element.at for _, _, element in spec.elements()])
    low, high = points.min(axis=0) - FLOOR_MARGIN, points.max(axis=0) + FLOOR_MARGIN
    size, centre = high - low, (high + low) / 2
    define_xform(stage, f"{line}/Floor")
    add_boxes(stage, f"{line}/Floor/Slab", [((size[0], size[1], 0.1), (centre[0], centre[1], -0.05))], FLOOR_GREY)
