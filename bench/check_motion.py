"""check_motion benchmark: robot configurations checked per second against python-fcl in a loop.

Scene: the sample factory's Robot1 (KUKA KR16, 7 meshed links, ~17,700 triangles) in its cell (tables,
conveyors, floor: every visible mesh within reach). Work: a batch of random configurations, uniform within
the joint limits (+-pi for unlimited joints), each checked for any contact between a moving link and the cell
or two links at least two joints apart (the checker's pairs: 20 for Robot1, link_1 x cell being proved apart;
see twin/physics/collision.py).

- Ours (`per_s`): `MotionChecker.collides(q)`: FK, then one Warp thread per configuration through the pairs
  until one meets, numpy in and out; the CPU batch cut into one slice per core.
- Peer (`peer_per_s`): python-fcl 0.7 on the same triangles (fcl.BVHModel, OBBRSS) and the same pairs in
  the same order, in a Python loop: set each link's transform from the same FK, `fcl.collide` pair by pair,
  stopping at the first contact, as ours does.
- Both verdicts are compared on the peer's configurations; the run stops if they disagree where fcl's
  distance is over 1 mm.
- Timing: one warm-up call (kernel compilation excluded); ours and the peer are timed alternately, three
  rounds, the best round of each counts, so a machine shared with other work slows both alike. Also given:
  the ratio in CPU seconds (process time, both of our threads counted) and the 1-minute load average. The peer runs
  on min(B, 2,000) configurations (its rate does not depend on the batch size).

Run: `python bench/check_motion.py [--device cuda:0] [--batch 10000]`. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import fcl
import numpy as np
from machine import warp_machine  # bench/machine.py: scripts run as `python bench/NAME.py`
from pxr import Usd

from twin.kinematics.device import default_device
from twin.physics.collision import MotionChecker
from twin.sample_factory.scene import build_sample_factory

ROBOT = "/Factory/Line/Robot1"
PEER_MAX = 2_000
ROUNDS = 3


def fcl_objects(checker: MotionChecker) -> list[fcl.CollisionObject]:
    objects = []
    for body in checker.bodies:
        model = fcl.BVHModel()
        model.beginModel(len(body.points), len(body.faces))
        model.addSubModel(body.points.astype(np.float64), body.faces.astype(np.int64))
        model.endModel()
        objects.append(fcl.CollisionObject(model, fcl.Transform()))
    return objects


def fcl_collides(checker: MotionChecker, objects: list, poses: np.ndarray) -> np.ndarray:
    verdicts = np.zeros(len(poses), bool)
    request = fcl.CollisionRequest()
    for k, pose in enumerate(poses):
        for body, obj in zip(checker.bodies, objects, strict=True):
            if body.link >= 0:
                link = pose[body.link]
                obj.setTransform(fcl.Transform(link[:3, :3], link[:3, 3]))
        for a, b in checker.pairs:
            if fcl.collide(objects[a], objects[b], request, fcl.CollisionResult()):
                verdicts[k] = True
                break
    return verdicts


def fcl_distance(checker: MotionChecker, objects: list, pose: np.ndarray) -> float:
    for body, obj in zip(checker.bodies, objects, strict=True):
        if body.link >= 0:
            obj.setTransform(fcl.Transform(pose[body.link][:3, :3], pose[body.link][:3, 3]))
    return min(max(0.0, fcl.distance(objects[a], objects[b], fcl.DistanceRequest(), fcl.DistanceResult()))
               for a, b in checker.pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="Warp device (default: TWIN_DEVICE, else CUDA if present)")
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    device = args.device or default_device()
    layout = build_sample_factory(tempfile.mkdtemp(prefix="bench-check-motion-"))
    started = time.perf_counter()
    checker = MotionChecker(Usd.Stage.Open(str(layout)), ROBOT, device=device)
    build_s = time.perf_counter() - started
    chain = checker.chain
    q = np.random.default_rng(1).uniform(np.maximum(chain.lower, -np.pi), np.minimum(chain.upper, np.pi),
                                         (args.batch, chain.n_joints))
    peer_q = q[:PEER_MAX]
    poses = chain.fk(peer_q, base=checker.robot_world)
    objects = fcl_objects(checker)
    ours = checker.collides(q)  # warm-up: kernels compiled and loaded
    theirs = fcl_collides(checker, objects, poses)
    disagree = [int(i) for i in np.flatnonzero(ours[:PEER_MAX] != theirs)
                if fcl_distance(checker, objects, poses[i]) > 1e-3]
    if disagree:
        raise SystemExit(f"check_motion and fcl disagree on configurations {disagree[:10]}")
    our_s, peer_s, our_cpu_s, peer_cpu_s = [], [], [], []
    for _ in range(ROUNDS):
        started, cpu = time.perf_counter(), time.process_time()
        checker.collides(q)
        our_s.append(time.perf_counter() - started)
        our_cpu_s.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        fcl_collides(checker, objects, poses)
        peer_s.append(time.perf_counter() - started)
        peer_cpu_s.append(time.process_time() - cpu)
    per_s = args.batch / min(our_s)
    peer_per_s = len(peer_q) / min(peer_s)
    row = {"scene": "sample cell, Robot1 (KR16)", "batch": args.batch, "device": device,
           "pairs": len(checker.pairs), "triangles": int(sum(len(b.faces) for b in checker.bodies)),
           "colliding": round(float(ours.mean()), 3), "per_s": round(per_s), "peer": "python-fcl loop",
           "peer_per_s": round(peer_per_s), "ratio_to_peer": round(per_s / peer_per_s, 2),
           "build_s": round(build_s, 2),
           "cpu_ratio_to_peer": round(args.batch * min(peer_cpu_s) / len(peer_q) / min(our_cpu_s), 2),
           "load_average": round(os.getloadavg()[0], 1),
           "agreement": round(float((ours[:PEER_MAX] == theirs).mean()), 4)}
    print(f"{'device':>8} {'batch':>7} {'per_s':>10} {'fcl_per_s':>10} {'ratio':>6} {'colliding':>9} {'build_s':>7}")
    print(f"{device:>8} {args.batch:>7} {row['per_s']:>10,} {row['peer_per_s']:>10,} {row['ratio_to_peer']:>6} "
          f"{row['colliding']:>9} {row['build_s']:>7}")
    print(json.dumps({"bench": "check_motion", "machine": warp_machine(device), "rows": [row]}))


if __name__ == "__main__":
    main()
