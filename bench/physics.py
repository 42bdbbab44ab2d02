"""Physics benchmark: the sample line with 10, 50 and 200 parts stepped at dt = 1/240 on one CPU core.

twin.physics (Newton on MuJoCo's C solver) against PyBullet stepping the same boxes at the same step:
static collision boxes, belts as heavy bodies whose pose and velocity are reset before every step (the
same driven-body scheme as twin.physics, as PyBullet has no surface velocity), and the same 0.2 m parts
at the same start poses. Both run pinned to one core. The last line is one JSON object.

    .venv/bin/python bench/physics.py [--steps 480] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pybullet
import warp as wp

from twin.physics.model import (
    BELT_FRICTION,
    DEFAULT_PART_MASS,
    DRIVEN_MASS,
    GRAVITY,
    STEP,
    SURFACE_FRICTION,
    PhysicsModel,
)
from twin.physics.shapes import LayoutShapes, read_shapes
from twin.sample_factory import layout
from twin.sample_factory.scene import build_sample_factory
from twin.scenes import open_layout

PART_COUNTS = (10, 50, 200)
WARMUP_STEPS = 120
COLUMNS = (("scene", "scene", "{}"), ("bodies", "bodies", "{:d}"), ("device", "device", "{}"),
           ("steps_per_s", "steps/s", "{:,.0f}"), ("realtime_factor", "x real time", "{:.2f}"),
           ("peer", "peer", "{}"), ("peer_steps_per_s", "peer steps/s", "{:,.0f}"),
           ("ratio_to_peer", "ratio", "{:.2f}"))


def part_positions(count: int) -> np.ndarray:
    """Start poses: two lanes 0.3 m apart along every belt, then a grid on the floor beside the line."""
    height = layout.BELT_HEIGHT + layout.PART_SIZE / 2 + 0.001
    on_belts = [(spec.start[0] + x, lane, height) for spec in layout.CONVEYORS
                for x in np.arange(0.2, spec.length - 0.1, 0.3) for lane in (-0.12, 0.12)]
    on_floor = [(x, y, layout.PART_SIZE / 2 + 0.001) for y in (-2.6, -3.0, -3.4) for x in np.arange(0.0, 20.0, 0.4)]
    positions = (on_belts + on_floor)[:count]
    if len(positions) < count:
        raise ValueError(f"room for {len(positions)} parts, asked for {count}")
    return np.array(positions)


def newton_line(shapes: LayoutShapes, positions: np.ndarray) -> Callable[[int], None]:
    """twin.physics with the parts at `positions`: a function that runs so many steps."""
    model = PhysicsModel(shapes, device="cpu", max_parts=len(positions), part_size=layout.PART_SIZE)
    state = model.new_state()
    for position in positions:
        state.spawn_part(position)
    return lambda steps: model.step(state, steps)


def pybullet_line(shapes: LayoutShapes, positions: np.ndarray) -> Callable[[int], None]:
    """PyBullet with the same boxes, belts and parts: a function that runs so many steps."""
    client = pybullet.connect(pybullet.DIRECT)
    pybullet.setGravity(0.0, 0.0, -GRAVITY, physicsClientId=client)
    pybullet.setPhysicsEngineParameter(fixedTimeStep=STEP, physicsClientId=client)

    def body(box, mass: float, friction: float) -> int:
        shape = pybullet.createCollisionShape(pybullet.GEOM_BOX, halfExtents=box.half_extents.tolist(),
                                              physicsClientId=client)
        quaternion = _quaternion(box.rotation)
        handle = pybullet.createMultiBody(mass, shape, basePosition=box.centre.tolist(),
                                          baseOrientation=quaternion, physicsClientId=client)
        pybullet.changeDynamics(handle, -1, lateralFriction=friction, physicsClientId=client)
        return handle

    for box in shapes.static:
        body(box, 0.0, SURFACE_FRICTION)
    belts = []
    for box in shapes.belts:
        handle = body(box, DRIVEN_MASS, BELT_FRICTION)
        velocity = (box.rotation @ box.direction * box.speed).tolist()
        belts.append((handle, box.centre.tolist(), _quaternion(box.rotation), velocity))
    half = layout.PART_SIZE / 2
    part_shape = pybullet.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[half] * 3, physicsClientId=client)
    for position in positions:
        part = pybullet.createMultiBody(DEFAULT_PART_MASS, part_shape, basePosition=position.tolist(),
                                        physicsClientId=client)
        pybullet.changeDynamics(part, -1, lateralFriction=1.0, physicsClientId=client)  # friction multiplies

    def step() -> None:
        for handle, centre, quaternion, velocity in belts:
            pybullet.resetBasePositionAndOrientation(handle, centre, quaternion, physicsClientId=client)
            pybullet.resetBaseVelocity(handle, velocity, [0.0, 0.0, 0.0], physicsClientId=client)
        pybullet.stepSimulation(physicsClientId=client)

    def run(steps: int) -> None:
        for _ in range(steps):
            step()

    return run


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


def _quaternion(rotation: np.ndarray) -> list[float]:
    q = wp.quat_from_matrix(wp.mat33(*rotation.ravel().tolist()))
    return [float(q[0]), float(q[1]), float(q[2]), float(q[3])]


def print_table(rows: list[dict]) -> None:
    cells = [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title, _) in enumerate(COLUMNS)]
    print("  ".join(title.rjust(w) for (_, title, _), w in zip(COLUMNS, widths, strict=True)))
    for c in cells:
        print("  ".join(value.rjust(w) for value, w in zip(c, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=480, help="timed steps per window (after a warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="windows per engine, best taken")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # at most one core, for both engines
    wp.config.quiet = True
    with tempfile.TemporaryDirectory() as folder:
        shapes = read_shapes(open_layout(build_sample_factory(Path(folder))))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to one"
    print(f"physics benchmark on {machine}: sample line, dt = 1/{round(1 / STEP)} s, best of {args.repeats} "
          f"windows of {args.steps} steps")
    rows = []
    for count in PART_COUNTS:
        positions = part_positions(count)
        ours, peer = best_rates([newton_line(shapes, positions), pybullet_line(shapes, positions)],
                                args.steps, args.repeats)
        rows.append({"scene": "sample line", "bodies": count, "device": "cpu", "steps_per_s": ours,
                     "realtime_factor": ours * STEP, "peer": "pybullet", "peer_steps_per_s": peer,
                     "ratio_to_peer": ours / peer})
    print_table(rows)
    print(json.dumps({"bench": "physics", "machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
