"""The line's rigid-body physics on Newton: a `PhysicsModel` built once from the layout and uploaded to one
Warp device, and `PhysicsState`s that it steps at a fixed step (docs/physics.md).

On the CPU Newton hands the model to MuJoCo's C solver; on CUDA to MuJoCo Warp. Belts and stoppers are
*driven* bodies: heavy bodies on a prismatic joint whose position and velocity are prescribed before every
step, so a belt stays where the layout puts it while its surface moves at the belt speed, and parts ride on
it by friction. Parts come from a fixed pool of free bodies; a part not in play is parked far below the
floor and pinned there, so spawning and removing never rebuild the model.

`copies` runs that many independent copies of the line in one model (what-if with physics): on CUDA Newton
replicates the line into separate worlds that MuJoCo Warp steps together; on the CPU MuJoCo's C solver simulates
one world only, so the copies share its model and are stepped one after another. Each copy has its own robots:
joint values, motions, grips and held parts are per copy.
"""

from __future__ import annotations

import mujoco
import newton
import numpy as np
import warp as wp
from pxr import Usd
from scipy.spatial.transform import Rotation

from .gripper import GripResult, part_in_reach
from .robots import RobotGeometry, RobotMotion, interpolate, read_robots
from .shapes import Box, LayoutShapes, read_shapes

GRAVITY = 9.81
STEP = 1.0 / 240.0  # seconds: the fixed step
BELT_FRICTION = 0.8  # rubber belt on a part; MuJoCo takes the larger of two surfaces' coefficients
SURFACE_FRICTION = 0.5  # steel and painted surfaces, parts included
DRIVEN_MASS = 1000.0  # kg: parts barely disturb a belt within the one step before it is prescribed again
STOPPER_DROP = 0.2  # metres a lowered stopper sinks below its raised pose
PARK_DEPTH = -50.0  # parked parts wait on a grid this far below the floor, a metre apart
DEFAULT_PART_MASS = 2.0  # kg
LINK_INERTIA = 100.0  # kg m^2 of a robot link body (DRIVEN_MASS): contacts barely turn it within a step
# Contacts are found this far before touching. Newton's default (0.1 m) made MuJoCo carry ~15 candidate
# contacts per part on a line of 0.2 m boxes; a step covers at most a few millimetres at line speeds.
CONTACT_GAP = 0.01


@wp.kernel
def _prescribe_driven(
    q_index: wp.array(dtype=wp.int32),
    qd_index: wp.array(dtype=wp.int32),
    q_value: wp.array(dtype=wp.float32),
    qd_value: wp.array(dtype=wp.float32),
    joint_q: wp.array(dtype=wp.float32),
    joint_qd: wp.array(dtype=wp.float32),
):
    i = wp.tid()
    joint_q[q_index[i]] = q_value[i]
    joint_qd[qd_index[i]] = qd_value[i]


@wp.kernel
def _pin_parked(
    active: wp.array(dtype=wp.int32),
    q_start: wp.array(dtype=wp.int32),
    qd_start: wp.array(dtype=wp.int32),
    park: wp.array(dtype=wp.vec3),
    joint_q: wp.array(dtype=wp.float32),
    joint_qd: wp.array(dtype=wp.float32),
):
    i = wp.tid()
    if active[i] != 0:
        return
    q, qd = q_start[i], qd_start[i]
    for k in range(3):
        joint_q[q + k] = park[i][k]
        joint_q[q + 3 + k] = 0.0
    joint_q[q + 6] = 1.0
    for k in range(6):
        joint_qd[qd + k] = 0.0


@wp.kernel
def _prescribe_free(
    q_start: wp.array(dtype=wp.int32),
    qd_start: wp.array(dtype=wp.int32),
    q_value: wp.array2d(dtype=wp.float32),
    qd_value: wp.array2d(dtype=wp.float32),
    joint_q: wp.array(dtype=wp.float32),
    joint_qd: wp.array(dtype=wp.float32),
):
    i = wp.tid()
    for k in range(7):
        joint_q[q_start[i] + k] = q_value[i, k]
    for k in range(6):
        joint_qd[qd_start[i] + k] = qd_value[i, k]


