"""Every Warp kernel and function of the kinematics package, so the host modules stay plain, type-checked Python.

A chain is read on the device as one `LinkJoint` per link (links in topological order, so a link's
parent always comes before it). `forward_links` is the one forward-kinematics loop: the FK kernel,
and through it the Jacobian kernel, and the IK kernel all use it.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from twin.kinematics.joints import FIXED, PRISMATIC, REVOLUTE

wp.config.log_level = wp.LOG_WARNING  # no banner or per-module load lines in the twin's logs

MAX_DOF = 12  # joints an IK thread keeps in registers
vec6 = wp.types.vector(length=6, dtype=float)
vec_dof = wp.types.vector(length=MAX_DOF, dtype=float)
mat6_dof = wp.types.matrix(shape=(6, MAX_DOF), dtype=float)
mat66 = wp.types.matrix(shape=(6, 6), dtype=float)


class _LinkJointFields:
    """Everything FK needs about one link, packed so a link costs one load."""

    origin: wp.transform
    axis: wp.vec3
    parent: wp.int32
    kind: wp.int32
    q_index: wp.int32
    multiplier: float
    offset: float


LinkJoint = wp.struct(_LinkJointFields)  # a call, not a decorator: type checkers ignore what class decorators return


# --------------------------------------------------------------------------- forward kinematics and Jacobians
@wp.func
def joint_transform(origin: wp.transform, kind: int, axis: wp.vec3, value: float) -> wp.transform:
    """Parent-to-child transform: the joint origin followed by the joint's motion."""
    if kind == REVOLUTE:
        motion = wp.quat_from_axis_angle(axis, value)
        return wp.transform(wp.transform_get_translation(origin), wp.transform_get_rotation(origin) * motion)
    if kind == PRISMATIC:
        return origin * wp.transform(axis * value, wp.quat_identity())
    return origin


@wp.func
def forward_links(
    links: wp.array(dtype=LinkJoint),
    first: int,
    count: int,
    q: Any,
    q_start: int,
    base: wp.transform,
    link_world: wp.array(dtype=wp.transform),
    out: int,
):
    """World transforms of `count` links from `links[first]` into `link_world[out:]`, joints read from q[q_start:].

    `q` is an array or a register vector. In a serial chain the parent is the previous link, still in registers.
    """
    previous = base
    for k in range(count):
        link = links[first + k]
        value = float(0.0)
        if link.kind != FIXED:
            value = link.multiplier * q[q_start + link.q_index] + link.offset
        local = joint_transform(link.origin, link.kind, link.axis, value)
        if link.parent < 0:
            previous = base * local
        elif link.parent == k - 1:
            previous = previous * local
        else:
            previous = link_world[out + link.parent] * local
        link_world[out + k] = previous


@wp.kernel
def forward_kinematics_kernel(
    instance_chain: wp.array(dtype=wp.int32),
    instance_q_start: wp.array(dtype=wp.int32),
    instance_out_start: wp.array(dtype=wp.int32),
    instance_base: wp.array(dtype=wp.transform),
    chain_link_start: wp.array(dtype=wp.int32),
    chain_link_count: wp.array(dtype=wp.int32),
    links: wp.array(dtype=LinkJoint),
    q: wp.array(dtype=float),
    link_world: wp.array(dtype=wp.transform),
):
    """One robot instance per thread, any mix of chains."""
    instance = wp.tid()
    chain = instance_chain[instance]
    forward_links(links, chain_link_start[chain], chain_link_count[chain], q, instance_q_start[instance],
                  instance_base[instance], link_world, instance_out_start[instance])


@wp.func
def jacobian_column(frame: wp.transform, kind: int, axis: wp.vec3, multiplier: float, point: wp.vec3) -> vec6:
    """One joint's Jacobian column at `point` (linear rows first), for a link `frame` the joint moves."""
    world_axis = wp.transform_vector(frame, axis) * multiplier
    if kind == REVOLUTE:
        linear = wp.cross(world_axis, point - wp.transform_get_translation(frame))
        return vec6(linear[0], linear[1], linear[2], world_axis[0], world_axis[1], world_axis[2])
    return vec6(world_axis[0], world_axis[1], world_axis[2], 0.0, 0.0, 0.0)


