"""Kinematics benchmark: our Warp FK, Jacobians and IK against Pinocchio and Newton on the same work.

Robots: KUKA KR16 (6 axes) and KUKA LBR iiwa 14 (7 axes) from `rtb-data`. For each robot one set of
random configurations, uniform within the joint limits, is drawn once; every batch size uses its first
B rows, and every contender sees exactly those rows.

Method
- Correctness first: on a few configurations our link poses are compared with Newton's body poses
  and Pinocchio's frame placements (every link, matched by name); the run stops if they disagree.
- FK (`fk_per_s`): `Chain.forward_evaluator(device).launch(q, base, out)` on arrays already on the
  device + `wp.synchronize_device()`, all links of every configuration: the kernel generated for the
  robot (twin/fk_codegen.py), its batch split across the CPU cores. `generic_fk_per_s` times the
  multi-robot `KinematicsBatch` kernel on the same work. `fk_numpy_per_s` times the whole
  `Chain.fk(q)` call: numpy in, (B, links, 4, 4) numpy out.
- Pinocchio (`peer_fk_per_s`): `framesForwardKinematics` called in a Python loop over the same
  configurations (prepared as float64 arrays beforehand), all frames updated.
- Newton (`newton_fk_per_s`): `ModelBuilder.add_urdf` (fixed base, meshes stripped), `replicate` to B
  copies, `finalize` on the same device, then `newton.eval_fk(model, joint_q, joint_qd, state)` +
  synchronize; it computes every body of every copy.
- Jacobians (`jacobian_per_s`): `launch()` + `KinematicsBatch.jacobian(tool0)` (FK, Jacobian, numpy out).
- IK (`ik_per_s`, `ik_success`): `Chain.ik(targets, "tool0")` end to end (defaults: 8 seeds, retries)
  on min(B, 10,000) targets taken from FK of random configurations. Newton's `IKSolver` (LM, analytic
  Jacobian, position + rotation + joint-limit objectives, Roberts sampler, 8 seeds, 30 iterations)
  solves min(B, 1,000) of the same targets. Both success rates are checked with OUR FK: position error
  < 1e-4 m and every rotation-matrix element within 1e-3.
- Timing: a warm-up call first (kernel compilation excluded), then blocks of calls lasting >= 0.2 s;
  the best of up to three blocks counts (fewer once a measurement passes 3 s, e.g. IK at 10,000).
  `newton_build_s` is the one-off replicate + finalize time of Newton's B-copy model, for information.

Run: `pip install -e '.[test,bench]'` once (Newton is a benchmark-only peer), then
`python bench/kinematics.py`. The last line is the JSON summary (see ../shared/README.md).
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

import numpy as np
import pinocchio as pin
import warp as wp
from machine import print_table, warp_machine  # bench/machine.py: scripts run as `python bench/NAME.py`

try:
    import newton
    import newton.ik as nik
except ModuleNotFoundError:
    raise SystemExit("bench/kinematics.py needs Newton, its peer: pip install -e '.[test,bench]'") from None

from twin.core.transforms import matrix_to_pose
from twin.kinematics.batch import KinematicsBatch
from twin.kinematics.chain import Chain
from twin.kinematics.device import default_device
from twin.kinematics.urdf import rtb_urdf

wp.config.log_level = wp.LOG_WARNING  # no banner, no per-module load lines

ROBOTS = {
    "kr16": "kuka_description/kuka_kr16/urdf/kr16_2.urdf",
    "lbr_iiwa": "kuka_description/kuka_lbr_iiwa/urdf/lbr_iiwa_14_r820.urdf",
}
BATCHES = (1, 100, 10_000, 100_000)
TOOL = "tool0"
IK_MAX_BATCH = 10_000
NEWTON_IK_MAX_BATCH = 1_000
NEWTON_IK = dict(sampler="roberts", n_seeds=8, iterations=30)
POSITION_TOL, ROTATION_TOL = 1e-4, 1e-3
MIN_BLOCK_S, BLOCKS, MAX_MEASURE_S = 0.2, 3, 3.0
SEED = 2024


# --------------------------------------------------------------------------- timing
def rate(fn: Callable[[], object], items: int, *, warmup: Callable[[], object] | None = None) -> float:
    """Items per second of `fn`: warm-up, then the best of up to BLOCKS blocks lasting >= MIN_BLOCK_S."""
    (warmup or fn)()
    calls, best, started = 1, float("inf"), time.perf_counter()
    for _ in range(BLOCKS):
        while True:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            elapsed = time.perf_counter() - t0
            if elapsed >= MIN_BLOCK_S:
                break
            calls = max(2 * calls, int(calls * 1.2 * MIN_BLOCK_S / max(elapsed, 1e-9)))
        best = min(best, elapsed / calls)
        if time.perf_counter() - started > MAX_MEASURE_S:
            break
    return items / best


# --------------------------------------------------------------------------- peers
def urdf_without_meshes(path) -> str:
    """The URDF as XML text without visuals and collisions: kinematics only, no mesh lookups."""
    root = ET.parse(path).getroot()
    for link in root.iter("link"):
        for tag in ("visual", "collision"):
            for element in link.findall(tag):
                link.remove(element)
    return ET.tostring(root, encoding="unicode")


def to_newton_q(q: np.ndarray, to_newton: np.ndarray) -> np.ndarray:
    out = np.empty_like(q)
    out[:, to_newton] = q
    return out


def newton_model(robot: newton.ModelBuilder, copies: int, device: str):
    scene = newton.ModelBuilder()
    scene.replicate(robot, copies)
    return scene.finalize(device=device)


class PinocchioFk:
    """Pinocchio model with our joint order mapped onto its q layout and our links onto its frames."""

    def __init__(self, path, chain: Chain):
        self.model = pin.buildModelFromUrdf(str(path))
        self.data = self.model.createData()
        self.q_index = [self.model.joints[self.model.getJointId(n)].idx_q for n in chain.joint_names]
        self.frames = [self.model.getFrameId(n, pin.BODY) for n in chain.link_names]

    def configurations(self, q: np.ndarray) -> list[np.ndarray]:
        out = np.zeros((q.shape[0], self.model.nq))
        out[:, self.q_index] = q
        return list(out)

    def run(self, configurations: list[np.ndarray]) -> None:
        model, data = self.model, self.data
        for q in configurations:
            pin.framesForwardKinematics(model, data, q)

    def poses(self, q: np.ndarray) -> np.ndarray:
        out = []
        for qi in self.configurations(q):
            pin.framesForwardKinematics(self.model, self.data, qi)
            out.append([self.data.oMf[f].homogeneous for f in self.frames])
        return np.array(out)


def pose_errors(chain: Chain, q: np.ndarray, targets: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Position error norm and largest rotation-matrix element error of `tool0` at q, with our FK."""
    reached = chain.fk(q, device=device)[:, chain.link_index(TOOL)]
    position = np.linalg.norm(reached[:, :3, 3] - targets[:, :3, 3], axis=1)
    rotation = np.abs(reached[:, :3, :3] - targets[:, :3, :3]).max(axis=(1, 2))
    return position, rotation


