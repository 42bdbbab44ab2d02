"""`twin layout check`: what the twin will do with a layout, before it serves it.

It opens the layout as the runtime does, lists the elements it will show and animate (stations, belts,
robots with their joints, sensors), reads the line model as a what-if study would, and checks a binding
file against the prims. Every problem is an error line; the command fails when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pxr import UsdGeom

from twin.connectors.bindings import load_bindings
from twin.core.errors import TwinError
from twin.core.stage import TwinStage
from twin.kinematics.chain import Chain
from twin.line.model import read_line

KINDS = ("source", "conveyor", "buffer", "station", "robot", "sink", "sensor")


@dataclass
class LayoutReport:
    lines: list[str] = field(default_factory=list)  # what was found, one line each
    errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join([*self.lines, *(f"error: {error}" for error in self.errors)])


def check_layout(layout: str | Path, bindings: str | Path | None = None) -> LayoutReport:
    report = LayoutReport()
    try:
        twin_stage = TwinStage(layout)
    except TwinError as error:
        report.errors.append(str(error))
        return report
    stage = twin_stage.stage
    report.lines.append(f"layout {twin_stage.path.name}: default prim {twin_stage.root_path}, "
                        f"{UsdGeom.GetStageUpAxis(stage)} up, {UsdGeom.GetStageMetersPerUnit(stage):g} m per unit")
    for kind in KINDS:
        prims = twin_stage.prims_of_kind(kind)
        if not prims:
            continue
        names = []
        for prim in prims:
            path = str(prim.GetPath())
            if kind == "robot":
                try:
                    chain = Chain.from_usd(twin_stage.authored_stage, path)
                except TwinError as error:
                    report.errors.append(str(error))
                    continue
                names.append(f"{path} ({chain.n_joints} joints, {chain.n_links} links)")
            elif kind == "sensor":
                names.append(f"{path} ({prim.GetAttribute('twin:sensorType').Get()})")
            else:
                names.append(path)
        report.lines.append(f"{len(prims)} {kind}{'s' if len(prims) > 1 else ''}: {', '.join(names)}")
    try:
        model = read_line(stage)
        report.lines.append(f"line model: {len(model)} elements, what-if studies can run")
    except TwinError as error:
        report.errors.append(f"line model: {error}")
    if bindings is not None:
        try:
            binding_file = load_bindings(bindings)
        except TwinError as error:
            report.errors.append(str(error))
            return report
        missing = [binding for binding in binding_file.bindings if not stage.GetPrimAtPath(binding.prim)]
        report.lines.append(f"bindings {Path(bindings).name}: {len(binding_file.bindings)} bindings, "
                            f"{len(binding_file.bindings) - len(missing)} reach a prim")
        report.errors += [str(binding_file.error(binding, f"prim {binding.prim} is not in the layout"))
                          for binding in missing]
    return report
