"""Batched line simulation: many variants of one line, one Warp launch, state kept between runs.

A variant is one set of parameter values and one replication (its own random streams). The
simulation is a Model / State split: `LineModel` is immutable; `LineSimulation` owns the mutable
state arrays and advances them with `run(until)`, which may be called repeatedly (progress is
reported between calls, and a playback reads the log of one variant).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import warp as wp

from twin.kinematics.device import default_device

from . import kernels
from .model import COLUMN, LineModel

STATES = ("idle", "working", "blocked", "starved", "down", "setup")
LOG_CAPACITY = 400_000


@dataclass(frozen=True)
class Variant:
    """Parameter overrides {(prim, attribute): value} and the replication whose random streams it uses."""

    changes: tuple[tuple[str, str, float], ...]
    replication: int


def variant_parameters(model: LineModel, variants: Sequence[Variant]) -> np.ndarray:
    """(n_variants, n_elements, n_columns): the model's table with each variant's overrides, checked."""
    base = model.parameters()
    table = np.repeat(base[None], len(variants), axis=0)
    for v, variant in enumerate(variants):
        for prim, attribute, value in variant.changes:
            if prim not in model.index:
                raise model.error(prim, "is not an element of the line")
            if attribute not in COLUMN:
                raise model.error(prim, f"{attribute} is not a simulation parameter (one of {', '.join(COLUMN)})")
            table[v, model.index[prim], COLUMN[attribute]] = float(value)
    for v in _first_of_each(variants).values():
        model.check_parameters(table[v])
    return table


def _first_of_each(variants: Sequence[Variant]) -> dict[tuple, int]:
    """One variant index per distinct set of changes (replications share their parameters)."""
    first: dict[tuple, int] = {}
    for v, variant in enumerate(variants):
        first.setdefault(variant.changes, v)
    return first


class LineSimulation:
    """The state of `len(variants)` copies of the line, advanced together on `device`."""

    def __init__(self, model: LineModel, variants: Sequence[Variant], *, seed: int = 1,
                 device: str | None = None, record_variant: int = -1, start_time: float = 0.0,
                 threads: int | None = None):
        """`threads` caps the CPU threads a run uses (default: one per core); a Ray task holds one CPU."""
        self.model = model
        self.threads = threads
        self.variants = list(variants)
        self.device = device or default_device()
        self.seed = int(seed)
        n, v = len(model), len(self.variants)
        parameters = variant_parameters(model, self.variants)
        capacity = np.array([[model.capacity(e, parameters[i]) for e in range(n)] for i in range(v)], np.int32)
        self.queue_size = max(1, int(capacity.max()))
        successors = [model.successors(e) for e in range(n)]
        predecessors = [model.predecessors(e) for e in range(n)]
        with wp.ScopedDevice(self.device):
            self.arrays = kernels.LineArrays()
            self.arrays.kind = wp.array([el.kind for el in model.elements], dtype=wp.int32)
            self.arrays.routing = wp.array([el.routing for el in model.elements], dtype=wp.int32)
            self.arrays.distribution = wp.array([el.distribution for el in model.elements], dtype=wp.int32)
            self.arrays.successor_start, self.arrays.successors = _csr(successors)
            self.arrays.predecessor_start, self.arrays.predecessors = _csr(predecessors)
            self.arrays.parameters = wp.array(parameters, dtype=wp.float64)
            self.arrays.capacity = wp.array(capacity, dtype=wp.int32)
            self.arrays.n_elements = n
            self.arrays.queue_size = self.queue_size
            self.state = _state_arrays(v, n, self.queue_size)
            self.totals = _totals_arrays(v, n)
            self.log = kernels.PlaybackLog()
            self.log.variant = int(record_variant)
            size = LOG_CAPACITY if record_variant >= 0 else 1
            self.log.count = wp.zeros(1, dtype=wp.int32)
            for name, dtype in (("time", wp.float64), ("element", wp.int32), ("what", wp.int32),
                                ("value", wp.int32)):
                setattr(self.log, name, wp.zeros(size, dtype=dtype))
            replication = wp.array([variant.replication for variant in self.variants], dtype=wp.int32)
            wp.launch(kernels.reset_line, dim=(v, n), inputs=[self.arrays, self.state, wp.uint32(self.seed),
                                                              replication, wp.float64(start_time)])
        self.parameters = parameters
        self.start_time = float(start_time)
        self.warmup = float(start_time)

    @property
    def clock(self) -> float:
        """Simulated time every variant has reached (seconds)."""
        return float(self.state.clock.numpy().min())

    def run(self, until: float, *, warmup: float | None = None) -> None:
        """Advance every variant to `until` seconds; statistics count from `warmup` on."""
        if warmup is not None:
            self.warmup = float(warmup)
        count = len(self.variants)
        workers = _workers(self.device, count, self.threads)
        bounds = np.linspace(0, count, workers + 1).astype(int)

        def launch(first: int, last: int) -> None:
            wp.launch(kernels.run_line, dim=last - first, device=self.device,
                      inputs=[self.arrays, self.state, self.totals, self.log, wp.float64(until),
                              wp.float64(self.warmup), int(first)])

        if workers == 1:
            launch(0, count)
        else:  # Warp runs a CPU launch on one thread: one slice of the variants per core
            with ThreadPoolExecutor(workers - 1) as pool:
                futures = [pool.submit(launch, int(a), int(b)) for a, b in zip(bounds[:-2], bounds[1:-1], strict=True)]
                launch(int(bounds[-2]), int(bounds[-1]))
                for future in futures:
                    future.result()
        wp.synchronize_device(self.device)
        failed = np.flatnonzero(self.state.failed.numpy())
        if len(failed):
            raise RuntimeError(f"line simulation stopped advancing for variants {failed[:5].tolist()}: "
                               "a zero-time loop in the model")

    def totals_numpy(self) -> dict[str, np.ndarray]:
        return {name: getattr(self.totals, name).numpy() for name in
                ("state_time", "finished", "scrapped", "released", "out", "wip_time", "lead_time")}

    def log_numpy(self) -> dict[str, np.ndarray]:
        count = min(int(self.log.count.numpy()[0]), len(self.log.time))
        return {name: getattr(self.log, name).numpy()[:count] for name in ("time", "element", "what", "value")}

    def log_initial_parts(self, placed: list[tuple[int, int]]) -> None:
        """Playback log records for parts put into the line before it ran (a live start): entered at 0."""
        if self.log.variant < 0 or not placed:
            return
        count = min(len(placed), len(self.log.time))
        arrays = {name: getattr(self.log, name).numpy() for name in ("time", "element", "what", "value")}
        arrays["time"][:count] = self.start_time
        arrays["element"][:count] = [e for e, _ in placed[:count]]
        arrays["what"][:count] = kernels.LOG_ENTER
        arrays["value"][:count] = [part for _, part in placed[:count]]
        with wp.ScopedDevice(self.device):
            for name, values in arrays.items():
                setattr(self.log, name, wp.array(values, dtype=getattr(self.log, name).dtype))
            self.log.count = wp.array([count], dtype=wp.int32)

    def read_state(self) -> dict[str, np.ndarray]:
        """The state arrays as numpy, to inspect or edit (`write_state` puts them back)."""
        return {name: getattr(self.state, name).numpy() for name in _STATE_FIELDS}

    def write_state(self, values: dict[str, np.ndarray]) -> None:
        with wp.ScopedDevice(self.device):
            for name, array in values.items():
                current = getattr(self.state, name)
                setattr(self.state, name, wp.array(np.ascontiguousarray(array), dtype=current.dtype))


def _workers(device: str, count: int, threads: int | None = None) -> int:
    if not str(device).startswith("cpu"):
        return 1
    return max(1, min(threads or os.cpu_count() or 1, count // 8 or 1))


def _csr(lists: list[list[int]]) -> tuple[wp.array, wp.array]:
    start = np.zeros(len(lists) + 1, np.int32)
    start[1:] = np.cumsum([len(items) for items in lists])
    flat = np.array([i for items in lists for i in items] or [0], np.int32)
    return wp.array(start, dtype=wp.int32), wp.array(flat, dtype=wp.int32)


_STATE_FIELDS = {
    "clock": (wp.float64, 1), "wip": (wp.int32, 1), "next_part": (wp.int32, 1), "failed": (wp.int32, 1),
    **{name: (wp.int32, 2) for name in ("count", "reserved", "claimed", "head", "phase", "turn", "since_setup",
                                        "robot_from", "robot_to", "booked", "movers")},
    **{name: (wp.float64, 2) for name in ("front_ready", "waiting_since", "event_time", "last_entry", "last_leave",
                                          "remaining", "to_failure", "work_start")},
    "rng": (wp.uint32, 2),
    "queue_entry": (wp.float64, 3), "queue_birth": (wp.float64, 3), "queue_part": (wp.int32, 3),
}


def _state_arrays(variants: int, elements: int, queue: int) -> kernels.LineState:
    state = kernels.LineState()
    shapes = {1: (variants,), 2: (variants, elements), 3: (variants, elements, queue)}
    for name, (dtype, ndim) in _STATE_FIELDS.items():
        setattr(state, name, wp.zeros(shapes[ndim], dtype=dtype))
    return state


def _totals_arrays(variants: int, elements: int) -> kernels.LineTotals:
    totals = kernels.LineTotals()
    totals.state_time = wp.zeros((variants, elements, kernels.N_STATES), dtype=wp.float64)
    totals.finished = wp.zeros((variants, elements), dtype=wp.int32)
    totals.scrapped = wp.zeros((variants, elements), dtype=wp.int32)
    for name, dtype in (("released", wp.int32), ("out", wp.int32), ("wip_time", wp.float64),
                        ("lead_time", wp.float64)):
        setattr(totals, name, wp.zeros(variants, dtype=dtype))
    return totals
