"""Physics benchmark: the sample line stepped at dt = 1/240, (a) with 10, 50 and 200 parts, and with 50 parts and
its robots moving, (b) as 1, 100 and 1,000 parallel copies of the line with 10 parts each (what-if with physics),
without and with its robots moving.

twin.physics (Newton on MuJoCo's C solver; MuJoCo Warp with --device cuda:0) against PyBullet stepping the same
boxes at the same step: static collision boxes, belts as heavy bodies whose pose and velocity are reset before
every step (the same driven-body scheme as twin.physics, as PyBullet has no surface velocity), and the same 0.2 m
parts at the same start poses. In (b) steps/s counts world-steps, the steps of every copy; PyBullet steps its
copies as one world with the copies set apart. With robots, each link with collision geometry is the same
boxes and convex hulls in both engines, a heavy body whose pose and velocity are prescribed before every step
(twin.physics's kinematic links), touching parts only; the joints sweep a sine through a third of their range,
set every CHUNK steps, and both engines move the links at constant velocity in between, from the same forward
kinematics; each copy's sweep runs a phase of its own (as what-if copies differ), so both engines compute the
kinematics of every copy. Both run pinned to one core. The last line is one JSON object.

    .venv/bin/python bench/physics.py [--device cpu] [--steps 480] [--repeats 3] [--copies 1 100 1000]
                                      [--robot-copies 1 100 1000] [--max-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pybullet
import warp as wp
from machine import cpu, print_table  # bench/machine.py: scripts run as `python bench/NAME.py`
from scipy.spatial.transform import Rotation

from twin.physics.model import (
    BELT_FRICTION,
    DEFAULT_PART_MASS,
    DRIVEN_MASS,
    GRAVITY,
    STEP,
    SURFACE_FRICTION,
    PhysicsModel,
)
from twin.physics.robots import RobotGeometry, read_robots
from twin.physics.shapes import LayoutShapes, read_shapes
from twin.sample_factory import layout
from twin.sample_factory.scene import build_sample_factory
from twin.scenes import open_layout

PART_COUNTS = (10, 50, 200)
ROBOT_ROW_PARTS = 50
SWEEP_PERIOD_S = 4.0  # the robots' joint sine: a third of each joint's range, one period in 4 s
COPY_PHASE = 0.137  # periods between the sweeps of neighbouring copies
WARMUP_STEPS = 120
COPIES = (1, 100, 1000)
PARTS_PER_COPY = 10
CHUNK = 24  # steps per call in (b): a tenth of a simulated second, as a runtime tick or a what-if run asks
COPY_MARGIN = 5.0  # metres between PyBullet's copies of the line
COLUMNS = (("scene", "scene", "{}"), ("bodies", "bodies", "{:d}"), ("device", "device", "{}"),
           ("steps_per_s", "steps/s", "{:,.0f}"), ("realtime_factor", "x real time", "{:.2f}"),
           ("peer", "peer", "{}"), ("peer_steps_per_s", "peer steps/s", "{:,.0f}"),
           ("ratio_to_peer", "ratio", "{:.2f}"))


def part_positions(count: int) -> np.ndarray:
    """Start poses: single file 0.25 m apart along every belt's centre line (between its guide rails), then a
    grid on the floor beside the line."""
    height = layout.BELT_HEIGHT + layout.PART_SIZE / 2 + 0.001
    on_belts = [(spec.start[0] + x, spec.start[1], height) for spec in layout.CONVEYORS
                for x in np.arange(0.2, spec.length - 0.1, 0.25)]
    on_floor = [(x, y, layout.PART_SIZE / 2 + 0.001) for y in (-2.6, -3.0, -3.4, -3.8)
                for x in np.arange(0.0, 20.0, 0.4)]
    positions = (on_belts + on_floor)[:count]
    if len(positions) < count:
        raise ValueError(f"room for {len(positions)} parts, asked for {count}")
    return np.array(positions)


def sweep(robot: RobotGeometry, time_s: float, copy: int = 0) -> np.ndarray:
    """The robot's joint values at `time_s` of the benchmark's sweep in copy `copy` (a phase per joint and copy,
    within the joint's limits)."""
    lower, upper = np.maximum(robot.chain.lower, -np.pi), np.minimum(robot.chain.upper, np.pi)
    phase = 2 * np.pi * (time_s / SWEEP_PERIOD_S + np.arange(len(lower)) / len(lower) + copy * COPY_PHASE)
    return (lower + upper) / 2 + (upper - lower) / 6 * np.sin(phase)


def newton_line(shapes: LayoutShapes, positions: np.ndarray, device: str = "cpu", copies: int = 1,
                robots: tuple[RobotGeometry, ...] = ()) -> Callable[[int], None]:
    """twin.physics with the parts at `positions` in each of `copies` copies of the line (and `robots` sweeping
    their joints): a function that runs so many steps of all copies."""
    model = PhysicsModel(shapes, device=device, max_parts=len(positions), part_size=layout.PART_SIZE, copies=copies,
                         robots=robots)
    state = model.new_state()
    for copy in range(copies):
        for position in positions:
            state.spawn_part(position, copy=copy)
        for robot in robots:
            state.set_robot_joints(robot.path, sweep(robot, 0.0, copy), jump=True, copy=copy)

    def run(steps: int) -> None:
        if not robots:
            model.step(state, steps)
        else:
            for done in range(0, steps, CHUNK):  # the joints' next values every CHUNK steps
                chunk = min(CHUNK, steps - done)
                for copy in range(copies):
                    for robot in robots:
                        state.set_robot_joints(robot.path, sweep(robot, state.time + chunk * STEP, copy), copy=copy)
                model.step(state, chunk)
        wp.synchronize_device(device)

    return run


def pybullet_line(shapes: LayoutShapes, positions: np.ndarray, copies: int = 1,
                  robots: tuple[RobotGeometry, ...] = ()) -> Callable[[int], None]:
    """PyBullet with the same boxes, belts and parts (and robot links), `copies` times in one world, each copy
    set apart along y by the line's width and a margin: a function that runs so many steps."""
    client = pybullet.connect(pybullet.DIRECT)
    pybullet.setGravity(0.0, 0.0, -GRAVITY, physicsClientId=client)
    pybullet.setPhysicsEngineParameter(fixedTimeStep=STEP, physicsClientId=client)

    offsets = np.array([0.0, 1.0, 0.0]) * (_width(shapes) + COPY_MARGIN) * np.arange(copies)[:, None]

    def box_shape(half_extents: np.ndarray) -> int:
        return pybullet.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half_extents.tolist(),
                                             physicsClientId=client)

    def bodies(shape: int, centre: np.ndarray, quaternion: list[float], mass: float, friction: float) -> list[int]:
        """A body of `shape` at `centre` in every copy, made in one call (one call per body slows down as the
        world grows)."""
        made = pybullet.createMultiBody(mass, shape, baseOrientation=quaternion,
                                        batchPositions=(centre + offsets).tolist(), physicsClientId=client)
        handles = [made] if isinstance(made, int) else list(made)
        for handle in handles:
            pybullet.changeDynamics(handle, -1, lateralFriction=friction, physicsClientId=client)
        return handles

    for box in shapes.static:
        bodies(box_shape(box.half_extents), box.centre, _quaternion(box.rotation), 0.0, SURFACE_FRICTION)
    belts = []
    for box in shapes.belts:
        velocity = (box.rotation @ box.direction * box.speed).tolist()
        quaternion = _quaternion(box.rotation)
        handles = bodies(box_shape(box.half_extents), box.centre, quaternion, DRIVEN_MASS, BELT_FRICTION)
        belts += [(handle, (box.centre + offset).tolist(), quaternion, velocity)
                  for handle, offset in zip(handles, offsets, strict=True)]
    part_shape = box_shape(np.full(3, layout.PART_SIZE / 2))
    for position in positions:  # friction multiplies in PyBullet: the parts' 1.0 leaves the surface's
        bodies(part_shape, position, [0.0, 0.0, 0.0, 1.0], DEFAULT_PART_MASS, 1.0)
    links = []  # per link with shapes (robot by robot, in `links` order): its body handles, one per copy

    def poses(time_s: float) -> np.ndarray:
        """(copies * L, 4, 4): every copy's link poses at `time_s` of its sweep, copy by copy."""
        return np.concatenate([np.zeros((0, 4, 4))] + [robot.poses(sweep(robot, time_s, copy))[0]
                                                       for copy in range(copies) for robot in robots])

    rests = poses(0.0)
    per_copy = len(rests) // copies
    for link, link_shapes in enumerate(shape for robot in robots for shape in robot.shapes):
        handles = _link_bodies(client, link_shapes, rests[link], offsets)  # copy 0's pose: reset before each step
        for handle in handles:  # links (group 4) touch parts only (PyBullet's default group 1)
            pybullet.setCollisionFilterGroupMask(handle, -1, 4, 1, physicsClientId=client)
        links.append(handles)
    for handle, *_ in belts if robots else ():  # belts (group 8) touch everything but links, as in twin.physics
        pybullet.setCollisionFilterGroupMask(handle, -1, 8, ~4, physicsClientId=client)
    link_offsets = np.repeat(offsets, per_copy, axis=0)  # (copies * L, 3), matching `poses`
    link_handles = [links[link][copy] for copy in range(copies) for link in range(per_copy)]
    clock = {"time": 0.0, "start": rests}

    def step(prescribed: list[tuple[list, list, list, list]]) -> None:
        for handle, centre, quaternion, velocity in belts:
            pybullet.resetBasePositionAndOrientation(handle, centre, quaternion, physicsClientId=client)
            pybullet.resetBaseVelocity(handle, velocity, [0.0, 0.0, 0.0], physicsClientId=client)
        for handle, centre, quaternion, linear, angular in prescribed:
            pybullet.resetBasePositionAndOrientation(handle, centre, quaternion, physicsClientId=client)
            pybullet.resetBaseVelocity(handle, linear, angular, physicsClientId=client)
        pybullet.stepSimulation(physicsClientId=client)

    def run(steps: int) -> None:
        if not robots:
            for _ in range(steps):
                step([])
            return
        for done in range(0, steps, CHUNK):
            chunk = min(CHUNK, steps - done)
            clock["time"] += chunk * STEP
            end = poses(clock["time"])
            positions, quaternions, linear, angular = _moves(clock["start"], end, chunk, chunk * STEP)
            clock["start"] = end
            positions += link_offsets
            velocities = [(v.tolist(), w.tolist()) for v, w in zip(linear, angular, strict=True)]
            for index in range(chunk):
                step([(handle, positions[index, body].tolist(), quaternions[index, body].tolist(), *velocities[body])
                      for body, handle in enumerate(link_handles)])

    return run


