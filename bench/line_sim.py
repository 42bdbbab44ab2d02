"""Line simulation: simulated hours per wall second, Warp batch vs the SimPy model of the same line.

The sample factory's line, 8 simulated hours per replication, for 1, 100 and 1,000 replications.
The peer is the SimPy reference of tests/line_reference.py on the same line and horizon; its cost
per replication is constant, so it runs min(replications, 10) of them. Warp's figures exclude the
one-off kernel compilation (reported separately). Last line: one JSON object (../shared/README.md).

    python bench/line_sim.py [--device cuda:0] [--sizes 1,100,1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import warp as wp
from machine import warp_machine  # bench/machine.py: scripts run as `python bench/NAME.py`

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the SimPy reference lives in tests/

from tests.line_reference import simulate_sample_line  # noqa: E402
from twin.line.model import read_line  # noqa: E402
from twin.line.simulation import LineSimulation, Variant  # noqa: E402
from twin.sample_factory.scene import build_sample_factory  # noqa: E402
from twin.scenes.layout import open_layout  # noqa: E402

HOURS = 8.0
PEER_MAX = 10


def warp_rate(model, replications: int, device: str) -> tuple[float, float]:
    """(simulated hours per second, mean parts out per replication)."""
    simulation = LineSimulation(model, [Variant((), r) for r in range(replications)], seed=11, device=device)
    started = time.perf_counter()
    simulation.run(HOURS * 3600.0)
    elapsed = time.perf_counter() - started
    out = simulation.totals_numpy()["out"]
    return replications * HOURS / elapsed, float(out.mean())


def peer_rate(model, replications: int) -> tuple[float, float, int]:
    runs = min(replications, PEER_MAX)
    started = time.perf_counter()
    results = [simulate_sample_line(model, HOURS, seed) for seed in range(runs)]
    elapsed = time.perf_counter() - started
    return runs * HOURS / elapsed, sum(r["throughput_per_hour"] for r in results) / runs * HOURS, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="1,100,1000")
    args = parser.parse_args()
    wp.init()
    info = warp_machine(args.device)
    with tempfile.TemporaryDirectory() as folder:
        model = read_line(open_layout(build_sample_factory(Path(folder))))
    print(f"machine: {info}; {HOURS:g} simulated hours per replication", flush=True)
    started = time.perf_counter()
    LineSimulation(model, [Variant((), 0)], device=args.device).run(60.0)
    print(f"first launch (kernel compile or cache load): {time.perf_counter() - started:.1f} s", flush=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rate, out = warp_rate(model, size, args.device)
        peer, peer_out, peer_runs = peer_rate(model, size)
        rows.append({"variants": size, "sim_hours_per_s": round(rate, 1), "peer_sim_hours_per_s": round(peer, 2),
                     "ratio_to_peer": round(rate / peer, 1), "peer_replications": peer_runs,
                     "parts_out_per_replication": round(out, 1), "peer_parts_out_per_replication": round(peer_out, 1)})
        print(f"{size:>6,} variants: warp {rate:>10,.1f} sim h/s  simpy {peer:>7,.2f} sim h/s ({peer_runs} runs)  "
              f"x{rate / peer:,.1f}  parts out/replication {out:.1f} vs {peer_out:.1f}", flush=True)
    print(json.dumps({"bench": "line_sim", "machine": info, "rows": rows}))


if __name__ == "__main__":
    main()
