"""Robots in the physics model: each link with collision geometry is a kinematic body posed by the twin's FK.

A link body is heavy and on a free joint, like the belts: before every step its pose and velocity are
prescribed, moving at constant velocity from where the last `set_robot_joints` put it to where the latest one
puts it over the steps of the next `step`/`advance_to` call. Parts in its way are pushed by contact (the
solver sees the link's velocity), never passed through. Link bodies touch parts only: not the layout's
boxes, belts or each other. A part a gripper holds is prescribed the same way, at the pose relative to the
tool found when it was gripped, until it is released (docs/physics.md, "Robots and grippers").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh
from pxr import Usd, UsdGeom, UsdPhysics
from scipy.spatial.transform import Rotation

from twin.core.errors import LayoutError
from twin.kinematics.chain import Chain
from twin.kinematics.usd import link_prim_paths

from .gripper import Gripper, read_gripper
from .shapes import _box

MAX_HULL_VERTICES = 64
HULL_GRID = 0.005  # metres: the first grid a hull's corners snap to


@dataclass(frozen=True)
class LinkShape:
    """One convex shape in its link's frame: a box (`half_extents`, placed by `frame`) or a hull (`points`)."""

    path: str
    frame: np.ndarray  # (4, 4) in the link's frame
    half_extents: np.ndarray | None = None
    points: np.ndarray | None = None  # (V, 3) hull vertices, in the link's frame
    faces: np.ndarray | None = None  # (F, 3) hull triangles


