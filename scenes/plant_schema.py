"""The plant file: a short YAML description of a line that `twin layout build` turns into a layout.

Positions are metres on the floor, `yaw` is degrees about +Z, times are seconds. Each element names the
elements its parts go to next (`next`), as `twin:next` does in USD (docs/line-model.md). Errors name the
file, the line and the field: `plant.yaml:12: conveyors[0] (Belt1): speed must be > 0, got -1`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from twin.core.documents import YamlDocument
from twin.core.errors import FileError
from twin.core.schema import FieldError, Location, blamed, sentence

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="a name of letters, digits and '_' that does not start with a digit")]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Distribution = Literal["constant", "normal", "exponential", "lognormal"]
SECTIONS = ("sources", "conveyors", "buffers", "stations", "robots", "sinks")
DEFAULT_ROUTE = ("home", "above_pick", "pick", "grip", "above_pick", "above_place", "place", "release",
                 "above_place", "home")


class PlantError(FileError):
    """A plant file that cannot be read or describes a line that cannot be built."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Element(_Spec):
    name: Name
    at: tuple[float, float] = Field(description="[x, y] in metres")
    yaw: float = 0.0
    next: list[Name] = []
    routing: Literal["first_free", "round_robin"] = "first_free"


class SourceSpec(_Element):
    interarrival: Positive
    distribution: Distribution = "exponential"
    spread: NonNegative = 0.0


class ConveyorSpec(_Element):
    length: Positive
    speed: Positive
    capacity: Annotated[int, Field(gt=0)]
    width: Positive = 0.5
    pitch: Positive = 0.3


class BufferSpec(_Element):
    capacity: Annotated[int, Field(gt=0)]
    size: tuple[Positive, Positive] = Field((1.0, 0.8), description="[x, y] footprint in metres")


class StationSpec(_Element):
    title: str = ""
    size: tuple[Positive, Positive, Positive] = Field((1.2, 1.2, 1.8), description="[x, y, z] in metres")
    table: bool = False  # a work table (robots load it) instead of a machine
    cycle_time: Positive
    distribution: Distribution = "normal"
    spread: NonNegative = 0.0
    mtbf: NonNegative = 0.0
    mttr: NonNegative = 0.0
    scrap_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    setup_time: NonNegative = 0.0
    setup_every: Annotated[int, Field(ge=0)] = 0


class SinkSpec(_Element):
    pass


class RobotSpec(_Element):
    title: str = ""
    urdf: str = Field(description="a .urdf or .xacro file, relative to the plant file")
    xacro_args: dict[str, str] = {}
    package_dirs: dict[str, str] = {}
    poses: dict[Name, list[float]] = Field({}, description="a mapping of pose names to joint values (radians)")
    route: list[Name] = list(DEFAULT_ROUTE)
    grip_time: NonNegative = 0.4
    joint_speed: Annotated[float, Field(gt=0, le=1)] = 0.7
    joint_acceleration: Positive = 3.0
    pick_time: Positive | None = None  # override what the route gives (or stand in for it, without poses)
    place_time: Positive | None = None
    return_time: NonNegative | None = None

    @model_validator(mode="after")
    def _route_uses_taught_poses(self) -> RobotSpec:
        if not self.poses:
            if self.pick_time is None or self.place_time is None:
                raise FieldError("poses", "a robot needs taught poses (for its route) or pick_time and place_time")
            return self
        if "grip" not in self.route or "release" not in self.route or \
                self.route.index("grip") > self.route.index("release"):
            raise FieldError("route", "route must contain 'grip' and then 'release'")
        for step in self.route:
            if step not in ("grip", "release") and step not in self.poses:
                raise FieldError("route", f"route names pose {step!r}, which poses does not teach "
                                          f"(taught: {', '.join(self.poses) or 'none'})")
        return self


class SensorSpec(_Spec):
    name: Name
    mounted_on: Name = Field(description="the name of the element it is mounted on")
    type: Literal["photoEye", "temperature", "motorCurrent"]
    at: tuple[float, float, float] = Field(description="[x, y, z] in the element's frame, metres")
    signal: str = ""
    unit: str = ""


