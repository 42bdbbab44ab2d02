"""Robots from URDF into USD: flat link Xforms with their meshes, and UsdPhysics joints.

The layout follows docs/architecture.md so that `twin.usd_robot.read_articulation` (its exact
inverse) rebuilds the same kinematic chain from the stage alone, without the URDF.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trimesh
from pxr import Gf, Sdf, Tf, Usd, UsdGeom, UsdPhysics

from twin.core.errors import UrdfError
from twin.core.stage import usd_to_numpy
from twin.core.transforms import matrix_to_pose
from twin.kinematics.chain import Chain
from twin.kinematics.urdf import Joint, RobotDescription, Visual, load_urdf
from twin.physics.gripper import GRIPPER_TYPES

from .collision import add_collision_boxes
from .meshes import DARK_GREY, Color, add_mesh, as_matrix, box, cylinder, define_xform, set_attributes

KUKA_ORANGE: Color = (1.0, 0.4, 0.0)
AXIS_TOKENS = ("X", "Y", "Z")
JOINT_SCOPE = "joints"
ANCHOR_JOINT = "world_anchor"


def add_robot(
    stage: Usd.Stage,
    prim_path: str,
    urdf_path: str | Path,
    base_transform: np.ndarray | Sequence[float],
    package_dirs: dict[str, Path] | None = None,
    xacro_args: dict[str, str] | None = None,
) -> Usd.Prim:
    """Author the robot of a URDF (or xacro file, expanded with `xacro_args`) at `prim_path`, its base at a
    4x4 pose or (x, y, yaw) on the floor."""
    robot = load_urdf(urdf_path, check_meshes=True, package_dirs=package_dirs, xacro_args=xacro_args)
    chain = Chain.from_description(robot)
    rest = chain.fk(np.zeros((1, chain.n_joints)))[0]
    source = str(Path(urdf_path).resolve())
    if xacro_args:  # one xacro file with other arguments is another robot (robots of one source share a chain)
        source += "?" + "&".join(f"{key}={value}" for key, value in sorted(xacro_args.items()))
    prim = define_xform(stage, prim_path, as_matrix(base_transform), kind="robot", name=robot.name,
                        urdf=source, jointNames=list(chain.joint_names))
    UsdPhysics.ArticulationRootAPI.Apply(prim)

    link_paths = dict(zip(chain.link_names, _child_paths(prim_path, chain.link_names), strict=True))
    for index, name in enumerate(chain.link_names):
        link = define_xform(stage, link_paths[name], rest[index], kind="link", name=name)
        UsdPhysics.RigidBodyAPI.Apply(link)
        default = DARK_GREY if name == robot.root else KUKA_ORANGE
        for number, visual in enumerate(robot.link(name).visuals):
            mesh, color = _visual_mesh(robot, name, visual, default)
            add_mesh(stage, f"{link_paths[name]}/visual_{number}", mesh, color, visual.origin)

    scope = f"{prim_path}/{JOINT_SCOPE}"
    UsdGeom.Scope.Define(stage, scope)
    *joint_paths, anchor_path = _child_paths(scope, [*(joint.name for joint in robot.joints), ANCHOR_JOINT])
    for joint, path in zip(robot.joints, joint_paths, strict=True):
        _add_joint(stage, path, joint, link_paths)
    _anchor(stage, anchor_path, stage.GetPrimAtPath(link_paths[robot.root]))
    return prim


def _anchor(stage: Usd.Stage, path: str, root_link: Usd.Prim) -> None:
    """Fix the root link to the world (an empty body0), so articulation parsers find the intended root.

    With body0 empty, localPos0/localRot0 are in world coordinates: the root link's pose as authored.
    """
    world = usd_to_numpy(UsdGeom.Xformable(root_link).ComputeLocalToWorldTransform(Usd.TimeCode.Default()))
    joint = UsdPhysics.FixedJoint.Define(stage, path)
    joint.CreateBody1Rel().SetTargets([root_link.GetPath()])
    joint.CreateLocalPos0Attr(Gf.Vec3f(*world[:3, 3].tolist()))
    joint.CreateLocalRot0Attr(_quat(world[:3, :3]))
    joint.CreateLocalPos1Attr(Gf.Vec3f(0.0, 0.0, 0.0))
    joint.CreateLocalRot1Attr(Gf.Quatf(1.0, 0.0, 0.0, 0.0))


def _child_paths(parent: str, names: Sequence[str]) -> list[str]:
    """Valid, unique prim names for arbitrary URDF names ('a-b' and 'a_b' must not collide)."""
    used: set[str] = set()
    paths = []
    for name in names:
        candidate = base = Tf.MakeValidIdentifier(name)
        suffix = 1
        while candidate in used or candidate == JOINT_SCOPE:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        used.add(candidate)
        paths.append(f"{parent}/{candidate}")
    return paths


def axis_alignment(axis: np.ndarray) -> tuple[str, np.ndarray]:
    """The UsdPhysics axis token nearest `axis`, and the rotation turning that token's axis onto it."""
    axis = np.asarray(axis, np.float64)
    index = int(np.argmax(np.abs(axis)))
    token_axis = np.eye(3)[index]
    cross = np.cross(token_axis, axis)
    cosine = float(token_axis @ axis)
    if np.linalg.norm(cross) < 1e-12:
        if cosine > 0:
            return AXIS_TOKENS[index], np.eye(3)
        half_turn = np.eye(3)[(index + 1) % 3]  # 180 degrees about a perpendicular axis
        return AXIS_TOKENS[index], 2.0 * np.outer(half_turn, half_turn) - np.eye(3)
    skew = np.array([[0, -cross[2], cross[1]], [cross[2], 0, -cross[0]], [-cross[1], cross[0], 0]])
    return AXIS_TOKENS[index], np.eye(3) + skew + skew @ skew / (1.0 + cosine)


