"""URDF reading: robot description files into plain dataclasses.

Both the kinematics (which needs joints only) and the scene builder (which also
needs meshes) read robots through this module, so a URDF is interpreted one way
everywhere. Errors name the file and the offending link, joint or mesh.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin.core.errors import UrdfError

JOINT_TYPES = ("revolute", "continuous", "prismatic", "fixed")


@dataclass(frozen=True)
class Visual:
    """One visual of a link: a mesh file or a primitive, posed in the link frame."""

    origin: np.ndarray  # (4, 4) link -> visual
    kind: str  # "mesh", "box", "cylinder" or "sphere"
    mesh_path: Path | None = None
    mesh_uri: str = ""
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: tuple[float, ...] = ()  # box (x, y, z); cylinder (radius, length); sphere (radius,)
    color: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Link:
    name: str
    visuals: tuple[Visual, ...] = ()


@dataclass(frozen=True)
class Mimic:
    joint: str
    multiplier: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class Joint:
    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray  # (4, 4) parent link -> joint frame at q = 0
    axis: np.ndarray  # (3,) unit vector in the joint frame
    lower: float = -math.inf
    upper: float = math.inf
    velocity: float = math.inf
    effort: float = math.inf
    mimic: Mimic | None = None


@dataclass(frozen=True)
class RobotDescription:
    name: str
    path: Path
    links: tuple[Link, ...]
    joints: tuple[Joint, ...]
    root: str = ""
    _link_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def link(self, name: str) -> Link:
        return self.links[self._link_index[name]]


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF's fixed-axis roll-pitch-yaw: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def _floats(text: str | None, count: int, default: float, where: str, path: Path) -> tuple[float, ...]:
    if text is None:
        return (default,) * count
    parts = text.split()
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UrdfError(path, f"{where}: expected {count} numbers, got {text!r}") from None
    if len(values) != count:
        raise UrdfError(path, f"{where}: expected {count} numbers, got {text!r}")
    return values


def _origin(element: ET.Element | None, where: str, path: Path) -> np.ndarray:
    transform = np.eye(4)
    if element is None:
        return transform
    xyz = _floats(element.get("xyz"), 3, 0.0, f"{where} origin xyz", path)
    rpy = _floats(element.get("rpy"), 3, 0.0, f"{where} origin rpy", path)
    transform[:3, :3] = rpy_matrix(*rpy)
    transform[:3, 3] = xyz
    return transform


def package_candidates(package: str, rest: str, urdf_path: Path, package_dirs: dict[str, Path] | None) -> list[Path]:
    """Where `package://PACKAGE/rest` may live, in search order: `package_dirs`, then each `ROS_PACKAGE_PATH`
    entry (the package itself or a folder holding it), then the URDF's folder and its parents, each as
    `<folder>/<package>/rest`, as the package folder itself, or (ROS description packages keep `meshes/`
    beside `urdf/`) as `<folder>/rest`."""
    candidates = []
    if package_dirs and package in package_dirs:
        candidates.append(Path(package_dirs[package]) / rest)
    for entry in filter(None, os.environ.get("ROS_PACKAGE_PATH", "").split(os.pathsep)):
        folder = Path(entry)
        candidates += [folder / rest] if folder.name == package else [folder / package / rest]
    for parent in urdf_path.resolve().parents:
        candidates += [parent / rest] if parent.name == package else [parent / package / rest, parent / rest]
    return candidates


def resolve_mesh_uri(uri: str, urdf_path: Path, package_dirs: dict[str, Path] | None = None) -> Path:
    """The file a mesh URI points at: `file://`, `package://` (see `package_candidates`) or a relative path."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if uri.startswith("package://"):
        package, _, rest = uri[len("package://") :].partition("/")
        candidates = package_candidates(package, rest, urdf_path, package_dirs)
        return next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
    path = Path(uri)
    return path if path.is_absolute() else urdf_path.parent / path