@wp.kernel
def _place_part(
    q_start: int,
    qd_start: int,
    pose: wp.transform,
    joint_q: wp.array(dtype=wp.float32),
    joint_qd: wp.array(dtype=wp.float32),
):
    p, r = wp.transform_get_translation(pose), wp.transform_get_rotation(pose)
    for k in range(3):
        joint_q[q_start + k] = p[k]
    for k in range(4):
        joint_q[q_start + 3 + k] = r[k]
    for k in range(6):
        joint_qd[qd_start + k] = 0.0


def _transform(centre: np.ndarray, rotation: np.ndarray) -> wp.transform:
    quat = wp.quat_from_matrix(wp.mat33(*rotation.ravel().tolist()))
    return wp.transform(wp.vec3(*centre.tolist()), quat)


class PhysicsModel:
    """Everything fixed for a run: the Newton model on `device`, its solver, and which body is what.

    `belts` and `stoppers` are the paths callers name them by (conveyor paths, stopper paths). `max_parts`
    sizes the pool of part bodies (per copy); `part_size` (default: the layout's `twin:partLength`) and
    `part_mass` make them cubes of that edge and mass. `copies` independent copies of the line, never touching
    each other, are stepped together (module docstring). `mujoco_warp` runs MuJoCo Warp, CUDA's solver and
    code path, on the CPU too: slowly, for checking that path without a GPU.
    """

    def __init__(self, shapes: LayoutShapes, *, device: str = "cpu", max_parts: int = 64,
                 part_size: float | None = None, part_mass: float = DEFAULT_PART_MASS, dt: float = STEP,
                 cpu_loop: bool = True, robots: tuple[RobotGeometry, ...] = (), copies: int = 1,
                 mujoco_warp: bool = False):
        size = part_size if part_size is not None else shapes.part_size
        if size is None or size <= 0.0:
            raise ValueError(f"part size must be positive (got {size}); author twin:partLength or pass part_size")
        if part_mass <= 0.0 or max_parts < 0 or dt <= 0.0:
            raise ValueError(f"part_mass ({part_mass}) and dt ({dt}) must be positive, max_parts ({max_parts}) >= 0")
        if not isinstance(copies, int) or copies < 1:
            raise ValueError(f"copies must be a whole number >= 1, got {copies!r}")
        mujoco_c = str(device) == "cpu" and not mujoco_warp
        if copies > 1 and mujoco_c and not cpu_loop:
            raise ValueError(f"copies={copies} on MuJoCo's C solver need cpu_loop=True: it simulates one world, "
                             "so the copies take turns on it")
        self.copies = copies
        # Under MuJoCo Warp the copies are worlds of one Newton model; under MuJoCo's C solver it holds one line.
        self.worlds = 1 if mujoco_c else copies
        self.device, self.dt, self.part_size, self.part_mass = str(device), float(dt), float(size), float(part_mass)
        self.belts = tuple(box.owner for box in shapes.belts)
        self.stoppers = tuple(box.owner for box in shapes.stoppers)
        self.nominal_speeds = np.array([box.speed for box in shapes.belts], np.float32)
        builder = newton.ModelBuilder(up_axis=newton.Axis.Z, gravity=(0.0, 0.0, -GRAVITY))
        builder.rigid_gap = CONTACT_GAP
        static = [builder.add_shape_box(-1, xform=_transform(b.centre, b.rotation), hx=b.half_extents[0],
                                        hy=b.half_extents[1], hz=b.half_extents[2], cfg=self._config(SURFACE_FRICTION),
                                        label=b.path) for b in shapes.static]
        driven_joints, driven_shapes = [], []
        for box in shapes.belts:
            driven_joints.append(self._driven(builder, box, box.direction, driven_shapes))
        for box in shapes.stoppers:
            driven_joints.append(self._driven(builder, box, box.rotation.T @ np.array([0.0, 0.0, 1.0]),
                                              driven_shapes))
        for index, shape in enumerate(driven_shapes):  # driven bodies touch only parts
            for other in static + driven_shapes[index + 1:]:
                builder.add_shape_collision_filter_pair(shape, other)
        half = self.part_size / 2
        self.part_bodies = []
        for i in range(max_parts):
            body = builder.add_body(xform=wp.transform(self._park(i), wp.quat_identity()), label=f"part{i}")
            builder.add_shape_box(body, hx=half, hy=half, hz=half,
                                  cfg=self._config(SURFACE_FRICTION, self.part_mass / self.part_size ** 3))
            self.part_bodies.append(body)
        self.robots = tuple(robots)
        others = static + driven_shapes
        self.robot_bodies = [self._robot_links(builder, robot, others) for robot in self.robots]
        self.bodies_per_copy, joints_per_copy = builder.body_count, builder.joint_count
        if self.worlds > 1:
            line, builder = builder, newton.ModelBuilder(up_axis=newton.Axis.Z, gravity=(0.0, 0.0, -GRAVITY))
            builder.replicate(line, self.worlds)  # one world per copy: shapes only meet shapes of their own world
        self.newton = builder.finalize(device=self.device)
        q_start, qd_start = self.newton.joint_q_start.numpy(), self.newton.joint_qd_start.numpy()
        part_joints = self._joints_of(self.part_bodies)
        in_world = joints_per_copy * np.arange(self.worlds)[:, None]  # joints of world w: w * joints_per_copy + j
        self._part_q_host, self._part_qd_host = q_start[part_joints + in_world], qd_start[part_joints + in_world]
        self._part_q = wp.array(self._part_q_host.ravel(), dtype=wp.int32, device=self.device)
        self._part_qd = wp.array(self._part_qd_host.ravel(), dtype=wp.int32, device=self.device)
        self._park_positions = wp.array([self._park(i) for i in range(max_parts)] * self.worlds, dtype=wp.vec3,
                                        device=self.device)
        driven_joints_all = (np.asarray(driven_joints, np.int64) + in_world).ravel()
        self._driven_q = wp.array(q_start[driven_joints_all], dtype=wp.int32, device=self.device)
        self._driven_qd = wp.array(qd_start[driven_joints_all], dtype=wp.int32, device=self.device)
        link_joints = self._joints_of([body for bodies in self.robot_bodies for body in bodies])
        self._link_q_host, self._link_qd_host = q_start[link_joints + in_world], qd_start[link_joints + in_world]
        self.solver = newton.solvers.SolverMuJoCo(self.newton, use_mujoco_cpu=mujoco_c)
        self.cpu_loop = cpu_loop and mujoco_c  # False: Newton's per-step exchange, as on CUDA
        self._mj_link_q = self._mj_link_qd = np.zeros(len(link_joints), np.int64)  # MuJoCo's, for the CPU loop
        if self.cpu_loop:
            self._index_mujoco(driven_joints, part_joints)
            self._mj_link_q, self._mj_link_qd = self._mujoco_starts(link_joints)

    @classmethod
    def from_stage(cls, stage: Usd.Stage, **options) -> PhysicsModel:
        """Build from a layout's UsdPhysics collision boxes; `options` as for the constructor, and `robots=True`
        for the layout's robots as kinematic bodies with their grippers."""
        robots = read_robots(stage) if options.pop("robots", False) else ()
        return cls(read_shapes(stage), robots=robots, **options)

    @property
    def max_parts(self) -> int:
        return len(self.part_bodies)

    def new_state(self) -> PhysicsState:
        """A line with every part parked, belts at their authored speed and stoppers raised."""
        return PhysicsState(self)

    def step(self, state: PhysicsState, steps: int = 1) -> None:
        """Advance `state` by `steps` fixed steps, every copy of the line at once."""
        if self.cpu_loop:
            if steps > 0:
                driven_q, driven_qd = state._driven_values()
                for copy in range(self.copies):
                    self._step_mujoco_cpu(state, steps, copy, driven_q[copy], driven_qd[copy])
                state.steps += steps
                state._motion_done()
            return
        prescribed = state._prescribed(steps, range(self.copies))  # every world's links and held parts at once
        prescribed_q = wp.array(prescribed[0], dtype=wp.int32, device=self.device)
        prescribed_qd = wp.array(prescribed[1], dtype=wp.int32, device=self.device)
        for step in range(steps):
            current, following = state._pairs[0]
            if self._driven_q.shape[0]:
                wp.launch(_prescribe_driven, dim=self._driven_q.shape[0], device=self.device,
                          inputs=[self._driven_q, self._driven_qd, state._driven_position, state._driven_velocity,
                                  current.joint_q, current.joint_qd])
            if self.max_parts:
                wp.launch(_pin_parked, dim=self._part_q.shape[0], device=self.device,
                          inputs=[state._active, self._part_q, self._part_qd, self._park_positions,
                                  current.joint_q, current.joint_qd])
            if len(prescribed[0]):
                q_values, qd_values = self._free_values(prescribed, step)
                wp.launch(_prescribe_free, dim=len(prescribed[0]), device=self.device,
                          inputs=[prescribed_q, prescribed_qd, wp.array(q_values, dtype=wp.float32, device=self.device),
                                  wp.array(qd_values, dtype=wp.float32, device=self.device),
                                  current.joint_q, current.joint_qd])
            current.clear_forces()
            self.solver.step(current, following, state._control, None, self.dt)
            state._pairs[0] = (following, current)
            state.steps += 1
        state._motion_done()

    def _step_mujoco_cpu(self, state: PhysicsState, steps: int, copy: int, driven_q: np.ndarray,
                         driven_qd: np.ndarray) -> None:
        """The CPU path for one copy: MuJoCo's C solver stepped in a tight loop on Newton's own MuJoCo model.

        Newton's per-step exchange between its state arrays and MuJoCo's data costs more than the step itself
        for a line of boxes, so the state goes to MuJoCo once per call and comes back once; in between only the
        driven joints (`driven_q`, `driven_qd`: this copy's) and the parked parts are written, straight into
        MuJoCo's arrays. Copies share MuJoCo's data, each bringing its own state and solver warm start.
        """
        current, following = state._pairs[copy]
        data, mj_model = self.solver.mj_data, self.solver.mj_model
        self.solver._update_mjc_data(data, self.newton, current)
        data.qacc_warmstart[:] = state._warmstart[copy]
        mj_model.opt.timestep = self.dt
        parked = state._active_host[copy] == 0
        park_q, park_qd = self._mj_part_q[parked], self._mj_part_qd[parked]
        park_values = self._park_qpos[parked]
        qpos, qvel = data.qpos, data.qvel
        prescribed = state._prescribed(steps, (copy,))
        free_q, free_qd = prescribed[2][:, None] + np.arange(7), prescribed[3][:, None] + np.arange(6)
        if len(free_q):
            free_qpos, free_qvel = self._mujoco_free_values(prescribed)
        for step in range(steps):
            qpos[self._mj_driven_q] = driven_q
            qvel[self._mj_driven_qd] = driven_qd
            qpos[park_q] = park_values
            qvel[park_qd] = 0.0
            if len(free_q):
                qpos[free_q], qvel[free_qd] = free_qpos[step], free_qvel[step]
            mujoco.mj_step(mj_model, data)
        self.solver._update_newton_state(self.newton, following, data, state_prev=current)
        state._warmstart[copy] = data.qacc_warmstart
        state._pairs[copy] = (following, current)

    @staticmethod
    def _mujoco_free_values(prescribed: tuple) -> tuple[np.ndarray, np.ndarray]:
        """`_free_values` in MuJoCo's order for every step of the call at once: (steps, n, 7) and (steps, n, 6)
        (one rotation of the angular velocities into the body frames for the whole call, not one per step)."""
        positions, quaternions, linear, angular = prescribed[4:]
        steps, count = quaternions.shape[:2]
        qpos = np.concatenate([positions, quaternions[..., 3:], quaternions[..., :3]], axis=2)
        body_angular = np.zeros((steps, count, 3))
        if angular.any():
            body_angular = Rotation.from_quat(quaternions.reshape(-1, 4)).inv().apply(
                np.tile(angular, (steps, 1))).reshape(steps, count, 3)
        return qpos, np.concatenate([np.broadcast_to(linear, (steps, count, 3)), body_angular], axis=2)

    @staticmethod
    def _free_values(prescribed: tuple, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, 7) poses (x, y, z, qx, qy, qz, qw) and (n, 6) world velocities of the prescribed free bodies at
        `step`, in Newton's order."""
        positions, quaternions, linear, angular = prescribed[4:]
        return np.hstack([positions[step], quaternions[step]]), np.hstack([linear, angular])

    def _robot_links(self, builder: newton.ModelBuilder, robot: RobotGeometry, others: list[int]) -> list[int]:
        """A heavy free body per link of `robot` with shapes, at its zero-joint pose; shapes touch parts only."""
        rest = robot.chain.fk(np.zeros((1, robot.chain.n_joints)), base=robot.base)[0]
        bodies = []
        for link, shapes in zip(robot.links, robot.shapes, strict=True):
            pose = rest[link]
            body = builder.add_body(xform=_transform(pose[:3, 3], pose[:3, :3]), mass=DRIVEN_MASS,
                                    inertia=wp.mat33(np.eye(3) * LINK_INERTIA), lock_inertia=True,
                                    label=robot.chain.link_names[link])
            for shape in shapes:
                xform = _transform(shape.frame[:3, 3], shape.frame[:3, :3])
                if shape.half_extents is not None:
                    hx, hy, hz = shape.half_extents.tolist()
                    added = builder.add_shape_box(body, xform=xform, hx=hx, hy=hy, hz=hz,
                                                  cfg=self._config(SURFACE_FRICTION), label=shape.path)
                else:
                    hull = newton.Mesh(shape.points, shape.faces)
                    added = builder.add_shape_convex_hull(body, xform=xform, mesh=hull,
                                                          cfg=self._config(SURFACE_FRICTION), label=shape.path)
                for other in others:
                    builder.add_shape_collision_filter_pair(added, other)
                others.append(added)  # links of robots do not touch each other either
            bodies.append(body)
        return bodies

    def _mujoco_starts(self, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where free joints `joints` (Newton's) start in MuJoCo's qpos and qvel."""
        mujoco_joint = {int(joint): index for index, joint in enumerate(self.solver.mjc_jnt_to_newton_jnt.numpy()[0])}
        indices = np.array([mujoco_joint[int(joint)] for joint in joints], np.int64)
        if not len(indices):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self.solver.mj_model.jnt_qposadr[indices], self.solver.mj_model.jnt_dofadr[indices]

    def _index_mujoco(self, driven_joints: list[int], part_joints: np.ndarray) -> None:
        """Where each driven joint and each part's free joint sit in MuJoCo's qpos and qvel."""
        mj_model = self.solver.mj_model
        mujoco_joint = {int(joint): index for index, joint in enumerate(self.solver.mjc_jnt_to_newton_jnt.numpy()[0])}
        driven = np.array([mujoco_joint[joint] for joint in driven_joints], np.int64)
        parts = np.array([mujoco_joint[int(joint)] for joint in part_joints], np.int64)
        self._mj_driven_q = mj_model.jnt_qposadr[driven] if len(driven) else np.zeros(0, np.int64)
        self._mj_driven_qd = mj_model.jnt_dofadr[driven] if len(driven) else np.zeros(0, np.int64)
        starts_q = mj_model.jnt_qposadr[parts] if len(parts) else np.zeros(0, np.int64)
        starts_qd = mj_model.jnt_dofadr[parts] if len(parts) else np.zeros(0, np.int64)
        self._mj_part_q = starts_q[:, None] + np.arange(7)  # MuJoCo's free joint: x, y, z, qw, qx, qy, qz
        self._mj_part_qd = starts_qd[:, None] + np.arange(6)
        self._park_qpos = np.array([[*self._park(i), 1.0, 0.0, 0.0, 0.0] for i in range(len(parts))]).reshape(-1, 7)

    def advance_to(self, state: PhysicsState, time: float) -> int:
        """Run the whole fixed steps that fit before `time` (seconds since the state began); returns how many.

        The runtime calls this once per tick with its clock, so physics keeps its fixed step whatever the tick.
        """
        steps = max(0, int(np.floor(time / self.dt + 1e-9)) - state.steps)
        self.step(state, steps)
        return steps

    def _config(self, friction: float, density: float = 0.0) -> newton.ModelBuilder.ShapeConfig:
        return newton.ModelBuilder.ShapeConfig(mu=friction, density=density)

    def _driven(self, builder: newton.ModelBuilder, box: Box, axis: np.ndarray, shapes: list[int]) -> int:
        """A heavy body for `box` on a prismatic joint along `axis` (in the box's frame); returns the joint."""
        pose = _transform(box.centre, box.rotation)
        volume = 8.0 * float(np.prod(box.half_extents))
        body = builder.add_link(xform=pose, label=box.path)
        friction = BELT_FRICTION if box.role == "belt" else SURFACE_FRICTION
        shapes.append(builder.add_shape_box(body, hx=box.half_extents[0], hy=box.half_extents[1],
                                            hz=box.half_extents[2], cfg=self._config(friction, DRIVEN_MASS / volume)))
        joint = builder.add_joint_prismatic(-1, body, parent_xform=pose, axis=wp.vec3(*axis.tolist()),
                                            label=box.path)
        builder.add_articulation([joint])
        return joint

    def _joints_of(self, bodies: list[int]) -> np.ndarray:
        child = self.newton.joint_child.numpy()
        joint_of_body = {int(body): joint for joint, body in enumerate(child)}
        return np.array([joint_of_body[body] for body in bodies], np.int64)

    @staticmethod
    def _park(index: int) -> tuple[float, float, float]:
        return (float(index % 32), float(index // 32), PARK_DEPTH)


class PhysicsState:
    """The moving part of a run: body poses and velocities, belt speeds, stopper positions, parts in play, for
    each copy of the line (`copy` arguments: 0 to `model.copies` - 1)."""

    def __init__(self, model: PhysicsModel):
        self.model = model
        self.steps = 0
        device, copies = model.device, model.copies
        self._pairs = []  # (current, following) Newton states: one for all worlds, or one per copy on the CPU
        for _ in range(copies // model.worlds):
            first, second = model.newton.state(), model.newton.state()
            newton.eval_fk(model.newton, model.newton.joint_q, model.newton.joint_qd, first)
            self._pairs.append((first, second))
        self._warmstart = np.zeros((copies, model.solver.mj_model.nv if model.cpu_loop else 0))  # MuJoCo C's, per copy
        self._control = model.newton.control()
        self._speeds = np.tile(model.nominal_speeds, (copies, 1))
        self._raised = np.ones((copies, len(model.stoppers)), bool)
        driven = model.worlds * (len(model.belts) + len(model.stoppers))
        self._driven_position = wp.zeros(driven, dtype=wp.float32, device=device)
        self._driven_velocity = wp.zeros_like(self._driven_position)
        self._active_host = np.zeros((copies, model.max_parts), np.int32)
        self._active = wp.zeros(model.worlds * model.max_parts, dtype=wp.int32, device=device)
        self._upload_driven()
        self._motions = [{robot.path: self._rest_motion(robot) for robot in model.robots} for _ in range(copies)]

    @property
    def time(self) -> float:
        """Simulated seconds since the state began."""
        return self.steps * self.model.dt

    def belt_speed(self, belt: str, copy: int = 0) -> float:
        return float(self._speeds[self._copy(copy), self._index(self.model.belts, belt, "belt")])

    def set_belt_speed(self, belt: str, speed: float, copy: int = 0) -> None:
        """The surface speed (m/s) of the conveyor at path `belt` along its +X; negative runs it backwards."""
        if not np.isfinite(speed):
            raise ValueError(f"{belt}: belt speed must be finite, got {speed}")
        self._speeds[self._copy(copy), self._index(self.model.belts, belt, "belt")] = speed
        self._upload_driven()

    def set_stopper(self, stopper: str, raised: bool, copy: int = 0) -> None:
        """Raise (holds parts) or lower (lets them pass) the stopper at path `stopper`."""
        self._raised[self._copy(copy), self._index(self.model.stoppers, stopper, "stopper")] = bool(raised)
        self._upload_driven()

    def spawn_part(self, position, yaw: float = 0.0, copy: int = 0) -> int:
        """Put a part at rest with its centre at `position` (world, metres) in copy `copy` of the line; returns
        its id (a pool slot of that copy)."""
        position = np.asarray(position, np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"part position must be three finite numbers, got {position.tolist()}")
        free = np.flatnonzero(self._active_host[self._copy(copy)] == 0)
        if not len(free):
            raise RuntimeError(f"all {self.model.max_parts} parts are in play; build the model with more max_parts")
        part = int(free[0])
        current, world = self._pairs[copy % len(self._pairs)][0], copy % self.model.worlds
        pose = wp.transform(wp.vec3(*position.tolist()), wp.quat_from_axis_angle(wp.vec3(0.0, 0.0, 1.0), float(yaw)))
        wp.launch(_place_part, dim=1, device=self.model.device,
                  inputs=[int(self.model._part_q_host[world, part]), int(self.model._part_qd_host[world, part]), pose,
                          current.joint_q, current.joint_qd])
        newton.eval_fk(self.model.newton, current.joint_q, current.joint_qd, current)
        self._set_active(part, 1, copy)
        return part

    def remove_part(self, part: int, copy: int = 0) -> None:
        """Take part `part` out of play (it is parked at the next step); a gripper holding it lets go."""
        if not 0 <= part < self.model.max_parts or not self._active_host[self._copy(copy), part]:
            raise KeyError(f"no part {part} in play" + (f" in copy {copy}" if self.model.copies > 1 else ""))
        for motion in self._motions[copy].values():  # ids are slots within the copy: only its grippers held it
            if motion.held == part:
                motion.held = None
        self._set_active(part, 0, copy)

    def parts(self, copy: int = 0) -> np.ndarray:
        """The ids of the parts in play in copy `copy`, ascending."""
        return np.flatnonzero(self._active_host[self._copy(copy)])

    def part_poses(self, copy: int = 0) -> np.ndarray:
        """(n, 7) poses of the parts in play, in `parts()` order: x, y, z and the quaternion x, y, z, w."""
        return self._body_poses(copy, np.asarray(self.model.part_bodies, np.int64)[self.parts(copy)])

    def part_velocities(self, copy: int = 0) -> np.ndarray:
        """(n, 6) linear then angular velocities of the parts in play (world frame)."""
        current, bodies = self._part_bodies(copy)
        return current.body_qd.numpy()[bodies].astype(np.float64)

    def link_poses(self, robot: str, copy: int = 0) -> np.ndarray:
        """(n, 7) poses of the robot's link bodies as physics has them (where parts meet them), in the order of
        its geometry's `links`: x, y, z and the quaternion x, y, z, w."""
        self._robot(robot, copy)
        return self._body_poses(copy, self.model.robot_bodies[list(self._motions[copy]).index(robot)])

    def _part_bodies(self, copy: int) -> tuple[newton.State, np.ndarray]:
        """The Newton state holding copy `copy` and the body indices of its parts in play there."""
        return self._bodies(copy, np.asarray(self.model.part_bodies, np.int64)[self.parts(copy)])

    def _bodies(self, copy: int, bodies) -> tuple[newton.State, np.ndarray]:
        """The Newton state holding copy `copy` and where the line's `bodies` (world 0's indices) are in it."""
        in_world = (copy % self.model.worlds) * self.model.bodies_per_copy
        return self._pairs[copy % len(self._pairs)][0], np.asarray(bodies, np.int64) + in_world

    def _body_poses(self, copy: int, bodies) -> np.ndarray:
        """(n, 7) poses of the line's `bodies` (world 0's indices) in copy `copy`."""
        current, indices = self._bodies(copy, bodies)
        return current.body_q.numpy()[indices].astype(np.float64)

    def _copy(self, copy: int) -> int:
        if not isinstance(copy, int | np.integer) or not 0 <= copy < self.model.copies:
            raise IndexError(f"no copy {copy!r} of the line: the model has copies 0 to {self.model.copies - 1}")
        return int(copy)

    # ------------------------------------------------------------------ robots and grippers
    def set_robot_joints(self, robot: str, q, *, jump: bool = False, copy: int = 0) -> None:
        """The joint values of the robot at path `robot` in copy `copy`; its links (and the part it holds) move there
        at constant velocity over the next `step`/`advance_to` call, pushing parts in their way. `jump` puts them
        there at once, for a robot's first pose."""
        geometry, motion = self._robot(robot, copy)
        motion.end, motion.tool_end = geometry.poses(q, self.model.device)
        if jump:
            motion.arrived()

    def grip(self, robot: str, copy: int = 0) -> GripResult:
        """Close the robot's gripper in copy `copy`: the part of that copy within its reach is attached, keeping its
        pose relative to the tool as found. With none there, the result carries a fault and nothing moves."""
        geometry, motion = self._robot(robot, copy)
        if geometry.gripper is None:
            raise KeyError(f"robot {robot} has no gripper; author twin:gripper:type on its tool link")
        if motion.held is not None:
            return GripResult(robot, None, f"{robot}: the gripper already holds part {motion.held}")
        held = [other.held for other in self._motions[copy].values() if other.held is not None]
        parts = self.parts(copy)
        parts = parts[~np.isin(parts, held)]
        poses = self._body_poses(copy, np.asarray(self.model.part_bodies, np.int64)[parts])
        found = part_in_reach(geometry.gripper, motion.start_tool, poses, self.model.part_size)
        if found is None:
            where = np.round(motion.start_tool[:3, 3], 3).tolist()
            return GripResult(robot, None, f"{robot}: no part within reach of the {geometry.gripper.gripper_type} "
                                           f"gripper at {where}")
        part_pose = np.eye(4)
        part_pose[:3, :3] = Rotation.from_quat(poses[found, 3:]).as_matrix()
        part_pose[:3, 3] = poses[found, :3]
        motion.held, motion.held_offset = int(parts[found]), np.linalg.inv(motion.start_tool) @ part_pose
        return GripResult(robot, motion.held)

    def release(self, robot: str, copy: int = 0) -> int | None:
        """Open the robot's gripper in copy `copy`: the part it held (returned; None if none) is free and falls under
        gravity."""
        _, motion = self._robot(robot, copy)
        part, motion.held = motion.held, None
        return part

    def held(self, robot: str, copy: int = 0) -> int | None:
        """The part the robot's gripper holds in copy `copy`, None if none."""
        return self._robot(robot, copy)[1].held

    def _robot(self, robot: str, copy: int = 0) -> tuple[RobotGeometry, RobotMotion]:
        motions = self._motions[self._copy(copy)]
        if robot not in motions:
            raise KeyError(f"no robot {robot!r} in the physics model; known: {list(motions)} "
                           "(build it with robots=True)")
        return self.model.robots[list(motions).index(robot)], motions[robot]

    def _rest_motion(self, robot: RobotGeometry) -> RobotMotion:
        links, tool = robot.poses(np.zeros(robot.chain.n_joints))
        return RobotMotion(links, links.copy(), tool, tool.copy())

    def _prescribed(self, steps: int, copies) -> tuple[np.ndarray, ...]:
        """The free bodies prescribed over the next `steps` steps (links, held parts) in `copies`: their Newton q
        and qd starts (in each copy's world), MuJoCo qpos and qvel starts (the same for every copy: they share
        MuJoCo's one world), then `interpolate`'s poses and velocities."""
        model, starts, ends, indices = self.model, [], [], []
        for copy in copies:
            world, offset = copy % model.worlds, 0
            for bodies, motion in zip(model.robot_bodies, self._motions[copy].values(), strict=True):
                starts.append(motion.start)
                ends.append(motion.end)
                links = np.arange(offset, offset + len(bodies))
                offset += len(bodies)
                indices.append(np.stack([model._link_q_host[world, links], model._link_qd_host[world, links],
                                         model._mj_link_q[links], model._mj_link_qd[links]], axis=1))
                if motion.held is not None:
                    starts.append((motion.start_tool @ motion.held_offset)[None])
                    ends.append((motion.tool_end @ motion.held_offset)[None])
                    part = motion.held
                    mujoco_q, mujoco_qd = (model._mj_part_q[part, 0], model._mj_part_qd[part, 0]) if model.cpu_loop \
                        else (0, 0)
                    indices.append(np.array([[model._part_q_host[world, part], model._part_qd_host[world, part],
                                              mujoco_q, mujoco_qd]]))
        if steps <= 0 or not starts or not sum(len(start) for start in starts):
            return (*np.zeros((4, 0), np.int64), np.zeros((0, 0, 3)), np.zeros((0, 0, 4)), np.zeros((0, 3)),
                    np.zeros((0, 3)))
        index = np.concatenate(indices).astype(np.int64)
        return (index[:, 0], index[:, 1], index[:, 2], index[:, 3],
                *interpolate(np.concatenate(starts), np.concatenate(ends), steps, model.dt))

    def _motion_done(self) -> None:
        """The links of every copy reached where they were going: the next call starts there."""
        for motions in self._motions:
            for motion in motions.values():
                motion.arrived()

    def _set_active(self, part: int, value: int, copy: int = 0) -> None:
        self._active_host[copy, part] = value
        if not self.model.cpu_loop:  # the kernels' flags, world after world (MuJoCo C's loop reads the host's)
            self._active.assign(self._active_host.ravel())

    def _driven_values(self) -> tuple[np.ndarray, np.ndarray]:
        """(copies, belts + stoppers) prescribed positions and velocities of the driven bodies."""
        lowered = np.where(self._raised, 0.0, -STOPPER_DROP).astype(np.float32)
        return (np.hstack([np.zeros_like(self._speeds), lowered]),
                np.hstack([self._speeds, np.zeros_like(lowered)]).astype(np.float32))

    def _upload_driven(self) -> None:
        if not self.model.cpu_loop:  # only the kernels read them; MuJoCo C's loop takes _driven_values() per call
            position, velocity = self._driven_values()
            self._driven_position.assign(position.ravel())
            self._driven_velocity.assign(velocity.ravel())

    @staticmethod
    def _index(names: tuple[str, ...], name: str, what: str) -> int:
        if name not in names:
            raise KeyError(f"no {what} {name!r} in the physics model; known: {list(names)}")
        return names.index(name)
