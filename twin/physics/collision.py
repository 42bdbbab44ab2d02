"""Collision checks of robot motion on Warp: joint trajectories against the cell's geometry and the robot itself.

Every body is a set of triangles in its own frame: one per link (the meshes under the link prim: those with
UsdPhysics.CollisionAPI if any, else the visual meshes) and one for the cell (every visible Mesh and Cube gprim
within the robot's reach that is not part of a robot: what the viewer shows, not the hidden boxes that stand in
for it in the parts physics). Each body gets a balanced bounding-box tree, built once and uploaded with the
triangles to the device (`_DeviceModel`, never changed); a batch only brings its link poses (into buffers kept
from call to call). Per configuration, each body's root box is first put in the world as an axis-aligned box,
and a pair whose two boxes are apart is done. Otherwise both trees are descended together, node boxes compared
by separating axes, and where one side reaches a leaf its triangles go down the other's subtree, pruned by an
exact triangle-box test, to triangle-triangle tests. A configuration stops at its first pair that meets: on
the CPU one thread runs a configuration's pairs in order, on a GPU one thread runs each pair.

Pairs checked: every moving link (one moved by a joint) against the cell, and two links of the robot when at
least two joints separate them and they do not already touch at the clamped zero configuration (adjacent
links overlap at their joints by design). A link moved by one joint alone, whose whole sweep over that joint's
range is proved clear of the cell (`_sweep_clear_of_cell`), is not checked against the cell. Contact means the
surfaces meet, or a body lies wholly inside a closed one (a link inside another link's closed mesh, or inside a
closed prim of the cell: a ray from one of its points meets that surface from behind first). Open meshes bound
no volume and are surfaces only.

Between two trajectory samples the joints are interpolated linearly, in steps small enough that no point of
any link moves more than `resolution` (bounded by joint change x the farthest reach of the geometry that
joint carries), so an obstacle thicker than `resolution` cannot be passed between two checks.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import warp as wp
from pxr import Usd, UsdGeom, UsdPhysics

from twin.core.errors import KinematicsError
from twin.core.motion import MotionCheck
from twin.core.stage import usd_to_numpy
from twin.core.transforms import matrix_to_pose
from twin.kinematics.chain import Chain
from twin.kinematics.device import default_device
from twin.kinematics.joints import PRISMATIC, REVOLUTE
from twin.kinematics.usd import read_robot

CELL = -1  # a body's link index when it is the cell's static geometry
DEFAULT_RESOLUTION = 0.005  # metres a link point may move between two checks
DEFAULT_MAX_DISTANCE = 0.5  # metres: clearances beyond this are reported as None
MAX_CHECKS = 2_000_000  # interpolated configurations per call
CHUNK = 32_768  # configurations per launch: bounds the pose buffers
MAX_CELL_EDGE = 0.5  # metres: longer cell triangles are split (see _split_near)


# --------------------------------------------------------------------------- kernels
@wp.func
def _segment_hits_triangle(p: wp.vec3, q: wp.vec3, a: wp.vec3, b: wp.vec3, c: wp.vec3) -> bool:
    """Moller-Trumbore restricted to the segment p..q."""
    e1 = b - a
    e2 = c - a
    d = q - p
    h = wp.cross(d, e2)
    det = wp.dot(e1, h)
    if det == 0.0:
        return False
    f = 1.0 / det
    s = p - a
    u = f * wp.dot(s, h)
    if u < 0.0 or u > 1.0:
        return False
    k = wp.cross(s, e1)
    v = f * wp.dot(d, k)
    if v < 0.0 or u + v > 1.0:
        return False
    t = f * wp.dot(e2, k)
    return t >= 0.0 and t <= 1.0


@wp.func
def _triangles_meet(a0: wp.vec3, a1: wp.vec3, a2: wp.vec3, b0: wp.vec3, b1: wp.vec3, b2: wp.vec3) -> bool:
    """Two non-coplanar triangles meet exactly when an edge of one crosses the other. Cheap rejection first:
    all three corners of one strictly on one side of the other's plane."""
    normal_a = wp.cross(a1 - a0, a2 - a0)
    d0 = wp.dot(normal_a, b0 - a0)
    d1 = wp.dot(normal_a, b1 - a0)
    d2 = wp.dot(normal_a, b2 - a0)
    if (d0 > 0.0 and d1 > 0.0 and d2 > 0.0) or (d0 < 0.0 and d1 < 0.0 and d2 < 0.0):
        return False
    normal_b = wp.cross(b1 - b0, b2 - b0)
    e0 = wp.dot(normal_b, a0 - b0)
    e1 = wp.dot(normal_b, a1 - b0)
    e2 = wp.dot(normal_b, a2 - b0)
    if (e0 > 0.0 and e1 > 0.0 and e2 > 0.0) or (e0 < 0.0 and e1 < 0.0 and e2 < 0.0):
        return False
    return (_segment_hits_triangle(a0, a1, b0, b1, b2) or _segment_hits_triangle(a1, a2, b0, b1, b2)
            or _segment_hits_triangle(a2, a0, b0, b1, b2) or _segment_hits_triangle(b0, b1, a0, a1, a2)
            or _segment_hits_triangle(b1, b2, a0, a1, a2) or _segment_hits_triangle(b2, b0, a0, a1, a2))


@wp.func
def _body_pose(link_world: wp.array2d(dtype=wp.transform), config: int, link: int) -> wp.transform:
    if link < 0:
        return wp.transform_identity()
    return link_world[config, link]


@wp.func
def _abs_matrix(m: wp.mat33) -> wp.mat33:
    return wp.mat33(wp.abs(m[0, 0]), wp.abs(m[0, 1]), wp.abs(m[0, 2]), wp.abs(m[1, 0]), wp.abs(m[1, 1]),
                    wp.abs(m[1, 2]), wp.abs(m[2, 0]), wp.abs(m[2, 1]), wp.abs(m[2, 2]))


@wp.func
def _box_lower(t: wp.transform, lower: wp.vec3, upper: wp.vec3) -> wp.vec3:
    """Lower corner of the box (lower, upper) moved by t, as an axis-aligned box."""
    center = wp.transform_point(t, 0.5 * (lower + upper))
    half = 0.5 * (upper - lower)
    return center - wp.mul(_abs_matrix(wp.quat_to_matrix(wp.transform_get_rotation(t))), half)


@wp.func
def _box_upper(t: wp.transform, lower: wp.vec3, upper: wp.vec3) -> wp.vec3:
    return 2.0 * wp.transform_point(t, 0.5 * (lower + upper)) - _box_lower(t, lower, upper)


_Stack = wp.types.vector(length=64, dtype=wp.int32)  # node pairs waiting: at most the two trees' depths summed


@wp.func
def _nodes_apart(rot: wp.mat33, rot_abs: wp.mat33, shift: wp.vec3, center_a: wp.vec3, half_a: wp.vec3,
                 center_b: wp.vec3, half_b: wp.vec3) -> bool:
    """Separating-axis test of two boxes on their six face axes: box a in a's frame, box b in b's frame, with
    b's frame in a's given by (rot, shift) and rot_abs = |rot| (padded). Never says apart when they overlap."""
    gap = wp.mul(rot, center_b) + shift - center_a
    reach_b = wp.mul(rot_abs, half_b)
    if wp.abs(gap[0]) > half_a[0] + reach_b[0] or wp.abs(gap[1]) > half_a[1] + reach_b[1] \
            or wp.abs(gap[2]) > half_a[2] + reach_b[2]:
        return True
    local = wp.mul(wp.transpose(rot), gap)
    reach_a = wp.mul(wp.transpose(rot_abs), half_a)
    return wp.abs(local[0]) > half_b[0] + reach_a[0] or wp.abs(local[1]) > half_b[1] + reach_a[1] \
        or wp.abs(local[2]) > half_b[2] + reach_a[2]


