"""The sample line on physics for 30 simulated minutes against the line model's prediction (issue 15, point 6).

For each seed: runs the runtime (`Twin(physics=True, seed=s)`) on a simulated clock at the demo's 30 Hz tick,
counts the parts into the sink's bin, and compares the throughput with `run_whatif` on the same layout and
horizon (30 replications of the study with seed s, its 95 % confidence interval). Physics draws the random
numbers of that study's replication 0 (twin.sim.line_random), so `paired` is what the line model says this very
run should give; a single run is one draw, so the row that should agree with the prediction is the mean over
seeds. Prints the CPU the runtime used per simulated second (what the live demo spends per wall second), the
realtime factor and the slowest tick, and the load average, which on a shared machine decides the wall figures.
The sample's robots run their taught routes with their grippers on physics and every failed grip is counted;
`--robots kinematic` takes the grippers off the layout, so the robots move parts kinematically in their times.

    .venv/bin/python bench/physics_demo.py [--minutes 30] [--seeds 1 2 3] [--jobs 3] [--replications 30]
        [--robots gripper|kinematic]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from scipy import stats

TICK_HZ = 30.0


def run_seed(seed: int, minutes: float, replications: int, robots: str = "gripper", device: str = "cpu") -> dict:
    from twin.line.model import read_line
    from twin.line.whatif import run_whatif
    from twin.sample_factory.scene import build_sample_factory
    from twin.scenes import open_layout
    from twin.sim.runtime import Twin

    hours = minutes / 60.0
    with tempfile.TemporaryDirectory() as folder:
        layout = build_sample_factory(Path(folder))
        if robots == "kinematic":
            _without_grippers(layout)
        model = read_line(open_layout(layout))
        prediction = run_whatif(model, replications=replications, hours=hours, seed=seed, device=device)
        paired = run_whatif(model, replications=1, hours=hours, seed=seed, device=device)
        twin = Twin(layout, physics=True, device=device, seed=seed)
        ticks = int(minutes * 60.0 * TICK_HZ)
        cpu_start, wall_start, slowest = time.process_time(), time.perf_counter(), 0.0
        for tick in range(1, ticks + 1):
            started = time.perf_counter()
            twin.step(sim_time=tick / TICK_HZ)
            slowest = max(slowest, time.perf_counter() - started)
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    assert twin.physics is not None
    predicted = prediction.points[0]["kpis"]["throughput_per_hour"]
    throughput = twin.physics.parts_in / hours
    return {"seed": seed, "physics": throughput, "paired": paired.points[0]["kpis"]["throughput_per_hour"]["mean"],
            "mean": predicted["mean"], "low": predicted["low"], "high": predicted["high"],
            "agree": predicted["low"] <= throughput <= predicted["high"], "health": twin.physics.health(),
            "grip_faults": {robot.path.rsplit("/", 1)[1]: robot.program.faults for robot in twin.physics.robots
                            if robot.program is not None},
            "cpu_share": cpu / (minutes * 60.0), "realtime": minutes * 60.0 / wall, "slowest_ms": slowest * 1000}


def _without_grippers(layout: str) -> None:
    """Take the grippers off the layout's robots (their tool links' twin:gripper:type): physics then runs them
    kinematically, as the line model does."""
    from twin.scenes import open_layout

    stage = open_layout(layout)
    for prim in stage.Traverse():
        if prim.GetAttribute("twin:gripper:type").HasAuthoredValue():
            prim.RemoveProperty("twin:gripper:type")
    stage.GetRootLayer().Save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--replications", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=1, help="seeds run side by side, one process each")
    parser.add_argument("--robots", choices=("gripper", "kinematic"), default="gripper",
                        help="robots gripping on physics (the layout as built), or moving parts kinematically")
    parser.add_argument("--device", default="cpu", help="Warp device of the physics and the line model: cpu, cuda:0")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_seed, args.seeds, [args.minutes] * len(args.seeds),
                             [args.replications] * len(args.seeds), [args.robots] * len(args.seeds),
                             [args.device] * len(args.seeds)))
    print(f"{args.robots} robots, {args.minutes:g} simulated minutes at {TICK_HZ:g} Hz ticks; "
          f"load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores, {args.jobs} run(s) side by side")
    print("| seed | physics parts/h | paired replication | prediction (95 % CI) | agree | lost | cpu share "
          "| realtime factor | slowest tick ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['seed']} | {row['physics']:.0f} | {row['paired']:.0f} | {row['mean']:.1f} "
              f"({row['low']:.1f}-{row['high']:.1f}) | {'yes' if row['agree'] else 'no'} | "
              f"{row['health']['parts_lost']} | {row['cpu_share']:.3f} | {row['realtime']:.1f}x | "
              f"{row['slowest_ms']:.0f} |")
    if len(rows) > 1:  # the mean over seeds and its own 95 % interval against the prediction of seed 1's study
        values = [row["physics"] for row in rows]
        mean, half = statistics.mean(values), stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(
            values) ** 0.5
        first = rows[0]
        print(f"| mean of {len(rows)} | {mean:.1f} ({mean - half:.1f}-{mean + half:.1f}) | "
              f"{statistics.mean(row['paired'] for row in rows):.1f} | {first['mean']:.1f} "
              f"({first['low']:.1f}-{first['high']:.1f}) | "
              f"{'yes' if mean - half <= first['high'] and first['low'] <= mean + half else 'no'} | | "
              f"{statistics.mean(row['cpu_share'] for row in rows):.3f} | "
              f"{statistics.mean(row['realtime'] for row in rows):.1f}x | |")
    for row in rows:
        print(f"seed {row['seed']}: grip faults {row['grip_faults'] or 'none (no gripper robots)'}")


if __name__ == "__main__":
    main()
