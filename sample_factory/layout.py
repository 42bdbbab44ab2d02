"""The sample line: one source of truth for its geometry and its process parameters.

A small assembly line, along +X:

    Source -> Conveyor1 -> Machining -> Conveyor2 -> [Robot1 KR16] -> Assembly
           -> [Robot2 KR120] -> Conveyor3 -> Inspection -> Conveyor4 -> Sink

Conveyor4's end faces the sink's takeaway belt across a 2 cm gap: parts cross onto it by friction (a transfer
between belts), speed up to its 0.5 m/s and fall off its end into the bin.

The scene builder authors USD from these specs and the simulated PLC runs the
plant's behaviour with the same numbers, so the two always agree. Robot poses are
joint vectors (radians) whose tool0 reaches the pick and place points below with the
tool pointing down (checked by tests/test_sample_factory.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LINE = "/Factory/Line"
PART_SIZE = 0.2  # parts are 0.2 m cubes
BELT_HEIGHT = 0.75  # belt top above the floor
TABLE_HEIGHT = 0.8  # station tables
# Side guide rails along every belt: a channel one part wide plus this clearance on each side, so parts ride
# single file and stop centred at a belt's end, where a robot's gripper comes down on the belt's centre line.
GUIDE_CLEARANCE = 0.03  # metres each side: a part turned up to about 17 degrees still fits the channel
GUIDE_HEIGHT = 0.04  # metres of rail above the belt (set 5 mm clear of it)


@dataclass(frozen=True)
class ConveyorSpec:
    name: str
    start: tuple[float, float]  # x, y of the belt's start on the floor
    length: float
    speed: float = 0.35  # m/s
    width: float = 0.5
    capacity: int = 8

    @property
    def path(self) -> str:
        return f"{LINE}/{self.name}"


@dataclass(frozen=True)
class StationSpec:
    name: str
    title: str
    center: tuple[float, float]
    size: tuple[float, float, float]  # x, y, z of the machine body
    cycle_time: float  # mean seconds per part
    cycle_spread: float = 0.1  # coefficient of variation
    mtbf: float = 900.0  # mean seconds between failures
    mttr: float = 45.0  # mean seconds to repair
    has_table: bool = False  # robots place parts on a table instead of a machine body

    @property
    def path(self) -> str:
        return f"{LINE}/{self.name}"


@dataclass(frozen=True)
class RobotSpec:
    name: str
    title: str
    urdf: str  # relative to rtb-data's xacro folder
    base: tuple[float, float, float]  # x, y, yaw (radians)
    poses: dict[str, tuple[float, ...]] = field(default_factory=dict)
    pick_from: str = ""
    place_to: str = ""

    @property
    def path(self) -> str:
        return f"{LINE}/{self.name}"


@dataclass(frozen=True)
class SensorSpec:
    name: str
    parent: str  # the prim it is mounted on
    sensor_type: str  # photoEye, temperature, motorCurrent
    offset: tuple[float, float, float]  # position in the parent's frame
    attr: str  # the twin attribute it reports
    unit: str = ""

    @property
    def path(self) -> str:
        return f"{self.parent}/{self.name}"


SOURCE = (-0.7, 0.0)
SINK = (21.6, 0.0)  # the bin's centre


@dataclass(frozen=True)
class TakeawaySpec:
    """The sink's belt, outside the line's flow: Conveyor4's parts fall onto it and it carries them to the bin."""

    start: float  # x of its start, just past Conveyor4's end (a gap under half a part)
    length: float
    height: float  # belt top
    speed: float
    width: float = 0.6


TAKEAWAY = TakeawaySpec(start=20.22, length=0.94, height=BELT_HEIGHT, speed=0.5, width=0.44)
SOURCE_INTERARRIVAL = 12.0  # mean seconds between raw parts

CONVEYORS = (
    ConveyorSpec("Conveyor1", (0.0, 0.0), 4.0),
    ConveyorSpec("Conveyor2", (5.8, 0.0), 3.0),
    ConveyorSpec("Conveyor3", (12.6, 0.0), 3.0),
    ConveyorSpec("Conveyor4", (17.2, 0.0), 3.0),
)