@wp.kernel
def jacobian_kernel(
    link_world: wp.array(dtype=wp.transform),
    links: wp.array(dtype=LinkJoint),
    n_links: int,
    target: int,
    jacobian: wp.array3d(dtype=float),
):
    """One instance of one chain per thread, on the link poses `forward_links` wrote: walk from the target to the root,
    one column per moving joint."""
    instance = wp.tid()
    first = instance * n_links
    point = wp.transform_get_translation(link_world[first + target])
    k = target
    while k >= 0:
        link = links[k]
        if link.kind != FIXED:
            column = jacobian_column(link_world[first + k], link.kind, link.axis, link.multiplier, point)
            for row in range(6):
                jacobian[instance, row, link.q_index] += column[row]
        k = link.parent


# --------------------------------------------------------------------------- inverse kinematics
@wp.func
def solve_spd6(a: mat66, b: vec6) -> vec6:
    """Cholesky solve of a symmetric positive-definite 6x6 system."""
    lower = mat66()
    for i in range(6):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= lower[i, k] * lower[j, k]
            if i == j:
                lower[i, i] = wp.sqrt(wp.max(s, 1.0e-12))
            else:
                lower[i, j] = s / lower[j, j]
    y = vec6()
    for i in range(6):
        s = b[i]
        for k in range(i):
            s -= lower[i, k] * y[k]
        y[i] = s / lower[i, i]
    x = vec6()
    for step in range(6):
        i = 5 - step
        s = y[i]
        for k in range(i + 1, 6):
            s -= lower[k, i] * x[k]
        x[i] = s / lower[i, i]
    return x


@wp.func
def rotation_error(target: wp.quat, current: wp.quat) -> wp.vec3:
    """Axis times angle of the rotation taking `current` to `target`, in world axes."""
    delta = target * wp.quat_inverse(current)
    if delta[3] < 0.0:
        delta = -delta
    v = wp.vec3(delta[0], delta[1], delta[2])
    s = wp.length(v)
    if s < 1.0e-9:
        return 2.0 * v
    return v * (2.0 * wp.atan2(s, delta[3]) / s)


@wp.func
def link_jacobian(links: wp.array(dtype=LinkJoint), link_world: wp.array(dtype=wp.transform), first: int,
                  target: int, point: wp.vec3) -> mat6_dof:
    """Jacobian at `point` of the `target` link, for at most MAX_DOF joints."""
    jac = mat6_dof()
    k = target
    while k >= 0:
        link = links[k]
        if link.kind != FIXED:
            column = jacobian_column(link_world[first + k], link.kind, link.axis, link.multiplier, point)
            for r in range(6):
                jac[r, link.q_index] = jac[r, link.q_index] + column[r]
        k = link.parent
    return jac


@wp.func
def damped_step(jac: mat6_dof, error: vec6, n_joints: int) -> vec_dof:
    """Levenberg-Marquardt step dq = J^T (J J^T + lambda I)^-1 e, lambda the squared error (Sugihara)."""
    damping = wp.dot(error, error) + 1.0e-6
    a = mat66()
    for r in range(6):
        for c in range(6):
            s = float(0.0)
            for j in range(n_joints):
                s += jac[r, j] * jac[c, j]
            a[r, c] = s
        a[r, r] = a[r, r] + damping
    y = solve_spd6(a, error)
    step = vec_dof()
    for j in range(n_joints):
        for r in range(6):
            step[j] = step[j] + jac[r, j] * y[r]
    return step