def solved_fraction(chain: Chain, q: np.ndarray, targets: np.ndarray, device: str) -> float:
    position, rotation = pose_errors(chain, q, targets, device)
    return float(np.mean((position < POSITION_TOL) & (rotation < ROTATION_TOL)))


def newton_ik(model, tool: int, targets: np.ndarray, device: str):
    """An IKSolver for `targets` (B, 4, 4) and a callable that solves them into a (B, n) joint array."""
    pose = matrix_to_pose(targets).astype(np.float32)
    objectives = [
        nik.IKObjectivePosition(link_index=tool, link_offset=wp.vec3(0.0, 0.0, 0.0),
                                target_positions=wp.array(pose[:, :3], dtype=wp.vec3, device=device)),
        nik.IKObjectiveRotation(link_index=tool, link_offset_rotation=wp.quat_identity(),
                                target_rotations=wp.array(pose[:, 3:], dtype=wp.vec4, device=device)),
        nik.IKObjectiveJointLimit(joint_limit_lower=model.joint_limit_lower,
                                  joint_limit_upper=model.joint_limit_upper, weight=10.0),
    ]
    solver = nik.IKSolver(model, len(targets), objectives, optimizer=nik.IKOptimizer.LM,
                          jacobian_mode=nik.IKJacobianType.ANALYTIC, sampler=NEWTON_IK["sampler"],
                          n_seeds=NEWTON_IK["n_seeds"])
    joint_q = wp.zeros((len(targets), model.joint_coord_count), dtype=float, device=device)

    def solve():
        joint_q.zero_()
        solver.step(joint_q, joint_q, iterations=NEWTON_IK["iterations"])
        wp.synchronize_device(device)

    return solve, joint_q