@dataclass(frozen=True)
class RobotGeometry:
    path: str
    chain: Chain
    base: np.ndarray  # (4, 4) the robot prim's rigid world pose: chain poses are in its frame
    links: tuple[int, ...]  # chain link indices that carry shapes
    shapes: tuple[tuple[LinkShape, ...], ...]  # per entry of `links`
    gripper: Gripper | None = None
    tool: int = -1  # chain link index of the gripper's link

    def poses(self, q, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """World poses at joint values `q` of the links with shapes (in `links` order, (n, 4, 4)) and of the
        gripper's link (4, 4; identity without a gripper)."""
        world = self.chain.fk(q, base=self.base, device=device)[0]
        return world[list(self.links)], world[self.tool] if self.tool >= 0 else np.eye(4)


def read_robots(stage: Usd.Stage) -> tuple[RobotGeometry, ...]:
    """Every robot of `stage` (prims with `twin:kind = robot`) with its links' collision shapes and gripper.

    A link's shapes are its Cube and Mesh prims with `UsdPhysics.CollisionAPI` if it has any, else its visible
    meshes; each Cube is a box and each Mesh its convex hull.
    """
    where = stage.GetRootLayer().identifier
    cache = UsdGeom.XformCache()
    robots = []
    for prim in stage.Traverse():
        if prim.GetAttribute("twin:kind").Get() != "robot":
            continue
        path = str(prim.GetPath())
        chain = Chain.from_usd(stage, path)
        base = _rigid(np.array(cache.GetLocalToWorldTransform(prim), np.float64).T)
        link_paths = link_prim_paths(stage, path)
        links, shapes, gripper, tool = [], [], None, -1
        for name, link_path in link_paths.items():
            link = stage.GetPrimAtPath(link_path)
            found = _link_shapes(link, set(link_paths.values()), cache, where)
            if found:
                links.append(chain.link_index(name))
                shapes.append(found)
            declared = read_gripper(link, where)
            if declared is not None:
                if gripper is not None:
                    raise LayoutError(where, f"{path}: two grippers ({gripper.path}, {link_path}); physics takes one")
                gripper, tool = declared, chain.link_index(name)
        robots.append(RobotGeometry(path, chain, base, tuple(links), tuple(shapes), gripper, tool))
    return tuple(robots)


def _link_shapes(link: Usd.Prim, links: set[str], cache: UsdGeom.XformCache, where: str) -> tuple[LinkShape, ...]:
    inverse = np.linalg.inv(_rigid(np.array(cache.GetLocalToWorldTransform(link), np.float64).T))
    found = []
    iterator = iter(Usd.PrimRange(link))
    for prim in iterator:
        if prim != link and str(prim.GetPath()) in links:
            iterator.PruneChildren()  # a nested link has its own body
            continue
        if prim.IsA(UsdGeom.Mesh) or prim.IsA(UsdGeom.Cube):
            found.append(prim)
    collision = [prim for prim in found if prim.HasAPI(UsdPhysics.CollisionAPI)]
    chosen = collision or [prim for prim in found if UsdGeom.Imageable(prim).ComputeVisibility() != "invisible"
                           and UsdGeom.Imageable(prim).ComputePurpose() != UsdGeom.Tokens.guide]
    shapes = []
    for prim in chosen:
        if prim.IsA(UsdGeom.Cube):
            box = _box(prim, cache, where)
            frame = np.eye(4)
            frame[:3, :3], frame[:3, 3] = box.rotation, box.centre
            shapes.append(LinkShape(box.path, inverse @ frame, half_extents=box.half_extents))
            continue
        points = np.asarray(UsdGeom.Mesh(prim).GetPointsAttr().Get() or [], np.float64).reshape(-1, 3)
        if len(points) < 4:
            continue
        world = np.array(cache.GetLocalToWorldTransform(prim), np.float64).T
        in_link = points @ (inverse @ world)[:3, :3].T + (inverse @ world)[:3, 3]
        hull = _coarse_hull(in_link)
        shapes.append(LinkShape(str(prim.GetPath()), np.eye(4), points=np.asarray(hull.vertices, np.float64),
                                faces=np.asarray(hull.faces, np.int32)))
    return tuple(shapes)


def _coarse_hull(points: np.ndarray) -> trimesh.Trimesh:
    """The convex hull of `points` with at most MAX_HULL_VERTICES corners: the hull's corners are snapped to a grid,
    finer first, then coarser until few enough (Newton and MuJoCo spend time quadratic in a hull's corners)."""
    hull = trimesh.convex.convex_hull(points)
    cell = HULL_GRID
    while len(hull.vertices) > MAX_HULL_VERTICES:
        hull = trimesh.convex.convex_hull(np.unique(np.round(hull.vertices / cell) * cell, axis=0))
        cell *= 1.5
    return hull


def _rigid(matrix: np.ndarray) -> np.ndarray:
    rigid = matrix.copy()
    rigid[:3, :3] /= np.linalg.norm(matrix[:3, :3], axis=0)
    return rigid


@dataclass
class RobotMotion:
    """Where one robot's link bodies were and are going (world 4x4 poses), and the part its gripper holds."""

    start: np.ndarray  # (links, 4, 4) at the start of the next call
    end: np.ndarray  # (links, 4, 4) at its end
    start_tool: np.ndarray  # (4, 4) the gripper's link
    tool_end: np.ndarray
    held: int | None = None
    held_offset: np.ndarray = field(default_factory=lambda: np.eye(4))  # the part in the tool's frame

    def arrived(self) -> None:
        """The links reached `end`: the next call starts there."""
        self.start, self.start_tool = self.end.copy(), self.tool_end.copy()


def interpolate(start: np.ndarray, end: np.ndarray, steps: int, dt: float) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray, np.ndarray]:
    """Poses at the start of each of `steps` steps moving at constant velocity from `start` to `end` (n, 4, 4).

    Returns positions (steps, n, 3), quaternions x, y, z, w (steps, n, 4), and the constant linear and angular
    velocities in the world (n, 3) each.
    """
    duration = steps * dt
    start_quaternions = _quaternions(start[:, :3, :3])
    if np.array_equal(start, end):  # at rest, as robots mostly are: no rotation arithmetic
        still = np.zeros((len(start), 3))
        return (np.broadcast_to(start[None, :, :3, 3], (steps, len(start), 3)),
                np.broadcast_to(start_quaternions[None], (steps, len(start), 4)), still, still)
    turn = Rotation.from_quat(_quaternions(end[:, :3, :3] @ np.swapaxes(start[:, :3, :3], 1, 2))).as_rotvec()
    linear = (end[:, :3, 3] - start[:, :3, 3]) / duration
    fractions = np.arange(steps, dtype=np.float64)[:, None, None] / steps
    positions = start[None, :, :3, 3] + fractions * (end[None, :, :3, 3] - start[None, :, :3, 3])
    rotations = Rotation.from_rotvec((fractions * turn[None]).reshape(-1, 3)) * \
        Rotation.from_quat(np.tile(start_quaternions, (steps, 1)))
    return positions, rotations.as_quat().reshape(steps, -1, 4), linear, turn / duration


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """(n, 4) unit quaternions x, y, z, w of (n, 3, 3) rotation matrices (Shepperd's method; scipy's from_matrix
    runs an SVD per matrix, which cost more than the physics step for a robot's links)."""
    r = rotations
    trace = np.trace(r, axis1=1, axis2=2)
    diagonal = np.diagonal(r, axis1=1, axis2=2)
    largest = np.argmax(np.concatenate([diagonal, trace[:, None]], axis=1), axis=1)
    quaternions = np.empty((len(r), 4))
    for axis in range(3):  # the largest diagonal element first keeps the division well away from zero
        i, j, k = axis, (axis + 1) % 3, (axis + 2) % 3
        chosen = largest == axis
        m = r[chosen]
        quaternions[chosen, i] = 1 + 2 * m[:, i, i] - trace[chosen]
        quaternions[chosen, j] = m[:, j, i] + m[:, i, j]
        quaternions[chosen, k] = m[:, k, i] + m[:, i, k]
        quaternions[chosen, 3] = m[:, k, j] - m[:, j, k]
    chosen = largest == 3
    m = r[chosen]
    quaternions[chosen, 0] = m[:, 2, 1] - m[:, 1, 2]
    quaternions[chosen, 1] = m[:, 0, 2] - m[:, 2, 0]
    quaternions[chosen, 2] = m[:, 1, 0] - m[:, 0, 1]
    quaternions[chosen, 3] = 1 + trace[chosen]
    return quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True)