@wp.func
def _triangle_apart(v0: wp.vec3, v1: wp.vec3, v2: wp.vec3, center: wp.vec3, half: wp.vec3) -> bool:
    """Separating-axis test of a triangle against an axis-aligned box (Akenine-Moller): the box's three axes,
    the triangle's normal and the nine edge-by-axis directions."""
    a = v0 - center
    b = v1 - center
    c = v2 - center
    low = wp.min(wp.min(a, b), c)
    high = wp.max(wp.max(a, b), c)
    if low[0] > half[0] or low[1] > half[1] or low[2] > half[2] or high[0] < -half[0] or high[1] < -half[1] \
            or high[2] < -half[2]:
        return True
    normal = wp.cross(b - a, c - a)
    if wp.abs(wp.dot(normal, a)) > wp.dot(half, wp.vec3(wp.abs(normal[0]), wp.abs(normal[1]), wp.abs(normal[2]))):
        return True
    for e in range(3):
        edge = b - a
        if e == 1:
            edge = c - b
        elif e == 2:
            edge = a - c
        for k in range(3):
            axis = wp.vec3(0.0, -edge[2], edge[1])
            if k == 1:
                axis = wp.vec3(edge[2], 0.0, -edge[0])
            elif k == 2:
                axis = wp.vec3(-edge[1], edge[0], 0.0)
            pa = wp.dot(axis, a)
            pb = wp.dot(axis, b)
            pc = wp.dot(axis, c)
            reach = half[0] * wp.abs(axis[0]) + half[1] * wp.abs(axis[1]) + half[2] * wp.abs(axis[2])
            if wp.min(wp.min(pa, pb), pc) > reach or wp.max(wp.max(pa, pb), pc) < -reach:
                return True
    return False


@wp.func
def _triangle_meets_tree(b0: wp.vec3, b1: wp.vec3, b2: wp.vec3, root: int, node_center: wp.array(dtype=wp.vec3),
                         node_half: wp.array(dtype=wp.vec3), node_child: wp.array(dtype=int),
                         node_first: wp.array(dtype=int), node_count: wp.array(dtype=int),
                         tri_points: wp.array(dtype=wp.vec3)) -> int:
    """The triangle below `root` that the triangle (in the tree's frame) meets, -1 if none; nodes whose box it
    misses are pruned."""
    stack = _Stack()
    stack[0] = root
    top = int(1)
    while top > 0:
        top -= 1
        node = stack[top]
        if _triangle_apart(b0, b1, b2, node_center[node], node_half[node]):
            continue
        child = node_child[node]
        if child >= 0:
            stack[top] = child
            stack[top + 1] = child + 1
            top += 2
            continue
        for j in range(node_first[node], node_first[node] + node_count[node]):
            if _triangles_meet(tri_points[3 * j], tri_points[3 * j + 1], tri_points[3 * j + 2], b0, b1, b2):
                return j
    return -1


@wp.func
def _surfaces_meet(b_to_a: wp.transform, root_a: int, root_b: int, node_center: wp.array(dtype=wp.vec3),
                   node_half: wp.array(dtype=wp.vec3), node_child: wp.array(dtype=int),
                   node_first: wp.array(dtype=int), node_count: wp.array(dtype=int),
                   tri_points: wp.array(dtype=wp.vec3), tri_face: wp.array(dtype=int)) -> int:
    """Both bodies' bounding-box trees descended together (the larger box split first), pruning node pairs
    whose boxes are apart; at a leaf of b, each of its triangles goes down a's subtree. The face of b that
    meets a, or -1; -2 when even the root boxes are apart."""
    rot = wp.quat_to_matrix(wp.transform_get_rotation(b_to_a))
    shift = wp.transform_get_translation(b_to_a)
    rot_abs = _abs_matrix(rot) + wp.mat33(
        1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6)  # rounding never separates touching boxes
    if _nodes_apart(rot, rot_abs, shift, node_center[root_a], node_half[root_a], node_center[root_b],
                    node_half[root_b]):
        return -2
    a_to_b = wp.transform_inverse(b_to_a)
    # a's root box as a box in b's frame: while b is split under it (a link against the cell's tree), b's three
    # axes, the likeliest to separate, are tried first at the cost of three comparisons
    root_in_b = wp.mul(wp.transpose(rot), node_center[root_a] - shift)
    root_reach = wp.mul(wp.transpose(rot_abs), node_half[root_a])
    stack_a = _Stack()
    stack_b = _Stack()
    stack_a[0] = root_a
    stack_b[0] = root_b
    top = int(1)
    while top > 0:
        top -= 1
        node_a = stack_a[top]
        node_b = stack_b[top]
        child_a = node_child[node_a]
        child_b = node_child[node_b]
        if child_b < 0:  # a leaf's triangles, each down the other's subtree on its own
            for i in range(node_first[node_b], node_first[node_b] + node_count[node_b]):
                if _triangle_meets_tree(wp.transform_point(b_to_a, tri_points[3 * i]),
                                        wp.transform_point(b_to_a, tri_points[3 * i + 1]),
                                        wp.transform_point(b_to_a, tri_points[3 * i + 2]), node_a, node_center,
                                        node_half, node_child, node_first, node_count, tri_points) >= 0:
                    return tri_face[i]
            continue
        if child_a < 0:
            for i in range(node_first[node_a], node_first[node_a] + node_count[node_a]):
                met = _triangle_meets_tree(wp.transform_point(a_to_b, tri_points[3 * i]),
                                           wp.transform_point(a_to_b, tri_points[3 * i + 1]),
                                           wp.transform_point(a_to_b, tri_points[3 * i + 2]), node_b, node_center,
                                           node_half, node_child, node_first, node_count, tri_points)
                if met >= 0:
                    return tri_face[met]
            continue
        half_a = node_half[node_a]
        half_b = node_half[node_b]
        split_a = child_a >= 0 and wp.dot(half_a, wp.vec3(1.0)) > wp.dot(half_b, wp.vec3(1.0))
        for k in range(2):
            next_a = node_a
            next_b = node_b
            if split_a:
                next_a = child_a + k
            else:
                next_b = child_b + k
            if next_a == root_a:
                gap = node_center[next_b] - root_in_b
                reach = node_half[next_b] + root_reach
                if wp.abs(gap[0]) > reach[0] or wp.abs(gap[1]) > reach[1] or wp.abs(gap[2]) > reach[2]:
                    continue
            if not _nodes_apart(rot, rot_abs, shift, node_center[next_a], node_half[next_a], node_center[next_b],
                                node_half[next_b]):
                stack_a[top] = next_a
                stack_b[top] = next_b
                top += 1
    return -1


_RAY = wp.constant(wp.normalize(wp.vec3(0.5377, 0.6121, 0.5797)))


@wp.func
def _inside(mesh: wp.uint64, closed: int, center: wp.vec3, half: wp.vec3, point: wp.vec3) -> bool:
    """Is `point` (in the mesh's frame) inside the closed, outward-wound mesh whose box is (center, half)? Inside
    exactly when a ray from it first meets a face from behind (a skew ray: none of the axis-aligned edges)."""
    offset = point - center
    if closed == 0 or wp.abs(offset[0]) > half[0] or wp.abs(offset[1]) > half[1] or wp.abs(offset[2]) > half[2]:
        return False
    found = wp.mesh_query_ray(mesh, point, _RAY, 4.0 * wp.length(half))
    return found.result and found.sign < 0.0