def _rgb(color: ET.Element, where: str, path: Path) -> tuple[float, float, float]:
    """Red, green and blue of a <color rgba="..."> (Visual has no alpha)."""
    red, green, blue, _ = _floats(color.get("rgba"), 4, 1.0, where, path)
    return red, green, blue


def _visual(element: ET.Element, link: str, path: Path, materials: dict, package_dirs, check_meshes: bool):
    where = f"link {link!r} visual"
    origin = _origin(element.find("origin"), where, path)
    geometry = element.find("geometry")
    if geometry is None or len(geometry) == 0:
        raise UrdfError(path, f"{where} has no geometry")
    shape = geometry[0]
    color = None
    material = element.find("material")
    if material is not None:
        rgba = material.find("color")
        if rgba is not None:
            color = _rgb(rgba, f"{where} material color", path)
        elif material.get("name") in materials:
            color = materials[material.get("name")]
    if shape.tag == "mesh":
        uri = shape.get("filename", "")
        if not uri:
            raise UrdfError(path, f"{where}: mesh has no filename")
        mesh_path = resolve_mesh_uri(uri, path, package_dirs)
        if check_meshes and not mesh_path.is_file():
            if uri.startswith("package://"):
                package, _, rest = uri[len("package://") :].partition("/")
                looked = [str(c.parent) for c in package_candidates(package, rest, path, package_dirs)]
                raise UrdfError(path, f"{where}: mesh {uri}: package {package!r} not found (pass package_dirs="
                                      f"{{{package!r}: folder}} or set ROS_PACKAGE_PATH); looked in {looked}")
            raise UrdfError(path, f"{where}: mesh file not found: {uri} (looked for {mesh_path})")
        sx, sy, sz = _floats(shape.get("scale"), 3, 1.0, f"{where} mesh scale", path)
        return Visual(origin, "mesh", mesh_path=mesh_path, mesh_uri=uri, scale=(sx, sy, sz), color=color)
    if shape.tag == "box":
        return Visual(origin, "box", size=_floats(shape.get("size"), 3, 0.0, f"{where} box", path), color=color)
    if shape.tag == "cylinder":
        radius = _floats(shape.get("radius"), 1, 0.0, f"{where} cylinder radius", path)[0]
        length = _floats(shape.get("length"), 1, 0.0, f"{where} cylinder length", path)[0]
        return Visual(origin, "cylinder", size=(radius, length), color=color)
    if shape.tag == "sphere":
        radius = _floats(shape.get("radius"), 1, 0.0, f"{where} sphere radius", path)[0]
        return Visual(origin, "sphere", size=(radius,), color=color)
    raise UrdfError(path, f"{where}: unsupported geometry <{shape.tag}>")


def _expand_xacro(path: Path, arguments: dict[str, str]) -> str:
    """The URDF text of a xacro file, its `<xacro:arg>`s set from `arguments`."""
    import xacro

    try:
        return xacro.process_file(str(path), mappings={str(k): str(v) for k, v in arguments.items()}).toxml()
    except Exception as error:  # xacro raises its own XacroException, NameError, IOError and more
        raise UrdfError(path, f"xacro failed: {error}") from None