STATIONS = (
    StationSpec("Machining", "CNC machining centre", (4.9, 0.0), (1.4, 1.4, 2.0), cycle_time=7.5),
    StationSpec("Assembly", "Assembly table", (10.3, 0.0), (0.9, 0.9, TABLE_HEIGHT), cycle_time=6.0,
                has_table=True, mtbf=1800.0),
    StationSpec("Inspection", "Vision inspection", (16.4, 0.0), (1.2, 1.2, 1.8), cycle_time=5.0, mtbf=2400.0),
)

# Poses solved once numerically against the URDFs (tool0 within 1.5 cm of its target).
ROBOTS = (
    RobotSpec(
        "Robot1", "KUKA KR16 loader", "kuka_description/kuka_kr16/urdf/kr16_2.urdf", (9.5, -1.1, math.pi / 2),
        poses={
            "home": (-0.0042, -1.4135, 0.7049, 0.0, 2.2689, 0.0),
            "above_pick": (-0.6288, -0.6642, 0.0396, 0.0003, 2.1946, 0.0),
            "pick": (-0.6311, -0.8763, 0.9579, 0.006, 1.489, 0.0),
            "above_place": (0.6266, -0.6765, -0.0009, 0.0, 2.2142, 0.0),
            "place": (0.6269, -0.8845, 0.8963, 0.0014, 1.5601, 0.0),
        },
        pick_from="Conveyor2", place_to="Assembly",
    ),
    RobotSpec(
        "Robot2", "KUKA KR120 unloader", "kuka_description/kuka_kr120/urdf/kr120r2500pro.urdf",
        (11.5, 1.7, -math.pi / 2),
        poses={
            "home": (-0.0001, -1.5461, 1.1044, 0.0003, 2.0124, 0.0),
            "above_pick": (0.6147, -0.8815, 0.788, 0.0, 1.6643, 0.0),
            "pick": (0.6166, -0.8277, 1.0984, -0.0127, 1.2995, 0.0),
            "above_place": (-0.6139, -0.8814, 0.7877, -0.0012, 1.6647, 0.0),
            "place": (-0.6141, -0.8126, 1.1228, 0.0006, 1.2587, 0.0),
        },
        pick_from="Assembly", place_to="Conveyor3",
    ),
)

# The gripper on each robot's tool0 (twin.scenes.robot.add_gripper): its grip face is tool0, on the part's top.
GRIPPERS = {
    "Robot1": {"gripper_type": "suction", "suction_radius": 0.04},
    "Robot2": {"gripper_type": "parallel", "stroke": 0.3},
}

# Where each robot's tool0 must be at "pick" and "place" (world, metres).
ROBOT_TARGETS = {
    "Robot1": {"pick": (8.7, 0.0, 0.95), "place": (10.3, 0.0, 1.0)},
    "Robot2": {"pick": (10.3, 0.0, 1.0), "place": (12.7, 0.0, 0.95)},
}

SENSORS = (
    SensorSpec("PhotoEye", f"{LINE}/Conveyor1", "photoEye", (3.9, -0.35, BELT_HEIGHT + 0.1), "twin:occupied"),
    SensorSpec("PhotoEye", f"{LINE}/Conveyor2", "photoEye", (2.9, -0.35, BELT_HEIGHT + 0.1), "twin:occupied"),
    SensorSpec("PhotoEye", f"{LINE}/Conveyor4", "photoEye", (2.9, -0.35, BELT_HEIGHT + 0.1), "twin:occupied"),
    SensorSpec("SpindleTemp", f"{LINE}/Machining", "temperature", (0.0, 0.0, 2.05), "twin:temperature", "degC"),
    SensorSpec("MotorCurrent", f"{LINE}/Conveyor1", "motorCurrent", (0.1, 0.3, 0.5), "twin:current", "A"),
)

# The order parts flow through; robots move parts between the elements they name.
FLOW = ("Source", "Conveyor1", "Machining", "Conveyor2", "Robot1", "Assembly", "Robot2", "Conveyor3",
        "Inspection", "Conveyor4", "Sink")

STATION_STATES = {0: "idle", 1: "working", 2: "blocked", 3: "starved", 4: "down"}
