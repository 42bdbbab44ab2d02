"""What-if studies on a Ray cluster: a study's points split into batches, one Ray task per batch.

A batch keeps every replication of its points, and a variant's random streams come from (seed,
replication, element) alone, so a batch computes exactly the per-variant KPIs that the whole study
computes in one process: common random numbers hold across batches and workers, and the merged
result equals the in-process one. Ray runs a batch again when its worker dies (`max_retries`).

Ray is imported here only, and only when a study runs on it: the twin runs without Ray installed
(`pip install 'factory-twin[ray]'`). Workers import `twin` themselves: a remote cluster needs the
same version of the twin installed on its nodes (docs/scale.md).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.core.errors import TwinError

from .kpis import variant_kpis
from .model import LineModel
from .simulation import LineSimulation, Variant

MAX_RETRIES = 3  # a batch whose worker died runs again up to this many times
BATCHES_PER_WORKER = 4  # enough batches that a slow or restarted worker does not hold up the study
MIN_BATCH_VARIANTS = 128  # below this a task costs more in Ray's overhead than in simulation


@dataclass
class RayRun:
    """Per-variant KPIs in the study's order, and where and how they were computed."""

    kpis: dict[str, np.ndarray]
    device: str
    batches: int
    worker_pids: set[int]
    assumptions: list[str]  # a live start's notes, from the workers' copies of it


ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9.\-]+:\d{1,5}|auto|local")


def check_address(address: str) -> str:
    """`address` if Ray can take it: auto, local, ray://HOST:PORT (Ray client) or HOST:PORT (the cluster's GCS)."""
    if not ADDRESS.fullmatch(address):
        raise TwinError(f"Ray address: expected auto, local, ray://HOST:PORT or HOST:PORT, got {address[:80]!r}")
    return address


def connect(address: str | None) -> Any:
    """The `ray` module, connected: an existing connection is used as it is; otherwise `ray.init(address)`
    (None: RAY_ADDRESS or a new local cluster; "auto": the cluster on this machine; "ray://host:10001" or
    "host:6379": a remote one)."""
    try:
        import ray
    except ImportError:
        raise TwinError("executor='ray' needs Ray: pip install 'factory-twin[ray]'") from None
    if address is not None:
        check_address(address)
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise TwinError(f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: "
                            f"{error}") from None
    return ray


def batch_bounds(points: int, replications: int, workers: int, batch_points: int | None = None) -> list[int]:
    """Point indices where batches start, and the end: whole points per batch, about
    BATCHES_PER_WORKER batches per worker, none smaller than MIN_BATCH_VARIANTS unless the study is."""
    if batch_points is None:
        batches = min(points, BATCHES_PER_WORKER * max(1, workers),
                      max(1, points * replications // MIN_BATCH_VARIANTS))
        batch_points = math.ceil(points / max(1, batches))
    if batch_points < 1:
        raise TwinError(f"batch_points must be at least 1, got {batch_points}")
    return [*range(0, points, batch_points), points]


def simulate_batch(model: LineModel, variants: Sequence[Variant], seed: int, device: str, horizon: float,
                   warmup: float, steps: int, start) -> tuple[dict[str, np.ndarray], str, list[str], int]:
    """One batch on one worker: (per-variant KPIs, device, a live start's notes, the worker's PID).

    It runs in the study's `steps` slices of simulated time, as the in-process study does: slices round
    the floating-point sums differently, and the results must be equal, not just close."""
    threads = 1 if device.startswith("cpu") else None  # the task holds one CPU
    simulation = LineSimulation(model, variants, seed=seed, device=device, threads=threads)
    if start is not None:
        start.apply(simulation)
    for step in range(1, steps + 1):
        simulation.run(horizon * step / steps, warmup=warmup)
    kpis = variant_kpis(model, simulation.parameters, simulation.totals_numpy(), horizon - warmup)
    return kpis, str(simulation.device), list(start.assumptions) if start is not None else [], os.getpid()


def simulate_on_ray(model: LineModel, variants: Sequence[Variant], *, replications: int, horizon: float,
                    warmup: float, steps: int, seed: int, device: str | None = None, start=None,
                    address: str | None = None, progress: Callable[[float], None] | None = None,
                    batch_points: int | None = None,
                    max_retries: int = MAX_RETRIES) -> RayRun:
    """Simulate `variants` (points x `replications`, replications innermost) as batches of points on Ray.

    `device`: "cpu" tasks take one CPU each, "cuda" tasks one GPU each; None picks "cuda" when the
    cluster has GPUs. `progress` gets the finished share of variants as batches finish; if it raises,
    the batches still running are cancelled and the error propagates.
    """
    ray = connect(address)
    resources = ray.cluster_resources()
    if device is None:
        device = "cuda" if resources.get("GPU", 0) >= 1 else "cpu"
    on_gpu = str(device).startswith("cuda")
    if on_gpu and resources.get("GPU", 0) < 1:
        raise TwinError(f"device {device!r}: the Ray cluster has no GPU")
    workers = int(resources.get("GPU" if on_gpu else "CPU", 1))
    points = len(variants) // replications
    bounds = batch_bounds(points, replications, workers, batch_points)
    task = ray.remote(simulate_batch).options(
        max_retries=max_retries, **({"num_gpus": 1} if on_gpu else {"num_cpus": 1}))
    model_ref = ray.put(model)
    worker_device = "cuda" if on_gpu else str(device)  # Ray shows each GPU task its own GPU as cuda:0
    pending = {task.remote(model_ref, list(variants[a * replications:b * replications]), seed, worker_device,
                           horizon, warmup, steps, start): index
               for index, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=False))}
    results: dict[int, tuple] = {}
    done_variants = 0
    try:
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(finished[0])
            try:
                results[index] = ray.get(finished[0])
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.RaySystemError) as error:
                a, b = bounds[index], bounds[index + 1]
                raise TwinError(f"points {a} to {b - 1} failed on Ray after {max_retries} retries: "
                                f"{error}") from None
            done_variants += len(results[index][0]["parts_out"])
            if progress is not None:
                progress(done_variants / len(variants))
    finally:
        for ref in pending:
            ray.cancel(ref)
    ordered = [results[index] for index in range(len(results))]
    kpis = {name: np.concatenate([batch[0][name] for batch in ordered]) for name in ordered[0][0]}
    assumptions = list(dict.fromkeys(note for batch in ordered for note in batch[2]))
    return RayRun(kpis, ordered[0][1], len(ordered), {batch[3] for batch in ordered}, assumptions)
