"""The sample line on physics for 30 simulated minutes against the line model's prediction (issue 15, point 6).

Runs the runtime (`Twin(physics=True)`) on a simulated clock at the demo's 30 Hz tick, counts the parts into
the sink's bin, and compares the throughput with `run_whatif` on the same layout (30 replications, its 95 %
confidence interval); prints the CPU the runtime used per simulated second, which is what the live demo spends
per wall second, and the slowest tick.

    .venv/bin/python bench/physics_demo.py [--minutes 30] [--replications 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from twin.line.model import read_line
from twin.line.whatif import run_whatif
from twin.sample_factory.scene import build_sample_factory
from twin.scenes import open_layout
from twin.sim.runtime import Twin

TICK_HZ = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--replications", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        layout = build_sample_factory(Path(folder))
        prediction = run_whatif(read_line(open_layout(layout)), replications=args.replications,
                                hours=args.minutes / 60.0, seed=args.seed, device="cpu")
        twin = Twin(layout, physics=True, device="cpu", seed=args.seed)
        ticks = int(args.minutes * 60.0 * TICK_HZ)
        cpu_start, wall_start, slowest = time.process_time(), time.perf_counter(), 0.0
        for tick in range(1, ticks + 1):
            started = time.perf_counter()
            twin.step(sim_time=tick / TICK_HZ)
            slowest = max(slowest, time.perf_counter() - started)
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    throughput = twin.physics.parts_in / (args.minutes / 60.0)
    predicted = prediction.points[0]["kpis"]["throughput_per_hour"]
    print(f"physics: {twin.physics.parts_in} parts in {args.minutes:g} simulated min = {throughput:.1f} parts/h "
          f"({twin.physics.health()})")
    print(f"line model: {predicted}")
    print(f"runtime: {wall:.1f} s wall, {cpu:.1f} s CPU for {args.minutes * 60:.0f} simulated s: "
          f"{cpu / (args.minutes * 60):.3f} core at real time, {args.minutes * 60 / wall:.1f}x real time; "
          f"slowest tick {slowest * 1000:.1f} ms (budget {1000 / TICK_HZ:.1f} ms)")


if __name__ == "__main__":
    main()
