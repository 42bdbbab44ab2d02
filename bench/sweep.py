"""What-if sweep on Ray: simulated hours per wall second with 1 and 2 Ray workers, peer the in-process study.

The sample factory's line, a sweep of the machining cycle time (100 points x 100 replications = 10,000
variants by default), `--hours` simulated hours each. For each worker count a fresh local Ray cluster with
that many CPUs runs the study (one task per batch, one CPU per task); the peer is run_whatif in this process
on the same study in the same run, using every core. Each Ray result is checked equal to the peer's. Worker
start-up is excluded: a small study runs first on each cluster. worker_cpu_share is the CPU time the workers got
over wall time x workers: below 1 where other work shares the cores. Last line: one JSON object with the rows,
the ratio of 2 workers to 1 and the target (>= 1.7).

    python bench/sweep.py [--variants 10000] [--replications 100] [--hours 2] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil  # installed with ray[default]
import ray
from machine import cpu  # bench/machine.py: scripts run as `python bench/NAME.py`

from twin.line.distributed import simulate_on_ray
from twin.line.model import read_line
from twin.line.whatif import SweepParameter, run_whatif, sweep_variants
from twin.sample_factory.scene import build_sample_factory
from twin.scenes.layout import open_layout

MACHINING = "/Factory/Line/Machining"
TARGET = 1.7  # 2 workers >= 1.7x one worker (issue 17)


def study(variants: int, replications: int, hours: float) -> dict:
    points = max(1, variants // replications)
    cycle_times = np.linspace(6.0, 12.0, points).round(4).tolist()
    return {"sweep": [SweepParameter(MACHINING, "twin:cycleTime", cycle_times)], "replications": replications,
            "hours": hours, "seed": 7}


def warm_up(model, workers: int) -> None:
    """Start every worker process and load the kernels there, as the in-process peer has them loaded."""
    _, variants = sweep_variants(model, study(16 * workers, 4, 0.1)["sweep"], 4)
    simulate_on_ray(model, variants, replications=4, horizon=360.0, warmup=0.0, steps=1, seed=1, device="cpu",
                    batch_points=1)


def worker_cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of every Ray worker process on this machine (their titles start with ray::)."""
    seconds = {}
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        if (process.info["cmdline"] or [""])[0].startswith("ray::") and process.info["cpu_times"]:
            seconds[process.pid] = process.info["cpu_times"].user + process.info["cpu_times"].system
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = read_line(open_layout(build_sample_factory(Path(folder))))
    work = study(args.variants, args.replications, args.hours)
    variants = len(work["sweep"][0].values) * args.replications
    sim_hours = variants * args.hours
    print(f"machine: {cpu()}; {variants:,} variants x {args.hours:g} simulated hours", flush=True)
    run_whatif(model, device="cpu", **study(64, 4, 0.1))  # kernels compiled or loaded from the cache
    started = time.perf_counter()
    peer = run_whatif(model, device="cpu", **work)
    peer_rate = sim_hours / (time.perf_counter() - started)
    print(f"in-process: {peer_rate:,.1f} sim h/s", flush=True)
    rows: list[dict] = []
    for workers in (int(w) for w in args.workers.split(",")):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        try:
            warm_up(model, workers)
            before = worker_cpu_seconds()
            started = time.perf_counter()
            result = run_whatif(model, executor="ray", device="cpu", **work)
            elapsed = time.perf_counter() - started
            used = sum(seconds - before.get(pid, 0.0) for pid, seconds in worker_cpu_seconds().items())
        finally:
            ray.shutdown()
        rate = sim_hours / elapsed
        rows.append({"workers": workers, "variants": variants, "sim_hours_per_s": round(rate, 1),
                     "ratio_to_one_worker": round(rate / rows[0]["sim_hours_per_s"], 2) if rows else 1.0,
                     "seconds": round(elapsed, 1), "worker_cpu_share": round(used / (elapsed * workers), 2),
                     "peer_in_process_sim_hours_per_s": round(peer_rate, 1),
                     "equal_to_in_process": result.points == peer.points})
        print(" ".join(f"{key}={value}" for key, value in rows[-1].items()), flush=True)
    ratio = next((row["ratio_to_one_worker"] for row in rows if row["workers"] == 2), None)
    print(json.dumps({"bench": "sweep", "machine": cpu(), "hours": args.hours, "rows": rows,
                      "ratio_2_workers_to_1": ratio, "target": TARGET,
                      "met": ratio is not None and ratio >= TARGET}))


if __name__ == "__main__":
    main()