def _link_bodies(client: int, shapes, pose: np.ndarray, offsets: np.ndarray) -> list[int]:
    """A heavy body of `shapes` (one convex hull, or boxes, in the link's frame) at `pose`, in every copy."""
    frames = {"collisionFramePositions": [shape.frame[:3, 3].tolist() for shape in shapes],
              "collisionFrameOrientations": [_quaternion(shape.frame[:3, :3]) for shape in shapes]}
    if all(shape.half_extents is not None for shape in shapes):
        shape = pybullet.createCollisionShapeArray([pybullet.GEOM_BOX] * len(shapes), physicsClientId=client,
                                                   halfExtents=[s.half_extents.tolist() for s in shapes], **frames)
    elif len(shapes) == 1:
        shape = pybullet.createCollisionShape(pybullet.GEOM_MESH, vertices=shapes[0].points.tolist(),
                                              collisionFramePosition=frames["collisionFramePositions"][0],
                                              collisionFrameOrientation=frames["collisionFrameOrientations"][0],
                                              physicsClientId=client)
    else:  # PyBullet's shape arrays take no hulls; the sample's links are one hull or boxes
        raise NotImplementedError(f"{shapes[0].path}: a link of several shapes with a hull among them")
    made = pybullet.createMultiBody(DRIVEN_MASS, shape, baseOrientation=_quaternion(pose[:3, :3]),
                                    batchPositions=(pose[:3, 3] + offsets).tolist(), physicsClientId=client)
    return [made] if isinstance(made, int) else list(made)