@wp.func
def _pair_face(
    link_world: wp.array2d(dtype=wp.transform), config: int, a: int, b: int,
    body_link: wp.array(dtype=int), body_root: wp.array(dtype=int), body_mesh: wp.array(dtype=wp.uint64),
    body_closed: wp.array(dtype=int), body_points: wp.array(dtype=wp.vec3), body_point_start: wp.array(dtype=int),
    node_center: wp.array(dtype=wp.vec3), node_half: wp.array(dtype=wp.vec3), node_child: wp.array(dtype=int),
    node_first: wp.array(dtype=int), node_count: wp.array(dtype=int), tri_points: wp.array(dtype=wp.vec3),
    tri_face: wp.array(dtype=int), solid_mesh: wp.array(dtype=wp.uint64), solid_center: wp.array(dtype=wp.vec3),
    solid_half: wp.array(dtype=wp.vec3), solid_face: wp.array(dtype=int),
) -> int:
    """The face of body b that body a meets in configuration `config`, -1 if apart. A body wholly inside the
    other (a closed mesh, or a closed solid of the cell) meets it too."""
    a_pose = _body_pose(link_world, config, body_link[a])
    b_pose = _body_pose(link_world, config, body_link[b])
    b_to_a = wp.transform_multiply(wp.transform_inverse(a_pose), b_pose)
    face = _surfaces_meet(b_to_a, body_root[a], body_root[b], node_center, node_half, node_child, node_first,
                          node_count, tri_points, tri_face)
    if face == -1:  # boxes overlap, surfaces apart: one body may hold the other
        a_point = body_points[body_point_start[a]]
        if body_link[b] < 0:
            world = wp.transform_point(a_pose, a_point)
            for solid in range(solid_mesh.shape[0]):
                if face < 0 and _inside(solid_mesh[solid], 1, solid_center[solid], solid_half[solid], world):
                    face = solid_face[solid]
        else:
            root_a = body_root[a]
            root_b = body_root[b]
            if _inside(body_mesh[b], body_closed[b], node_center[root_b], node_half[root_b],
                       wp.transform_point(wp.transform_inverse(b_to_a), a_point)) \
                    or _inside(body_mesh[a], body_closed[a], node_center[root_a], node_half[root_a],
                               wp.transform_point(b_to_a, body_points[body_point_start[b]])):
                face = tri_face[node_first[root_b]]
    return wp.max(face, -1)


@wp.kernel(enable_backward=False)
def _body_box_kernel(link_world: wp.array2d(dtype=wp.transform), body_link: wp.array(dtype=int),
                     body_root: wp.array(dtype=int), node_center: wp.array(dtype=wp.vec3),
                     node_half: wp.array(dtype=wp.vec3), box_lower: wp.array2d(dtype=wp.vec3),
                     box_upper: wp.array2d(dtype=wp.vec3)):
    """Each body's root box in the world, as an axis-aligned box, per configuration: one cheap test then
    rejects a pair of bodies far apart, whatever pairs they are in."""
    config = wp.tid()
    for body in range(body_link.shape[0]):
        pose = _body_pose(link_world, config, body_link[body])
        root = body_root[body]
        center = wp.transform_point(pose, node_center[root])
        extent = wp.mul(_abs_matrix(wp.quat_to_matrix(wp.transform_get_rotation(pose))), node_half[root])
        box_lower[config, body] = center - extent
        box_upper[config, body] = center + extent


@wp.kernel(enable_backward=False)
def _contact_kernel(
    link_world: wp.array2d(dtype=wp.transform), pair_a: wp.array(dtype=int), pair_b: wp.array(dtype=int),
    body_link: wp.array(dtype=int), body_root: wp.array(dtype=int), body_mesh: wp.array(dtype=wp.uint64),
    body_closed: wp.array(dtype=int), body_points: wp.array(dtype=wp.vec3), body_point_start: wp.array(dtype=int),
    node_center: wp.array(dtype=wp.vec3), node_half: wp.array(dtype=wp.vec3), node_child: wp.array(dtype=int),
    node_first: wp.array(dtype=int), node_count: wp.array(dtype=int), tri_points: wp.array(dtype=wp.vec3),
    tri_face: wp.array(dtype=int), solid_mesh: wp.array(dtype=wp.uint64), solid_center: wp.array(dtype=wp.vec3),
    solid_half: wp.array(dtype=wp.vec3), solid_face: wp.array(dtype=int), first_only: int, lanes: int,
    box_lower: wp.array2d(dtype=wp.vec3), box_upper: wp.array2d(dtype=wp.vec3), first_pair: wp.array(dtype=int),
    hit_face: wp.array2d(dtype=int),
):
    """hit_face[c, p]: the face of pair p's body b that meets its body a in configuration c, -1 where apart.
    Thread (c, lane) checks pairs lane, lane + lanes, ... in order: on the CPU one lane (a thread per
    configuration, its pairs in order), on a GPU a lane per pair. With `first_only`, a pair after one that
    already met in the same configuration is skipped (left at -1): on the CPU every pair after the first that
    meets; on a GPU those that start after it was found."""
    config, lane = wp.tid()
    pair_count = pair_a.shape[0]
    pair = lane
    while pair < pair_count:
        hit_face[config, pair] = -1
        pair += lanes
    pair = lane
    while pair < pair_count:
        if first_only != 0 and first_pair[config] < pair:
            return
        a = pair_a[pair]
        b = pair_b[pair]
        low_a = box_lower[config, a]
        high_a = box_upper[config, a]
        low_b = box_lower[config, b]
        high_b = box_upper[config, b]
        face = int(-1)
        if low_a[0] <= high_b[0] and low_b[0] <= high_a[0] and low_a[1] <= high_b[1] and low_b[1] <= high_a[1] \
                and low_a[2] <= high_b[2] and low_b[2] <= high_a[2]:
            face = _pair_face(link_world, config, a, b, body_link, body_root, body_mesh, body_closed, body_points,
                              body_point_start, node_center, node_half, node_child, node_first, node_count,
                              tri_points, tri_face, solid_mesh, solid_center, solid_half, solid_face)
        hit_face[config, pair] = face
        if face >= 0 and first_only != 0:
            wp.atomic_min(first_pair, config, pair)
        pair += lanes