@wp.kernel
def ik_kernel(
    targets: wp.array(dtype=wp.transform),
    seeds: wp.array2d(dtype=float),
    n_seeds: int,
    n_links: int,
    n_joints: int,
    target_link: int,
    links: wp.array(dtype=LinkJoint),
    lower: wp.array(dtype=float),
    upper: wp.array(dtype=float),
    max_iterations: int,
    position_tolerance: float,
    rotation_tolerance: float,
    scratch: wp.array(dtype=wp.transform),
    q_out: wp.array2d(dtype=float),
    errors_out: wp.array2d(dtype=float),
):
    """One (target, seed) pair per thread, solved to the end; link poses in this thread's slice of `scratch`."""
    tid = wp.tid()
    goal = targets[tid / n_seeds]
    goal_position = wp.transform_get_translation(goal)
    goal_rotation = wp.transform_get_rotation(goal)
    first = tid * n_links
    q = vec_dof()
    for j in range(n_joints):
        q[j] = seeds[tid, j]
    position_error = float(1.0e9)
    angle_error = float(1.0e9)
    previous = float(1.0e18)
    for iteration in range(max_iterations + 1):
        forward_links(links, 0, n_links, q, 0, wp.transform_identity(), scratch, first)
        pose = scratch[first + target_link]
        point = wp.transform_get_translation(pose)
        e_position = goal_position - point
        e_rotation = rotation_error(goal_rotation, wp.transform_get_rotation(pose))
        position_error = wp.length(e_position)
        angle_error = wp.length(e_rotation)
        if (position_error < position_tolerance and angle_error < rotation_tolerance) or iteration == max_iterations:
            break
        total = position_error + angle_error
        if iteration > 8 and total > 0.995 * previous:
            break  # stalled in a local minimum: another seed will do better
        previous = total
        error = vec6(e_position[0], e_position[1], e_position[2], e_rotation[0], e_rotation[1], e_rotation[2])
        step = damped_step(link_jacobian(links, scratch, first, target_link, point), error, n_joints)
        for j in range(n_joints):
            q[j] = wp.clamp(q[j] + step[j], lower[j], upper[j])
    for j in range(n_joints):
        q_out[tid, j] = q[j]
    errors_out[tid, 0] = position_error
    errors_out[tid, 1] = angle_error


# --------------------------------------------------------------------------- trajectories
@wp.func
def time_scaling(t: float, duration: float, blend: float, profile: int) -> wp.vec2:
    """s(t) and ds/dt of the unit move; profile 1 is quintic, else trapezoidal with `blend` seconds of acceleration."""
    if duration <= 0.0:
        return wp.vec2(1.0, 0.0)
    tc = wp.clamp(t, 0.0, duration)
    if profile == 1:
        tau = tc / duration
        s = tau * tau * tau * (10.0 + tau * (-15.0 + 6.0 * tau))
        ds = 30.0 * tau * tau * (1.0 - tau) * (1.0 - tau) / duration
        return wp.vec2(s, ds)
    peak = 1.0 / (duration - blend)
    accel = peak / blend
    if tc < blend:
        return wp.vec2(0.5 * accel * tc * tc, accel * tc)
    if tc > duration - blend:
        rest = duration - tc
        return wp.vec2(1.0 - 0.5 * accel * rest * rest, accel * rest)
    return wp.vec2(peak * (tc - 0.5 * blend), peak)


@wp.kernel
def sample_joint_moves_kernel(
    start: wp.array2d(dtype=float),
    end: wp.array2d(dtype=float),
    duration: wp.array(dtype=float),
    blend: wp.array(dtype=float),
    profile: int,
    times: wp.array2d(dtype=float),
    positions: wp.array3d(dtype=float),
    velocities: wp.array3d(dtype=float),
):
    move, sample, joint = wp.tid()
    scaling = time_scaling(times[move, sample], duration[move], blend[move], profile)
    delta = end[move, joint] - start[move, joint]
    positions[move, sample, joint] = start[move, joint] + scaling[0] * delta
    velocities[move, sample, joint] = scaling[1] * delta