def load_urdf(
    path: str | Path, *, check_meshes: bool = True, package_dirs: dict[str, Path] | None = None,
    xacro_args: dict[str, str] | None = None,
) -> RobotDescription:
    """Parse a URDF file, or a `.xacro` file expanded first (with `xacro_args`); with `check_meshes`, every
    visual mesh must exist on disk."""
    path = Path(path)
    if not path.is_file():
        raise UrdfError(path, "file not found")
    try:
        if path.suffix == ".xacro" or xacro_args:
            robot = ET.fromstring(_expand_xacro(path, xacro_args or {}))
        else:
            robot = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise UrdfError(path, f"not well-formed XML: {error}") from None
    if robot.tag != "robot":
        raise UrdfError(path, f"root element is <{robot.tag}>, expected <robot>")

    materials: dict[str, tuple[float, float, float]] = {}
    for material in robot.findall("material"):
        rgba = material.find("color")
        name = material.get("name")
        if name and rgba is not None:
            materials[name] = _rgb(rgba, "material", path)

    links = []
    for element in robot.findall("link"):
        name = element.get("name")
        if not name:
            raise UrdfError(path, "a <link> has no name")
        visuals = tuple(
            _visual(v, name, path, materials, package_dirs, check_meshes) for v in element.findall("visual")
        )
        links.append(Link(name, visuals))
    link_index = {link.name: i for i, link in enumerate(links)}
    if len(link_index) != len(links):
        raise UrdfError(path, "duplicate link names")

    joints = [_joint(element, link_index, path) for element in robot.findall("joint")]
    joint_names = {joint.name for joint in joints}
    for joint in joints:
        if joint.mimic and joint.mimic.joint not in joint_names:
            raise UrdfError(path, f"joint {joint.name!r} mimics unknown joint {joint.mimic.joint!r}")
    children = [joint.child for joint in joints]
    if len(set(children)) != len(children):
        raise UrdfError(path, "a link has more than one parent joint")
    roots = [link.name for link in links if link.name not in set(children)]
    if len(roots) != 1:
        raise UrdfError(path, f"expected one root link, found {roots}")
    name = robot.get("name") or path.stem
    return RobotDescription(name, path, tuple(links), tuple(joints), roots[0], link_index)


def _joint(element: ET.Element, link_index: dict[str, int], path: Path) -> Joint:
    """One <joint>, checked against the links already read."""
    name = element.get("name") or "?"
    kind = element.get("type", "")
    where = f"joint {name!r}"
    if kind not in JOINT_TYPES:
        raise UrdfError(path, f"{where}: unsupported type {kind!r} (supported: {', '.join(JOINT_TYPES)})")
    parent = element.find("parent")
    child = element.find("child")
    if parent is None or child is None:
        raise UrdfError(path, f"{where}: needs <parent> and <child>")
    parent_name, child_name = parent.get("link", ""), child.get("link", "")
    for end in (parent_name, child_name):
        if end not in link_index:
            raise UrdfError(path, f"{where}: unknown link {end!r}")
    axis = np.array(_floats(_attr(element.find("axis"), "xyz"), 3, 0.0, f"{where} axis", path))
    if element.find("axis") is None:
        axis = np.array([1.0, 0.0, 0.0])
    norm = float(np.linalg.norm(axis))
    if kind != "fixed" and norm < 1e-9:
        raise UrdfError(path, f"{where}: axis is zero")
    axis = axis / norm if norm > 0 else axis
    lower, upper, velocity, effort = -math.inf, math.inf, math.inf, math.inf
    limit = element.find("limit")
    if limit is not None:
        velocity = float(limit.get("velocity", math.inf))
        effort = float(limit.get("effort", math.inf))
        if kind in ("revolute", "prismatic"):
            lower = float(limit.get("lower", 0.0))
            upper = float(limit.get("upper", 0.0))
    elif kind in ("revolute", "prismatic"):
        raise UrdfError(path, f"{where}: a {kind} joint needs <limit>")
    if lower > upper:
        raise UrdfError(path, f"{where}: lower limit {lower} is above upper limit {upper}")
    mimic = None
    mimic_element = element.find("mimic")
    if mimic_element is not None:
        mimic = Mimic(
            mimic_element.get("joint", ""),
            float(mimic_element.get("multiplier", 1.0)),
            float(mimic_element.get("offset", 0.0)),
        )
    origin = _origin(element.find("origin"), where, path)
    return Joint(name, kind, parent_name, child_name, origin, axis, lower, upper, velocity, effort, mimic)


def _attr(element: ET.Element | None, key: str) -> str | None:
    return None if element is None else element.get(key)


def rtb_urdf(relative: str) -> Path:
    """Path of a URDF shipped by the `rtb-data` package, e.g. 'kuka_description/kuka_kr16/urdf/kr16_2.urdf'."""
    import rtbdata

    return Path(rtbdata.__file__).parent / "xacro" / relative