@wp.kernel
def _pair_proximity_kernel(
    link_world: wp.array2d(dtype=wp.transform), configs: wp.array(dtype=int), pairs: wp.array(dtype=int),
    pair_a: wp.array(dtype=int), pair_b: wp.array(dtype=int), body_link: wp.array(dtype=int),
    body_mesh: wp.array(dtype=wp.uint64), body_lower: wp.array(dtype=wp.vec3), body_upper: wp.array(dtype=wp.vec3),
    body_points: wp.array(dtype=wp.vec3), body_point_start: wp.array(dtype=int), max_distance: float, with_sign: int,
    clearance: wp.array(dtype=float), depth: wp.array(dtype=float),
):
    """For each (configuration, pair, side) row: the least clearance and the deepest penetration of the side's
    vertices within max_distance of the other body's box against the other body (signs from the nearest
    face's normal)."""
    row, side = wp.tid()
    config = configs[row]
    this = pair_a[pairs[row]]
    that = pair_b[pairs[row]]
    if side == 1:
        this = pair_b[pairs[row]]
        that = pair_a[pairs[row]]
    to_that = wp.transform_multiply(wp.transform_inverse(_body_pose(link_world, config, body_link[that])),
                                    _body_pose(link_world, config, body_link[this]))
    to_this = wp.transform_inverse(to_that)
    margin = wp.vec3(max_distance, max_distance, max_distance)
    low = wp.max(_box_lower(to_this, body_lower[that] - margin, body_upper[that] + margin), body_lower[this])
    high = wp.min(_box_upper(to_this, body_lower[that] - margin, body_upper[that] + margin), body_upper[this])
    least = max_distance
    deepest = float(0.0)
    for vertex in range(body_point_start[this], body_point_start[this + 1]):
        own = body_points[vertex]
        if own[0] < low[0] or own[1] < low[1] or own[2] < low[2] or own[0] > high[0] or own[1] > high[1] \
                or own[2] > high[2]:
            continue
        point = wp.transform_point(to_that, own)
        if with_sign == 0:  # clearance only: the unsigned query is the cheaper one
            nearest = wp.mesh_query_point_no_sign(body_mesh[that], point, least)
            if nearest.result:
                least = wp.length(point - wp.mesh_eval_position(body_mesh[that], nearest.face, nearest.u, nearest.v))
            continue
        found = wp.mesh_query_point_sign_normal(body_mesh[that], point, max_distance)
        if found.result:
            gap = wp.length(point - wp.mesh_eval_position(body_mesh[that], found.face, found.u, found.v))
            if found.sign < 0.0:
                deepest = wp.max(deepest, gap)
            else:
                least = wp.min(least, gap)
    clearance[row * 2 + side] = least
    depth[row * 2 + side] = deepest


# --------------------------------------------------------------------------- geometry from the layout
@dataclass
class _Body:
    name: str  # a prim path (the link's prim, or the cell)
    link: int  # chain link index, CELL for the cell
    points: np.ndarray  # (V, 3) float32 in the body's frame, metres
    faces: np.ndarray  # (F, 3) int32
    closed: bool  # the faces close a volume, wound outward


def _triangles(prim: Usd.Prim) -> tuple[np.ndarray, np.ndarray] | None:
    """(points, triangles) of a Mesh (polygons fanned) or Cube prim in its own frame, None for other prims."""
    if prim.IsA(UsdGeom.Mesh):
        mesh = UsdGeom.Mesh(prim)
        points = np.asarray(mesh.GetPointsAttr().Get() or [], np.float64).reshape(-1, 3)
        counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get() or [], np.int64)
        indices = np.asarray(mesh.GetFaceVertexIndicesAttr().Get() or [], np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        fans = [np.stack([indices[starts[counts > k]], indices[starts[counts > k] + k - 1],
                          indices[starts[counts > k] + k]], axis=1) for k in range(2, int(counts.max(initial=0)))]
        faces = np.concatenate(fans) if fans else np.zeros((0, 3), np.int64)
        return points, faces
    if prim.IsA(UsdGeom.Cube):
        half = 0.5 * float(UsdGeom.Cube(prim).GetSizeAttr().Get())
        corners = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
        faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
        return corners, faces
    return None


def _world(prim: Usd.Prim, meters: float) -> np.ndarray:
    matrix = usd_to_numpy(UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(Usd.TimeCode.Default()))
    matrix[:3, :] *= meters  # points in stage units become metres
    return matrix


def _is_robot(prim: Usd.Prim) -> bool:
    kind = prim.GetAttribute("twin:kind")
    return prim.HasAPI(UsdPhysics.ArticulationRootAPI) or bool(kind and kind.Get() == "robot")


def _geometry_under(prim: Usd.Prim, stop: set[str], *, collision_first: bool) -> list[Usd.Prim]:
    """The Mesh and Cube prims below `prim`, not descending into prims whose path is in `stop`: those with
    UsdPhysics.CollisionAPI when `collision_first` and there are any, else the visible ones (no guides)."""
    found: list[Usd.Prim] = []
    iterator = iter(Usd.PrimRange(prim))
    for child in iterator:
        if child != prim and str(child.GetPath()) in stop:
            iterator.PruneChildren()
            continue
        if _triangles_type(child) and UsdGeom.Imageable(child).ComputePurpose() != UsdGeom.Tokens.guide:
            found.append(child)
    collision = [p for p in found if p.HasAPI(UsdPhysics.CollisionAPI)] if collision_first else []
    return collision or [p for p in found if UsdGeom.Imageable(p).ComputeVisibility() != UsdGeom.Tokens.invisible]


def _triangles_type(prim: Usd.Prim) -> bool:
    return prim.IsA(UsdGeom.Mesh) or prim.IsA(UsdGeom.Cube)


def _gather(prims: list[Usd.Prim], frame_inverse: np.ndarray, meters: float) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """Points (in the frame whose inverse is given), faces, and the index of the prim of each face."""
    points, faces, owners, offset = [], [], [], 0
    for index, prim in enumerate(prims):
        local = _triangles(prim)
        if local is None or not len(local[1]):
            continue
        transform = frame_inverse @ _world(prim, meters)
        points.append(local[0] @ transform[:3, :3].T + transform[:3, 3])
        faces.append(local[1] + offset)
        owners.append(np.full(len(local[1]), index))
        offset += len(local[0])
    if not faces:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    return np.concatenate(points), np.concatenate(faces), np.concatenate(owners)


def _split_near(triangles: np.ndarray, owners: np.ndarray, center: np.ndarray, radius: float,
                longest: float = MAX_CELL_EDGE) -> tuple[np.ndarray, np.ndarray]:
    """The triangles (T, 3, 3) within `radius` of `center`, halved across their longest edge until none is
    longer than `longest`: a big face (a floor, a table top) seen from a tilted link then bounds only the
    link triangles near it, not the whole link."""
    kept_triangles, kept_owners = [], []
    while len(triangles):
        near = np.linalg.norm(np.clip(center, triangles.min(1), triangles.max(1)) - center, axis=1) <= radius
        triangles, owners = triangles[near], owners[near]
        edges = np.linalg.norm(triangles[:, [1, 2, 0]] - triangles, axis=2)  # edge k runs from vertex k to k+1
        small = edges.max(1) <= longest
        kept_triangles.append(triangles[small])
        kept_owners.append(owners[small])
        triangles, owners, edges = triangles[~small], owners[~small], edges[~small]
        k = edges.argmax(1)
        rows = np.arange(len(triangles))
        start, end, apex = triangles[rows, k], triangles[rows, (k + 1) % 3], triangles[rows, (k + 2) % 3]
        middle = 0.5 * (start + end)
        triangles = np.concatenate([np.stack([start, middle, apex], 1), np.stack([middle, end, apex], 1)])
        owners = np.concatenate([owners, owners])
    return np.concatenate(kept_triangles or [np.zeros((0, 3, 3))]), np.concatenate(kept_owners or [np.zeros(0, int)])


LEAF_TRIANGLES = 2  # triangles per leaf of a body's box tree


def _reduce(function: np.ufunc, values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """function over each segment values[bounds[2k]:bounds[2k + 1]] (segments in order, apart or touching)."""
    return function.reduceat(np.vstack([values, values[:1]]), bounds, axis=0)[::2]


def _box_tree(points: np.ndarray, faces: np.ndarray) -> dict[str, np.ndarray]:
    """A body's bounding-box tree, each node's triangles split at their median centroid across its longest
    axis (balanced, so its depth is log2 of its leaves, well within the traversal stack), built a level at a
    time. Node k's children are child[k] and child[k] + 1 (-1 for a leaf); a leaf holds the triangles
    order[first[k]:first[k] + count[k]]."""
    triangles = points[faces]
    low, high, centroid = triangles.min(1), triangles.max(1), triangles.mean(1)
    size = max(1, 2 * len(faces))  # a binary tree over at most len(faces) leaves
    tree = {"center": np.zeros((size, 3)), "half": np.full((size, 3), -1.0), "child": np.full(size, -1, np.int64),
            "first": np.zeros(size, np.int64), "count": np.zeros(size, np.int64)}
    order = np.arange(len(faces))
    nodes, starts, ends, used = np.array([0]), np.array([0]), np.array([len(faces)]), 1
    if not len(faces):  # an empty body: its box has negative size and overlaps nothing
        return {key: value[:1] for key, value in tree.items()} | {"order": order}
    while len(nodes):
        bounds = np.stack([starts, ends], 1).ravel()  # node k's triangles are order[bounds[2k]:bounds[2k + 1]]
        lower, upper = _reduce(np.minimum, low[order], bounds), _reduce(np.maximum, high[order], bounds)
        tree["center"][nodes], tree["half"][nodes] = 0.5 * (lower + upper), 0.5 * (upper - lower)
        counts = ends - starts
        leaf = counts <= LEAF_TRIANGLES
        tree["first"][nodes[leaf]], tree["count"][nodes[leaf]] = starts[leaf], counts[leaf]
        nodes, starts, ends, counts = nodes[~leaf], starts[~leaf], ends[~leaf], counts[~leaf]
        spread = _reduce(np.maximum, centroid[order], bounds) - _reduce(np.minimum, centroid[order], bounds)
        axis = spread[~leaf].argmax(1)
        segment = np.repeat(np.arange(len(nodes)), counts)
        position = np.arange(counts.sum()) + np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        key = centroid[order[position], axis[segment]]
        order[position] = order[position][np.lexsort((key, segment))]  # sorted along its axis within each node
        tree["child"][nodes] = used + 2 * np.arange(len(nodes))
        middle = starts + counts // 2
        nodes = np.stack([tree["child"][nodes], tree["child"][nodes] + 1], 1).ravel()
        starts, ends = np.stack([starts, middle], 1).ravel(), np.stack([middle, ends], 1).ravel()
        used += len(nodes)
    return {key: value[:used] for key, value in tree.items()} | {"order": order}


def _closed_outward(points: np.ndarray, faces: np.ndarray) -> np.ndarray | None:
    """The faces wound outward when the triangles close a volume (every edge shared by exactly two faces
    that run it in opposite directions, points merged by position), else None."""
    _, merged = np.unique(points, axis=0, return_inverse=True)
    corners = merged.ravel()[faces]
    corners = corners[(corners[:, 0] != corners[:, 1]) & (corners[:, 1] != corners[:, 2])
                      & (corners[:, 2] != corners[:, 0])]
    if not len(corners):
        return None
    edges = np.concatenate([corners[:, [0, 1]], corners[:, [1, 2]], corners[:, [2, 0]]])
    forward = np.unique(edges, axis=0, return_counts=True)
    backward = np.unique(edges[:, ::-1], axis=0)
    if (forward[1] != 1).any() or len(backward) != len(forward[0]) or (backward != forward[0]).any():
        return None
    corner_points = points[faces]
    volume = np.einsum("ij,ij->i", corner_points[:, 0], np.cross(corner_points[:, 1], corner_points[:, 2])).sum()
    return faces if volume > 0 else faces[:, ::-1].copy()


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="twin-collision")
    return _POOLS[workers]


def _rigid_inverse(matrix: np.ndarray) -> np.ndarray:
    rotation = matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0)
    inverse = np.eye(4)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ matrix[:3, 3]
    return inverse