class PlantSpec(_Spec):
    line: Name = "Line"
    belt_height: Positive = 0.75
    table_height: Positive = 0.8
    part_size: Positive = 0.2
    sources: list[SourceSpec] = Field(min_length=1)
    conveyors: list[ConveyorSpec] = []
    buffers: list[BufferSpec] = []
    stations: list[StationSpec] = []
    robots: list[RobotSpec] = []
    sinks: list[SinkSpec] = Field(min_length=1)
    sensors: list[SensorSpec] = []

    def elements(self) -> list[tuple[str, int, _Element]]:
        """(section, index, element) of every line element, in file order per section."""
        return [(section, index, element) for section in SECTIONS
                for index, element in enumerate(getattr(self, section))]

    @model_validator(mode="after")
    def _names_and_routing(self) -> PlantSpec:
        seen: dict[str, str] = {}
        for section, index, element in self.elements():
            if element.name in seen:
                raise FieldError((section, index, "name"),
                                 f"{element.name!r} is already the name of {seen[element.name]}")
            seen[element.name] = f"{section}[{index}]"
        for section, index, element in self.elements():
            for target in element.next:
                if target not in seen:
                    raise FieldError((section, index, "next"), f"next names {target!r}, which is no element "
                                                              f"(elements: {', '.join(seen)})")
        for index, sensor in enumerate(self.sensors):
            if sensor.mounted_on not in seen:
                raise FieldError(("sensors", index, "mounted_on"), f"sensor {sensor.name!r} is mounted on "
                                                                  f"{sensor.mounted_on!r}, which is no element")
        return self


class PlantFile(YamlDocument):
    """A plant file read and validated, with the line of every field for later errors (bad URDFs, poses)."""

    def __init__(self, path: str | Path):
        super().__init__(path, PlantError)
        if not isinstance(self.data, dict):
            raise PlantError(self.path, "the file must be a mapping of sections (sources, conveyors, ...)", line=1)
        if duplicate := self.duplicate_key():
            loc, line = duplicate
            raise self.error(loc, f"key {loc[-1]!r} appears twice", line=line)
        try:
            self.spec = PlantSpec.model_validate(self.data)
        except ValidationError as error:
            errors = error.errors(include_url=False)  # a misspelt key explains the missing one: name it first
            raise self._explain(next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])) from None

    def error(self, loc: Location, message: str, *, line: int | None = None) -> PlantError:
        """An error about the field at `loc` ("robots", 0, "poses", "home"), at its line unless `line` says
        otherwise, naming its element."""
        label = ""
        if len(loc) >= 2 and isinstance(loc[1], int):
            entry = self.value(loc[:2])
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f"{loc[0]}[{loc[1]}]" + (f" ({name})" if name else "") + ": "
        return PlantError(self.path, f"{label}{message}", line=line or self.line(loc))

    def _explain(self, error: ErrorDetails) -> PlantError:
        loc = blamed(error)
        kind = error["type"]
        if len(loc) == 1 and kind == "extra_forbidden":
            return self.error(loc, f"unknown section {loc[0]!r} (expected: line, belt_height, table_height, "
                                   f"part_size, {', '.join(SECTIONS)}, sensors)")
        if kind == "value_error":
            return self.error(loc, str(error["ctx"]["error"]))
        field_loc = loc[:3] if len(loc) >= 3 and isinstance(loc[1], int) else loc[:1]
        name = str(field_loc[-1])
        model = _MODELS.get(str(loc[0])) if len(field_loc) == 3 else PlantSpec
        if kind == "extra_forbidden":
            allowed = ", ".join(model.model_fields) if model else ""
            return self.error(field_loc, f"unknown key {name!r} (allowed: {allowed})")
        if kind == "too_short" and len(field_loc) == 1:
            return self.error(field_loc, f"the plant needs at least one entry in {name!r}")
        if kind in ("model_type", "dict_type") and len(loc) == 2:
            return self.error(loc, f"each entry of {loc[0]!r} must be a mapping")
        return self.error(field_loc, sentence(error, model, name, self.value(field_loc)))


_MODELS: dict[str, type[_Spec]] = {"sources": SourceSpec, "conveyors": ConveyorSpec, "buffers": BufferSpec,
                                   "stations": StationSpec, "robots": RobotSpec, "sinks": SinkSpec,
                                   "sensors": SensorSpec}