# --------------------------------------------------------------------------- one robot
def bench_robot(name: str, relative: str, device: str) -> list[dict]:
    path = rtb_urdf(relative)
    chain = Chain.from_urdf(path)
    tool = chain.link_index(TOOL)
    rng = np.random.default_rng(SEED)
    low = np.where(np.isfinite(chain.lower), chain.lower, -np.pi)
    high = np.where(np.isfinite(chain.upper), chain.upper, np.pi)
    q_all = rng.uniform(low, high, (max(BATCHES), chain.n_joints))
    ik_q = rng.uniform(low, high, (IK_MAX_BATCH, chain.n_joints))
    ik_targets = chain.fk(ik_q, device=device)[:, tool]

    robot = newton.ModelBuilder()
    robot.add_urdf(urdf_without_meshes(path), floating=False, enable_self_collisions=False)
    newton_single = robot.finalize(device=device)
    newton_links = [label.split("/")[-1] for label in newton_single.body_label]
    if sorted(newton_links) != sorted(chain.link_names) or newton_single.joint_coord_count != chain.n_joints:
        raise SystemExit(f"{name}: Newton bodies {newton_links} do not match our links {chain.link_names}")
    newton_order = [newton_links.index(link) for link in chain.link_names]
    joint_labels = [label.split("/")[-1] for label in newton_single.joint_label]
    q_start = newton_single.joint_q_start.numpy()
    to_newton = np.array([q_start[joint_labels.index(joint)] for joint in chain.joint_names])  # our q -> Newton's
    peer = PinocchioFk(path, chain)

    # ---- agreement on a few configurations: every link, joints and bodies matched by name
    q_check = q_all[:5]
    ours = chain.fk(q_check, device=device)
    model = newton_model(robot, len(q_check), device)
    state = model.state()
    check_q = wp.array(to_newton_q(q_check, to_newton).reshape(-1), dtype=float, device=device)
    newton.eval_fk(model, check_q, model.joint_qd, state)
    newton_pos = state.body_q.numpy().reshape(len(q_check), -1, 7)[:, newton_order, :3]
    pin_poses = peer.poses(q_check)
    d_newton = np.abs(newton_pos - ours[..., :3, 3]).max()
    d_newton_tool = np.abs(newton_pos[:, tool] - ours[:, tool, :3, 3]).max()
    d_pin = np.abs(pin_poses - ours).max()
    d_pin_tool = np.abs(pin_poses[:, tool, :3, 3] - ours[:, tool, :3, 3]).max()
    ok = max(d_newton, d_pin) < 1e-4
    print(f"check {name}: {len(q_check)} configs, {chain.n_links} links; max |ours - Newton| position "
          f"{d_newton:.1e} m (tool0 {d_newton_tool:.1e}); max |ours - Pinocchio| pose element {d_pin:.1e} "
          f"(tool0 position {d_pin_tool:.1e}) -> {'OK' if ok else 'MISMATCH'}", flush=True)
    if not ok:
        raise SystemExit(f"{name}: FK disagrees with the peers; not timing")

    # ---- IK, once per distinct IK batch size
    ik_cache: dict[int, tuple[float, float]] = {}
    newton_ik_cache: dict[int, tuple[float, float]] = {}

    def ours_ik(count: int) -> tuple[float, float]:
        if count not in ik_cache:
            targets, result = ik_targets[:count], []
            per_s = rate(lambda: result.append(chain.ik(targets, TOOL, device=device)), count,
                         warmup=lambda: chain.ik(ik_targets[:4], TOOL, device=device))
            ik_cache[count] = per_s, solved_fraction(chain, result[-1].q, targets, device)
        return ik_cache[count]

    def peer_ik(count: int) -> tuple[float, float]:
        if count not in newton_ik_cache:
            targets = ik_targets[:count]
            solve, joint_q = newton_ik(newton_single, newton_links.index(TOOL), targets, device)
            per_s = rate(solve, count)
            solution = joint_q.numpy().astype(np.float64)[:, to_newton]
            newton_ik_cache[count] = per_s, solved_fraction(chain, solution, targets, device)
        return newton_ik_cache[count]

    rows = []
    for batch_size in BATCHES:
        q = q_all[:batch_size]
        batch = KinematicsBatch([chain], [0] * batch_size, device=device)
        batch.q.assign(q.reshape(-1).astype(np.float32))

        def generic_fk(batch=batch):
            batch.launch()
            wp.synchronize_device(device)

        generic_fk_per_s = rate(generic_fk, batch_size)
        evaluator = chain.forward_evaluator(device)
        q_device = wp.array(q.astype(np.float32), dtype=float, device=device)
        base_device = wp.array(matrix_to_pose(np.tile(np.eye(4), (batch_size, 1, 1))).astype(np.float32),
                               dtype=wp.transform, device=device)
        out_device = wp.zeros((batch_size, chain.n_links), dtype=wp.transform, device=device)

        def ours_fk(evaluator=evaluator, q_device=q_device, base_device=base_device, out_device=out_device):
            evaluator.launch(q_device, base_device, out_device)
            wp.synchronize_device(device)

        fk_per_s = rate(ours_fk, batch_size)
        fk_numpy_per_s = rate(lambda q=q: chain.fk(q, device=device), batch_size,
                              warmup=lambda: chain.fk(q_all[:2], device=device))
        jacobian_per_s = rate(lambda batch=batch: (batch.launch(), batch.jacobian(tool)), batch_size)

        configurations = peer.configurations(q)
        peer_fk_per_s = rate(lambda c=configurations: peer.run(c), batch_size)

        t0 = time.perf_counter()
        model = newton_model(robot, batch_size, device)
        build_s = time.perf_counter() - t0
        state = model.state()
        joint_q = wp.array(to_newton_q(q, to_newton).reshape(-1), dtype=float, device=device)

        def newton_fk(model=model, joint_q=joint_q, state=state):
            newton.eval_fk(model, joint_q, model.joint_qd, state)
            wp.synchronize_device(device)

        newton_fk_per_s = rate(newton_fk, batch_size)

        ik_batch, newton_ik_batch = min(batch_size, IK_MAX_BATCH), min(batch_size, NEWTON_IK_MAX_BATCH)
        ik_per_s, ik_success = ours_ik(ik_batch)
        newton_ik_per_s, newton_ik_success = peer_ik(newton_ik_batch)
        rows.append(dict(
            robot=name, batch=batch_size,
            fk_per_s=round(fk_per_s), peer_fk_per_s=round(peer_fk_per_s),
            ratio_to_peer=round(fk_per_s / peer_fk_per_s, 3),
            newton_fk_per_s=round(newton_fk_per_s), ratio_to_newton=round(fk_per_s / newton_fk_per_s, 3),
            ik_per_s=round(ik_per_s, 1), ik_success=round(ik_success, 4), ik_batch=ik_batch,
            jacobian_per_s=round(jacobian_per_s), fk_numpy_per_s=round(fk_numpy_per_s),
            generic_fk_per_s=round(generic_fk_per_s),
            newton_ik_per_s=round(newton_ik_per_s, 1), newton_ik_success=round(newton_ik_success, 4),
            newton_ik_batch=newton_ik_batch, newton_build_s=round(build_s, 2),
        ))
        print(f"  {name} batch {batch_size}: done", flush=True)
    return rows