class _DeviceModel:
    """What the kernels read of a checker's bodies, uploaded once to one device and never changed: meshes
    (for point queries), box trees and their triangles (for contacts), the cell's closed solids."""

    def __init__(self, bodies: list[_Body], solids: list[_Body], device: str):
        def array(values, dtype) -> wp.array:
            values = np.asarray(values, np.float32).reshape(-1, 3) if dtype == wp.vec3 else np.asarray(values, np.int32)
            return wp.array(values, dtype=dtype, device=device)

        def mesh(body: _Body) -> wp.Mesh:
            return wp.Mesh(points=array(body.points, wp.vec3), indices=array(body.faces.ravel(), int))

        self.meshes = [mesh(b) if len(b.faces) else None for b in bodies]
        self.solid_meshes = [mesh(s) for s in solids]
        trees = [_box_tree(b.points, b.faces) for b in bodies]
        node_offset = np.concatenate([[0], np.cumsum([len(t["child"]) for t in trees])])
        triangle_offset = np.concatenate([[0], np.cumsum([len(b.faces) for b in bodies])])
        self.body_link = array([b.link for b in bodies], int)
        self.body_root = array(node_offset[:-1], int)
        self.body_mesh = wp.array([m.id if m else 0 for m in self.meshes], dtype=wp.uint64, device=device)
        self.body_closed = array([int(b.closed) for b in bodies], int)
        self.body_points = array(np.concatenate([b.points for b in bodies]), wp.vec3)
        self.body_point_start = array(np.concatenate([[0], np.cumsum([len(b.points) for b in bodies])]), int)
        self.body_lower = array([b.points.min(0) if len(b.faces) else np.full(3, 1.0) for b in bodies], wp.vec3)
        self.body_upper = array([b.points.max(0) if len(b.faces) else np.full(3, -1.0) for b in bodies], wp.vec3)
        self.node_center = array(np.concatenate([t["center"] for t in trees]), wp.vec3)
        self.node_half = array(np.concatenate([t["half"] for t in trees]), wp.vec3)
        self.node_child = array(np.concatenate([np.where(t["child"] >= 0, t["child"] + offset, -1)
                                                for t, offset in zip(trees, node_offset, strict=False)]), int)
        self.node_first = array(np.concatenate([t["first"] + offset
                                                for t, offset in zip(trees, triangle_offset, strict=False)]), int)
        self.node_count = array(np.concatenate([t["count"] for t in trees]), int)
        # triangles in leaf order, three corners each, with the body's own face index (the cell's tells the prim)
        self.tri_points = array(np.concatenate([b.points[b.faces[t["order"]]].reshape(-1, 3)
                                                for b, t in zip(bodies, trees, strict=True)]), wp.vec3)
        self.tri_face = array(np.concatenate([t["order"] for t in trees]), int)
        cell_faces = len(bodies[-1].faces)
        self.solid_mesh = wp.array([m.id for m in self.solid_meshes], dtype=wp.uint64, device=device)
        self.solid_center = array([0.5 * (s.points.min(0) + s.points.max(0)) for s in solids], wp.vec3)
        self.solid_half = array([0.5 * (s.points.max(0) - s.points.min(0)) for s in solids], wp.vec3)
        self.solid_face = array(cell_faces + np.arange(len(solids)), int)

    def contact_inputs(self) -> list:
        return [self.body_link, self.body_root, self.body_mesh, self.body_closed, self.body_points,
                self.body_point_start, self.node_center, self.node_half, self.node_child, self.node_first,
                self.node_count, self.tri_points, self.tri_face, self.solid_mesh, self.solid_center,
                self.solid_half, self.solid_face]