def _quat(rotation: np.ndarray) -> Gf.Quatf:
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    x, y, z, w = matrix_to_pose(matrix)[3:]
    return Gf.Quatf(float(w), float(x), float(y), float(z))


def _add_joint(stage: Usd.Stage, path: str, joint: Joint, link_paths: dict[str, str]) -> None:
    if joint.type == "fixed":
        usd_joint = UsdPhysics.FixedJoint.Define(stage, path)
        token, align = "X", np.eye(3)
    else:
        token, align = axis_alignment(joint.axis)
        if joint.type == "prismatic":  # limits in metres
            usd_joint = UsdPhysics.PrismaticJoint.Define(stage, path)
            limits = (joint.lower, joint.upper)
        elif joint.type == "revolute":  # limits in degrees
            usd_joint = UsdPhysics.RevoluteJoint.Define(stage, path)
            limits = (np.degrees(joint.lower), np.degrees(joint.upper))
        else:  # continuous: a revolute joint with UsdPhysics' "unlimited" +-inf
            usd_joint = UsdPhysics.RevoluteJoint.Define(stage, path)
            limits = (-np.inf, np.inf)
        usd_joint.CreateAxisAttr(token)
        usd_joint.CreateLowerLimitAttr(float(limits[0]))
        usd_joint.CreateUpperLimitAttr(float(limits[1]))
    usd_joint.CreateBody0Rel().SetTargets([Sdf.Path(link_paths[joint.parent])])
    usd_joint.CreateBody1Rel().SetTargets([Sdf.Path(link_paths[joint.child])])
    usd_joint.CreateLocalPos0Attr(Gf.Vec3f(*joint.origin[:3, 3].tolist()))
    usd_joint.CreateLocalRot0Attr(_quat(joint.origin[:3, :3] @ align))
    usd_joint.CreateLocalPos1Attr(Gf.Vec3f(0.0, 0.0, 0.0))
    usd_joint.CreateLocalRot1Attr(_quat(align))
    attributes: dict[str, object] = {"twin:name": joint.name, "twin:velocityLimit": float(joint.velocity)}
    if joint.mimic is not None:
        attributes |= {"twin:mimicJoint": joint.mimic.joint,
                       "twin:mimicMultiplier": float(joint.mimic.multiplier),
                       "twin:mimicOffset": float(joint.mimic.offset)}
    set_attributes(usd_joint.GetPrim(), attributes)