def _moves(start: np.ndarray, end: np.ndarray, steps: int, duration: float) -> tuple[np.ndarray, ...]:
    """Constant-velocity moves of (L, 4, 4) poses from `start` to `end` over `duration`, sampled at the start of
    each of `steps` steps, vectorised as twin.physics does it: positions (steps, L, 3), quaternions (steps, L, 4;
    x, y, z, w), and the (L, 3) linear and angular world velocities."""
    turn = Rotation.from_matrix(end[:, :3, :3] @ np.transpose(start[:, :3, :3], (0, 2, 1))).as_rotvec()
    fractions = np.arange(steps)[:, None, None] / steps
    begin = Rotation.from_matrix(np.tile(start[:, :3, :3], (steps, 1, 1)))
    quaternions = (Rotation.from_rotvec((turn[None] * fractions).reshape(-1, 3)) * begin).as_quat()
    travel = end[:, :3, 3] - start[:, :3, 3]
    positions = start[None, :, :3, 3] + travel[None] * fractions
    return positions, quaternions.reshape(steps, -1, 4), travel / duration, turn / duration


def best_rates(lines: list[Callable[[int], None]], steps: int, repeats: int) -> list[float]:
    """Steps per second of each line, the best of `repeats` windows taken in turn, so that load from
    elsewhere on the machine falls on both engines alike."""
    for run in lines:
        run(WARMUP_STEPS)
    best = [0.0] * len(lines)
    for _ in range(repeats):
        for index, run in enumerate(lines):
            started = time.perf_counter()
            run(steps)
            best[index] = max(best[index], steps / (time.perf_counter() - started))
    return best


