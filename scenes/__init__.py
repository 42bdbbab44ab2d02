"""Builders that author twin layouts in USD (conveyors, stations, sensors, robots from URDF) and export GLB.

Conventions (prim kinds, attributes, robot articulation layout) are in docs/architecture.md.
"""

from .conveyor import add_conveyor
from .gltf import export_glb
from .layout import new_layout, open_layout
from .robot import add_robot
from .sensor import add_sensor
from .station import add_machine, add_sink, add_source, add_table

__all__ = [
    "add_conveyor", "add_machine", "add_robot", "add_sensor", "add_sink", "add_source", "add_table",
    "export_glb", "new_layout", "open_layout",
]