def _visual_mesh(
    robot: RobotDescription, link: str, visual: Visual, default: Color
) -> tuple[trimesh.Trimesh, Color | np.ndarray]:
    """The triangles of one visual in its own frame, and a colour (one, or one per vertex).

    Colours embedded in a mesh file win (KUKA's DAE files colour motors and bodies apart),
    then the URDF material, then `default`.
    """
    fallback = visual.color or default
    if visual.kind == "box":
        return box(visual.size), fallback
    if visual.kind == "cylinder":
        return cylinder(visual.size[0], visual.size[1], sections=24), fallback
    if visual.kind == "sphere":
        return trimesh.creation.icosphere(subdivisions=2, radius=visual.size[0]), fallback
    try:
        loaded = trimesh.load(visual.mesh_path, force="scene")
    except Exception as error:  # trimesh and pycollada raise many unrelated types for bad files
        raise UrdfError(robot.path, f"link {link!r}: cannot read mesh {visual.mesh_uri}: {error}") from None
    parts = [part for part in loaded.dump() if isinstance(part, trimesh.Trimesh) and len(part.faces)]
    if not parts:
        raise UrdfError(robot.path, f"link {link!r}: mesh {visual.mesh_uri} has no triangles")
    colors = [_embedded_color(part) or fallback for part in parts]
    mesh = trimesh.util.concatenate([trimesh.Trimesh(p.vertices, p.faces, process=False) for p in parts])
    mesh.apply_transform(np.diag([*visual.scale, 1.0]))
    if len(set(colors)) == 1:
        return mesh, colors[0]
    per_vertex = [np.tile(color, (len(part.vertices), 1)) for color, part in zip(colors, parts, strict=True)]
    return mesh, np.concatenate(per_vertex)


def _embedded_color(mesh: trimesh.Trimesh) -> Color | None:
    visual = mesh.visual
    if visual.kind == "texture" and visual.material is not None:
        rgba = visual.material.main_color
    elif visual.kind in ("vertex", "face"):
        rgba = visual.main_color
    else:
        return None
    return tuple(float(c) / 255.0 for c in rgba[:3])


PAD_THICKNESS = 0.04  # metres: suction pad and parallel-gripper palm, behind the grip face
FINGER_THICKNESS = 0.02


def add_gripper(stage: Usd.Stage, link_path: str, gripper_type: str, *, suction_radius: float = 0.0,
                stroke: float = 0.0, reach: float = 0.01, finger_length: float = 0.1) -> Usd.Prim:
    """Declare a gripper on a robot's tool link (docs/physics.md, "Robots and grippers").

    The grip face is the link's origin, facing its +Z: a taught pick pose puts the link there on the part's
    face. Suction grippers get a pad of `suction_radius` behind the face; parallel grippers a palm and two
    fingers opened to `stroke` across the link's Y, reaching `finger_length` past the face. The geometry is
    hidden collision boxes (`Gripper`); `reach` is how far from the grip face a part is still caught.
    """
    link = stage.GetPrimAtPath(link_path)
    if not link or not link.HasAPI(UsdPhysics.RigidBodyAPI):
        raise ValueError(f"{link_path}: a gripper goes on a robot link (a prim with UsdPhysics.RigidBodyAPI)")
    if gripper_type not in GRIPPER_TYPES:
        raise ValueError(f"{link_path}: unknown gripper type {gripper_type!r}; expected one of {GRIPPER_TYPES}")
    if reach <= 0.0 or (gripper_type == "suction" and suction_radius <= 0.0) or \
            (gripper_type == "parallel" and (stroke <= 0.0 or finger_length <= 0.0)):
        raise ValueError(f"{link_path}: {gripper_type} gripper needs positive reach and "
                         f"{'suction_radius' if gripper_type == 'suction' else 'stroke and finger_length'}")
    if gripper_type == "suction":
        boxes = [("Pad", (2 * suction_radius, 2 * suction_radius, PAD_THICKNESS), (0.0, 0.0, -PAD_THICKNESS / 2))]
    else:
        finger_y = stroke / 2 + FINGER_THICKNESS / 2
        finger = (2 * FINGER_THICKNESS, FINGER_THICKNESS, finger_length + PAD_THICKNESS)
        finger_z = (finger_length - PAD_THICKNESS) / 2
        boxes = [("Palm", (2 * FINGER_THICKNESS, stroke + 2 * FINGER_THICKNESS, PAD_THICKNESS),
                  (0.0, 0.0, -PAD_THICKNESS / 2)),
                 ("FingerA", finger, (0.0, finger_y, finger_z)), ("FingerB", finger, (0.0, -finger_y, finger_z))]
    add_collision_boxes(stage, f"{link_path}/Gripper", boxes)
    set_attributes(link, {"twin:gripper:type": gripper_type, "twin:gripper:suctionRadius": float(suction_radius),
                          "twin:gripper:stroke": float(stroke), "twin:gripper:reach": float(reach)})
    return link