# --------------------------------------------------------------------------- report
COLUMNS = (
    ("robot", "robot", "{}"), ("batch", "batch", "{:,}"), ("fk_per_s", "FK/s", "{:,}"),
    ("peer_fk_per_s", "Pinocchio/s", "{:,}"), ("ratio_to_peer", "xPin", "{:.2f}"),
    ("newton_fk_per_s", "Newton/s", "{:,}"), ("ratio_to_newton", "xNewton", "{:.2f}"),
    ("fk_numpy_per_s", "FK numpy/s", "{:,}"), ("jacobian_per_s", "Jac/s", "{:,}"),
    ("ik_per_s", "IK/s", "{:,.0f}"), ("ik_success", "IK ok", "{:.3f}"), ("ik_batch", "IK n", "{:,}"),
    ("newton_ik_per_s", "Newton IK/s", "{:,.0f}"), ("newton_ik_success", "NIK ok", "{:.3f}"),
    ("newton_ik_batch", "NIK n", "{:,}"),
)


def main() -> None:
    started = time.perf_counter()
    device = default_device()
    info = warp_machine(device)
    print(f"kinematics benchmark on {info}")
    print(f"Newton IK: LM, analytic Jacobian, {NEWTON_IK['sampler']} sampler, {NEWTON_IK['n_seeds']} seeds, "
          f"{NEWTON_IK['iterations']} iterations; success measured with our FK "
          f"(position < {POSITION_TOL} m, rotation element < {ROTATION_TOL})")
    print("Pinocchio: framesForwardKinematics in a Python loop over every configuration of the batch")
    rows = [row for name, relative in ROBOTS.items() for row in bench_robot(name, relative, device)]
    print()
    print_table(rows, COLUMNS)
    print(f"IK n / NIK n: targets per IK measurement (ours at min(B, {IK_MAX_BATCH:,}), Newton at "
          f"min(B, {NEWTON_IK_MAX_BATCH:,})); total run time {time.perf_counter() - started:.0f} s")
    print(json.dumps({"bench": "kinematics", "machine": info, "rows": rows}))


if __name__ == "__main__":
    main()