def bounded_rates(lines: list[Callable[[int], None]], max_seconds: float, repeats: int) -> list[tuple[float, int]]:
    """(steps per second, steps run) of each line in calls of CHUNK steps: a warm-up call, then `repeats` windows
    each, taken in turn, every window running calls until its share of `max_seconds` is spent; best window."""
    for run in lines:
        run(CHUNK)
    best = [(0.0, 0)] * len(lines)
    for _ in range(repeats):
        for index, run in enumerate(lines):
            started, steps = time.perf_counter(), 0
            while not steps or time.perf_counter() - started < max_seconds / repeats:
                run(CHUNK)
                steps += CHUNK
            rate = steps / (time.perf_counter() - started)
            best[index] = max(best[index], (rate, steps))
    return best


def copies_rows(shapes: LayoutShapes, device: str, counts: tuple[int, ...], max_seconds: float,
                repeats: int, robots: tuple[RobotGeometry, ...] = ()) -> list[dict]:
    """Part (b): rows for `counts` copies of the line with PARTS_PER_COPY parts each (and `robots` sweeping their
    joints in every copy). A count whose first call would overrun `max_seconds` in either engine, judged by the
    row before, is skipped with the reason in its row."""
    positions, rows, per_world_step = part_positions(PARTS_PER_COPY), [], None
    links = sum(len(robot.links) for robot in robots)
    for copies in counts:
        row = {"scene": f"sample line x{copies}" + (f", {len(robots)} robots moving" if robots else ""),
               "bodies": copies * (PARTS_PER_COPY + links), "device": device, "copies": copies,
               "parts_per_copy": PARTS_PER_COPY, "steps_per_s": None, "realtime_factor": None,
               "peer": "pybullet", "peer_steps_per_s": None, "ratio_to_peer": None}
        if robots:
            row["robot_links_per_copy"] = links
        rows.append(row)
        if per_world_step is not None and per_world_step * copies * CHUNK * 2 > max_seconds:
            row["skipped"] = (f"a warm-up and one call of {CHUNK} steps would take about "
                              f"{per_world_step * copies * CHUNK * 2:.0f} s, over --max-seconds {max_seconds:g}")
            continue
        started = time.perf_counter()
        lines = [newton_line(shapes, positions, device, copies, robots),
                 pybullet_line(shapes, positions, copies, robots)]
        row["build_s"] = time.perf_counter() - started
        (ours, steps), (peer, peer_steps) = bounded_rates(lines, max_seconds, repeats)
        per_world_step = 1.0 / (min(ours, peer) * copies)  # the slower engine decides whether the next row fits
        row.update(steps_per_s=ours * copies, realtime_factor=ours * STEP, peer_steps_per_s=peer * copies,
                   ratio_to_peer=ours / peer, steps=steps, peer_steps=peer_steps)
    return rows