# --------------------------------------------------------------------------- the checker
class MotionChecker:
    """One robot of a layout and the cell around it, as Warp meshes on `device`, checked in batches."""

    def __init__(self, stage: Usd.Stage, robot_path: str, *, device: str | None = None,
                 resolution: float = DEFAULT_RESOLUTION):
        if not resolution > 0:
            raise ValueError(f"resolution must be a positive number of metres, got {resolution}")
        self.device = device or default_device()
        self.resolution = float(resolution)
        self.robot_path = robot_path
        self.chain = Chain.from_usd(stage, robot_path)
        meters = UsdGeom.GetStageMetersPerUnit(stage)
        robot_prim = stage.GetPrimAtPath(robot_path)
        self.robot_world = _world(robot_prim, meters)
        self.robot_world[:3, :3] /= np.linalg.norm(self.robot_world[:3, :3], axis=0)
        link_paths = read_robot(stage, robot_path).links
        self._workers = (os.cpu_count() or 1) if wp.get_device(self.device).is_cpu else 1
        self._lock = threading.Lock()  # one batch at a time through the buffers
        self._rest_q = np.clip(np.zeros(self.chain.n_joints), self.chain.lower, self.chain.upper)
        rest = self.chain.fk(self._rest_q, base=self.robot_world)[0]
        bodies: list[_Body] = []
        for index, name in enumerate(self.chain.link_names):
            if name not in link_paths:
                continue
            prims = _geometry_under(stage.GetPrimAtPath(link_paths[name]), set(link_paths.values()),
                                    collision_first=True)
            points, faces, _ = _gather(prims, _rigid_inverse(_world(stage.GetPrimAtPath(link_paths[name]), meters)),
                                       meters)
            if len(faces):
                outward = _closed_outward(points, faces)
                bodies.append(_Body(link_paths[name], index, points, faces if outward is None else outward,
                                    outward is not None))
        self.link_radius = np.zeros(self.chain.n_links)
        for body in bodies:
            self.link_radius[body.link] = float(np.linalg.norm(body.points, axis=1).max())
        self.reach = self._reach()
        robots = {str(p.GetPath()) for p in stage.Traverse() if _is_robot(p)}
        cell_prims = [p for p in _geometry_under(stage.GetPseudoRoot(), robots, collision_first=False)
                      if not any(p.GetPath().HasPrefix(r) for r in robots)]
        cell_points, cell_faces, owners = _gather(cell_prims, np.eye(4), meters)
        center = rest[0][:3, 3]
        radius = float(self.reach.max(initial=0.0) + self.link_radius.max(initial=0.0)) + 0.1
        triangles, owners = _split_near(cell_points[cell_faces], owners, center, radius)
        self.cell_faces_prim = [str(cell_prims[i].GetPath()) for i in owners]
        self.cell_prims = sorted(set(self.cell_faces_prim))
        points, corners = np.unique(triangles.reshape(-1, 3), axis=0, return_inverse=True)
        bodies.append(_Body("cell", CELL, points, corners.reshape(-1, 3), False))
        self.bodies = bodies
        self.solids: list[_Body] = []  # the cell's closed prims near the robot, whole: a link may sit inside one
        for index in sorted(set(owners.tolist())):
            points, faces, _ = _gather([cell_prims[index]], np.eye(4), meters)
            outward = _closed_outward(points, faces)
            if outward is not None:
                self.solids.append(_Body(str(cell_prims[index].GetPath()), CELL, points, outward, True))
        # a link inside solid k meets the cell's "face" len(cell faces) + k
        self.cell_faces_prim += [solid.name for solid in self.solids]
        self._pairs(rest)

    def _reach(self) -> np.ndarray:
        """Per link: how far from its joint any geometry it carries can be (path lengths plus mesh radii)."""
        chain = self.chain
        reach = np.zeros(chain.n_links)
        for link in range(chain.n_links):  # walk up from each link, adding the offsets on the way
            distance, node = self.link_radius[link], link
            while node >= 0:
                reach[node] = max(reach[node], distance)
                distance += float(np.linalg.norm(chain.joint_origin[node][:3, 3]))
                node = int(chain.link_parent[node])
        return reach

    def _ancestry(self, link: int) -> list[int]:
        """`link` and the links above it, up to the root."""
        path = []
        while link >= 0:
            path.append(link)
            link = int(self.chain.link_parent[link])
        return path

    def _moving_joints_between(self, a: int, b: int) -> int:
        up_a, up_b = self._ancestry(a), self._ancestry(b)
        common = set(up_a) & set(up_b)
        path = [k for k in up_a + up_b if k not in common]
        return sum(int(self.chain.joint_type[k]) in (REVOLUTE, PRISMATIC) for k in path)

    def _sweep_clear_of_cell(self, body: _Body, rest: np.ndarray, cell_triangles: np.ndarray) -> bool:
        """True when `body` moves with one joint only and nothing of the cell (`cell_triangles`: its and its solids'
        triangles in the world) comes near any pose of it, so no configuration can bring it into contact with it.

        Proof: in a frame whose z is the joint's axis (through its origin), a revolute joint turns each point
        of the link about z, keeping its height and its distance r from the axis, so every pose lies within
        the box |x|, |y| <= max r, z within the points' heights (ignoring the joint's limits); a prismatic joint
        slides the points along z over its range, within the points' x, y box and z range widened by the
        travel. If no cell triangle's bounding box in that frame meets the box (1 mm margin, far above
        float32 rounding), no surface meets the link at any pose; and since the box's inside is then wholly
        in or wholly out of each closed solid of the cell, a link point at rest outside every solid's box
        shows the link is never inside one."""
        chain = self.chain
        moving = [link for link in self._ancestry(body.link) if int(chain.joint_type[link]) in (REVOLUTE, PRISMATIC)]
        if len(moving) != 1:
            return False
        joint = moving[0]
        frame = rest[joint]  # the joint's axis passes through its link frame's origin, along joint_axis there
        axis = frame[:3, :3] @ chain.joint_axis[joint]
        axis /= np.linalg.norm(axis)
        across = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
        across /= np.linalg.norm(across)
        to_sweep = np.stack([across, np.cross(axis, across), axis])  # rows: the sweep frame's axes in the world
        world_points = body.points @ rest[body.link][:3, :3].T + rest[body.link][:3, 3]
        local = (world_points - frame[:3, 3]) @ to_sweep.T
        lower, upper = local.min(0), local.max(0)
        if int(chain.joint_type[joint]) == REVOLUTE:
            radius = float(np.linalg.norm(local[:, :2], axis=1).max())
            lower[:2], upper[:2] = -radius, radius
        else:
            index = int(chain.joint_q_index[joint])
            travel = chain.mimic_multiplier[joint] * (np.array([chain.lower[index], chain.upper[index]])
                                                      - self._rest_q[index])
            if not np.all(np.isfinite(travel)):
                return False
            lower[2], upper[2] = lower[2] + travel.min(), upper[2] + travel.max()
        lower, upper = lower - 1e-3, upper + 1e-3
        corners = (cell_triangles - frame[:3, 3]) @ to_sweep.T
        if np.any(np.all((corners.min(1) <= upper) & (corners.max(1) >= lower), axis=1)):
            return False
        return not any(np.all((world_points[0] >= s.points.min(0)) & (world_points[0] <= s.points.max(0)))
                       for s in self.solids)

    def _pairs(self, rest: np.ndarray) -> None:
        cell = len(self.bodies) - 1
        links = [i for i in range(cell)]
        moves = [self._moving_joints_between(0, self.bodies[i].link) > 0 for i in links]
        # the cell first, from the tool back (the likeliest contacts end a colliding configuration's check soonest)
        pairs = [(i, cell) for i in reversed(links) if moves[i] and len(self.bodies[cell].faces)]
        body = self.bodies[cell]  # the cell's triangles and its solids', in the world (every pair checks them)
        triangles = np.concatenate([body.points[body.faces], *[s.points[s.faces] for s in self.solids]])
        self.unreachable_pairs = [pair for pair in pairs
                                  if self._sweep_clear_of_cell(self.bodies[pair[0]], rest, triangles)]
        pairs = [pair for pair in pairs if pair not in self.unreachable_pairs]
        counts = [len(self.bodies[i].faces) for i in links]  # the smaller body second
        candidates = [(i, j) if counts[i] >= counts[j] else (j, i) for i in links for j in links
                      if i < j and self._moving_joints_between(self.bodies[i].link, self.bodies[j].link) >= 2]
        self._upload([*pairs, *candidates])
        if candidates:
            faces = self._contacts(self._link_world(self._rest_q[None]), first_only=False)[0]
            touching = {candidates[k] for k in range(len(candidates)) if faces[len(pairs) + k] >= 0}
            candidates = [pair for pair in candidates if pair not in touching]
        self.pairs = [*pairs, *candidates]
        self._upload(self.pairs)

    def _upload(self, pairs: list[tuple[int, int]]) -> None:
        if not hasattr(self, "_model"):
            self._model = _DeviceModel(self.bodies, self.solids, self.device)
        pair_array = np.array(pairs, np.int32).reshape(-1, 2)
        self._pair_a = wp.array(pair_array[:, 0], dtype=int, device=self.device)
        self._pair_b = wp.array(pair_array[:, 1], dtype=int, device=self.device)
        self._pair_count = len(pairs)
        self._capacity = 0  # the batch buffers are sized to the pairs: made again on the next batch

    # ----------------------------------------------------------------- batched evaluation
    def _buffers(self, count: int) -> None:
        """Device buffers for batches of up to `count` configurations, kept from call to call: allocating,
        zeroing and filling them anew cost as much as checking a few thousand configurations."""
        if count <= self._capacity:
            return
        capacity = max(count, min(2 * self._capacity, CHUNK))
        with wp.ScopedDevice(self.device):
            self._q = wp.empty((capacity, self.chain.n_joints), dtype=float)
            self._base = wp.array(np.tile(matrix_to_pose(self.robot_world).astype(np.float32), (capacity, 1)),
                                  dtype=wp.transform)
            self._poses = wp.empty((capacity, self.chain.n_links), dtype=wp.transform)
            self._faces = wp.empty((capacity, self._pair_count), dtype=int)
            self._first_pair = wp.empty(capacity, dtype=int)
            self._box_lower = wp.empty((capacity, len(self.bodies)), dtype=wp.vec3)
            self._box_upper = wp.empty((capacity, len(self.bodies)), dtype=wp.vec3)
        self._capacity = capacity

    def _link_world(self, q: np.ndarray) -> wp.array:
        """Link poses (N, n_links) on the device for joint vectors (N, n); valid until the next call."""
        count = len(q)
        self._buffers(count)
        q_device, link_world = self._q[:count], self._poses[:count]
        q_device.assign(np.ascontiguousarray(q, np.float32))
        self.chain.forward_evaluator(self.device).launch(q_device, self._base[:count], link_world)
        return link_world

    def _contacts(self, link_world: wp.array, first_only: bool = True) -> np.ndarray:
        """(N, pairs) face of body b met by body a, -1 where apart (or, with `first_only`, after the first pair
        that meets), for link poses (N, n_links) on the device.

        Warp runs a CPU launch on one thread, so on the CPU the configurations are cut into one slice per
        core, each launched from its own Python thread (launches release the GIL)."""
        count = link_world.shape[0]
        if not self._pair_count:
            return np.full((count, 0), -1)
        self._buffers(count)
        faces, first_pair = self._faces[:count], self._first_pair[:count]
        first_pair.fill_(self._pair_count)
        slices = min(self._workers, max(1, count // 256))
        bounds = np.linspace(0, count, slices + 1).astype(int)
        model = self._model.contact_inputs()
        lanes = 1 if wp.get_device(self.device).is_cpu else max(1, self._pair_count)  # CPU: a thread per configuration

        box_lower, box_upper = self._box_lower[:count], self._box_upper[:count]

        def launch(lo: int, hi: int) -> None:
            wp.launch(_body_box_kernel, dim=int(hi - lo), device=self.device,
                      inputs=[link_world[lo:hi], self._model.body_link, self._model.body_root, self._model.node_center,
                              self._model.node_half], outputs=[box_lower[lo:hi], box_upper[lo:hi]])
            wp.launch(_contact_kernel, dim=(int(hi - lo), lanes), device=self.device,
                      inputs=[link_world[lo:hi], self._pair_a, self._pair_b, *model, int(first_only), lanes,
                              box_lower[lo:hi], box_upper[lo:hi], first_pair[lo:hi]], outputs=[faces[lo:hi]])

        if slices == 1:
            launch(0, count)
        else:
            list(_pool(self._workers).map(launch, bounds[:-1], bounds[1:]))
        return faces.numpy().copy()

    def contacts(self, q) -> np.ndarray:
        """(B, pairs) for joint vectors (B, n): the face of the pair's second body that is met, -1 where apart;
        a configuration's pairs after its first contact are not checked (-1)."""
        q = self.chain.check_q(q)
        with self._lock:
            return np.concatenate([self._contacts(self._link_world(q[i:i + CHUNK])) for i in range(0, len(q), CHUNK)]
                                  or [np.zeros((0, self._pair_count), int)])

    def collides(self, q) -> np.ndarray:
        """(B,) bool: does each joint vector put the robot in contact with the cell or itself."""
        return (self.contacts(q) >= 0).any(axis=1)

    def _steps(self, trajectories: np.ndarray) -> np.ndarray:
        """(B, T-1) checks per segment so that no link point moves more than `resolution` within one step."""
        chain = self.chain
        weights = np.zeros(chain.n_joints)
        for link in range(chain.n_links):
            index = int(chain.joint_q_index[link])
            if index >= 0:
                lever = self.reach[link] if int(chain.joint_type[link]) == REVOLUTE else 1.0
                weights[index] += abs(float(chain.mimic_multiplier[link])) * lever
        moved = np.abs(np.diff(trajectories, axis=1)) @ weights
        return np.maximum(1, np.ceil(moved / self.resolution)).astype(np.int64)

    def check_motion(self, trajectory, *, times=None, distance: bool = True, max_distance: float = DEFAULT_MAX_DISTANCE,
                     max_checks: int = MAX_CHECKS) -> MotionCheck | list[MotionCheck]:
        """The first contact along a trajectory (T, n), or along each of a batch (B, T, n); a (n,) vector is a
        trajectory of one sample. `times` (T,) or (B, T) in seconds, default the sample index."""
        trajectories, single = self._check_trajectories(trajectory)
        count, samples, _ = trajectories.shape
        times = self._check_times(times, count, samples)
        steps = self._steps(trajectories) if samples > 1 else np.zeros((count, 0), np.int64)
        total = int(steps.sum()) + count
        if total > max_checks:
            raise ValueError(f"trajectory: {total:,} interpolated configurations to check at resolution "
                             f"{self.resolution} m, more than {max_checks:,}; send fewer or coarser trajectories")
        owner, position, q = self._interpolate(trajectories, steps)
        faces = self.contacts(q)
        hit = (faces >= 0).any(axis=1)
        results: list[MotionCheck] = []
        first_rows = [int(np.flatnonzero(hit & (owner == b))[0]) if (hit & (owner == b)).any() else -1
                      for b in range(count)]
        contact_rows = [r for r in first_rows if r >= 0]
        contact_pairs = np.array([int(np.flatnonzero(faces[r] >= 0)[0]) for r in contact_rows], np.int64)
        depths = self._proximity_rows(q[contact_rows], np.arange(len(contact_rows)), contact_pairs,
                                         max_distance)[1] if contact_rows else []
        clearances = self._clearances(trajectories, [b for b in range(count) if first_rows[b] < 0], max_distance) \
            if distance else {}
        for b in range(count):
            row = first_rows[b]
            if row < 0:
                results.append(MotionCheck(False, min_distance=clearances.get(b)))
                continue
            k = contact_rows.index(row)
            pair = self.pairs[int(contact_pairs[k])]
            sample = int(math.floor(position[row]))
            fraction = float(position[row] - sample)
            time = float(times[b, sample] + fraction * (times[b, sample + 1] - times[b, sample])) \
                if fraction > 0 else float(times[b, sample])
            link_body, other_body = self.bodies[pair[0]], self.bodies[pair[1]]
            other = self.cell_faces_prim[int(faces[row, contact_pairs[k]])] if other_body.link == CELL \
                else other_body.name
            results.append(MotionCheck(True, sample, fraction, time, self.chain.link_names[link_body.link], other,
                                       float(depths[k]), None, q[row].tolist()))
        return results[0] if single else results

    def _clearances(self, trajectories: np.ndarray, free: list[int], max_distance: float) -> dict[int, float | None]:
        """Least clearance over each free trajectory's own samples (None beyond max_distance)."""
        if not free or not self._pair_count:
            return {}
        q = trajectories[free].reshape(-1, self.chain.n_joints)
        rows = np.repeat(np.arange(len(q)), self._pair_count)
        pairs = np.tile(np.arange(self._pair_count), len(q))
        clearance = np.empty(0)
        for start in range(0, len(rows), CHUNK):  # a chunk of (sample, pair) rows over the samples they need
            part = slice(start, start + CHUNK)
            used = np.unique(rows[part])
            local = np.searchsorted(used, rows[part])
            least, _ = self._proximity_rows(q[used], local, pairs[part], max_distance, signed=False)
            clearance = np.concatenate([clearance, least])
        per_sample = clearance.reshape(len(q), self._pair_count).min(1).reshape(len(free), -1).min(1)
        return {b: (float(value) if value < max_distance else None) for b, value in zip(free, per_sample, strict=True)}

    def _proximity_rows(self, q: np.ndarray, rows: np.ndarray, pairs: np.ndarray, max_distance: float,
                        signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per (row, pair): least clearance and (when `signed`) deepest penetration, either body into the other."""
        with self._lock:
            link_world = self._link_world(q)
            count = len(rows)
            clearance = wp.empty(2 * count, dtype=float, device=self.device)
            depth = wp.empty(2 * count, dtype=float, device=self.device)
            model = self._model
            wp.launch(_pair_proximity_kernel, dim=(count, 2), device=self.device,
                      inputs=[link_world, wp.array(rows.astype(np.int32), dtype=int, device=self.device),
                              wp.array(pairs.astype(np.int32), dtype=int, device=self.device), self._pair_a,
                              self._pair_b, model.body_link, model.body_mesh, model.body_lower, model.body_upper,
                              model.body_points, model.body_point_start, float(max_distance), int(signed)],
                      outputs=[clearance, depth])
            return clearance.numpy().reshape(count, 2).min(1), depth.numpy().reshape(count, 2).max(1)

    def _interpolate(self, trajectories: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every configuration to check, in order: (owner trajectory, position in samples, joint vector)."""
        owners, positions, configs = [], [], []
        for b, trajectory in enumerate(trajectories):
            fractions = [np.arange(n) / n + s for s, n in enumerate(steps[b])] + [np.array([len(trajectory) - 1.0])]
            position = np.concatenate(fractions)
            lower = np.minimum(np.floor(position).astype(np.int64), len(trajectory) - 1)
            upper = np.minimum(lower + 1, len(trajectory) - 1)
            weight = (position - lower)[:, None]
            configs.append(trajectory[lower] * (1.0 - weight) + trajectory[upper] * weight)
            owners.append(np.full(len(position), b))
            positions.append(position)
        return np.concatenate(owners), np.concatenate(positions), np.concatenate(configs)

    def _check_trajectories(self, trajectory) -> tuple[np.ndarray, bool]:
        array = np.asarray(trajectory, np.float64)
        n = self.chain.n_joints
        single = array.ndim < 3
        if array.ndim == 1:
            array = array[None]
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[2] != n or array.shape[1] == 0 or array.shape[0] == 0:
            raise KinematicsError(f"robot {self.chain.name!r}: trajectory must have shape (T, {n}) or (B, T, {n}) "
                                  f"with T >= 1, got {np.shape(trajectory)}")
        if not np.all(np.isfinite(array)):
            bad = np.argwhere(~np.isfinite(array))[0]
            raise KinematicsError(f"robot {self.chain.name!r}: trajectory[{bad[0]}][{bad[1]}][{bad[2]}] is not finite")
        return array, single

    def _check_times(self, times, count: int, samples: int) -> np.ndarray:
        if times is None:
            return np.tile(np.arange(samples, dtype=np.float64), (count, 1))
        array = np.asarray(times, np.float64)
        if array.ndim == 1:
            array = np.tile(array, (count, 1))
        if array.shape != (count, samples) or not np.all(np.isfinite(array)) or np.any(np.diff(array, axis=1) < 0):
            raise KinematicsError(f"times must be finite, non-decreasing, one per sample ({samples}), got shape "
                                  f"{np.shape(times)}")
        return array


def check_motion(stage: Usd.Stage, robot_path: str, trajectory, **options) -> MotionCheck | list[MotionCheck]:
    """One-off check (builds the meshes each call; keep a `MotionChecker` for repeated checks)."""
    device = options.pop("device", None)
    resolution = options.pop("resolution", DEFAULT_RESOLUTION)
    return MotionChecker(stage, robot_path, device=device, resolution=resolution).check_motion(trajectory, **options)


class MotionCheckers:
    """The checkers of one layout's robots, each built on first use (meshes and BVHs take seconds)."""

    def __init__(self, stage: Usd.Stage, robot_paths: list[str], *, device: str | None = None):
        self.stage = stage
        self.robot_paths = list(robot_paths)
        self.device = device
        self._checkers: dict[str, MotionChecker] = {}
        # REST calls run on worker threads: a robot's checker is built once (a second caller waits for it), and
        # a checker runs one batch at a time itself, so only the building is locked, per robot.
        self._building = {path: threading.Lock() for path in self.robot_paths}

    def checker(self, robot: str) -> MotionChecker:
        if robot not in self.robot_paths:
            raise KeyError(f"no robot at {robot}; robots: {', '.join(self.robot_paths) or 'none'}")
        with self._building[robot]:
            if robot not in self._checkers:
                self._checkers[robot] = MotionChecker(self.stage, robot, device=self.device)
        return self._checkers[robot]

    def check_motion(self, robot: str, trajectory, **options) -> MotionCheck | list[MotionCheck]:
        return self.checker(robot).check_motion(trajectory, **options)