def _width(shapes: LayoutShapes) -> float:
    """The line's extent across y, over every box's corners."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    ys = [(box.centre + (corners * box.half_extents) @ box.rotation.T)[:, 1]
          for box in (*shapes.static, *shapes.belts, *shapes.stoppers)]
    return float(np.ptp(np.concatenate(ys)))


def _quaternion(rotation: np.ndarray) -> list[float]:
    q = wp.quat_from_matrix(wp.mat33(*rotation.ravel().tolist()))
    return [float(q[0]), float(q[1]), float(q[2]), float(q[3])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=480, help="timed steps per window (after a warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="windows per engine, best taken")
    parser.add_argument("--device", default="cpu", help="Warp device of twin.physics: cpu, cuda:0 (PyBullet: cpu)")
    parser.add_argument("--copies", type=int, nargs="*", default=list(COPIES),
                        help="(b): copies of the line per row; none to leave (b) out")
    parser.add_argument("--robot-copies", type=int, nargs="*", default=list(COPIES),
                        help="(b) with the robots moving: copies of the line per row; none to leave them out")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="(b): timed seconds per engine and row, after one warm-up call")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # at most one core, for both engines
    wp.config.quiet = True
    with tempfile.TemporaryDirectory() as folder:
        stage = open_layout(build_sample_factory(Path(folder)))
        shapes, robots = read_shapes(stage), read_robots(stage)
    machine = f"{cpu()}, pinned to one"
    print(f"physics benchmark on {machine}: sample line, dt = 1/{round(1 / STEP)} s, (a) best of {args.repeats} "
          f"windows of {args.steps} steps; (b) copies of the line with {PARTS_PER_COPY} parts each, world-steps/s, "
          f"best of {args.repeats} windows in {args.max_seconds:g} s per engine")
    rows = []
    for count in PART_COUNTS:
        positions = part_positions(count)
        ours, peer = best_rates([newton_line(shapes, positions, args.device), pybullet_line(shapes, positions)],
                                args.steps, args.repeats)
        rows.append({"scene": "sample line", "bodies": count, "device": args.device, "steps_per_s": ours,
                     "realtime_factor": ours * STEP, "peer": "pybullet", "peer_steps_per_s": peer,
                     "ratio_to_peer": ours / peer})
    positions = part_positions(ROBOT_ROW_PARTS)
    links = sum(len(robot.links) for robot in robots)
    ours, peer = best_rates([newton_line(shapes, positions, args.device, robots=robots),
                             pybullet_line(shapes, positions, robots=robots)], args.steps, args.repeats)
    rows.append({"scene": f"sample line, {len(robots)} robots moving", "bodies": ROBOT_ROW_PARTS + links,
                 "device": args.device, "robot_links": links, "steps_per_s": ours, "realtime_factor": ours * STEP,
                 "peer": "pybullet", "peer_steps_per_s": peer, "ratio_to_peer": ours / peer})
    rows += copies_rows(shapes, args.device, tuple(args.copies), args.max_seconds, args.repeats)
    rows += copies_rows(shapes, args.device, tuple(args.robot_copies), args.max_seconds, args.repeats, robots)
    print_table(rows, COLUMNS)
    for row in rows:
        if "skipped" in row:
            print(f"{row['scene']}: skipped: {row['skipped']}")
    print(json.dumps({"bench": "physics", "machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
