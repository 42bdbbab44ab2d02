"""What-if jobs for the server: queued, run one at a time on a worker thread, results kept in memory.

A study can take seconds to minutes; the REST API starts one, reports its progress, and serves its
results. Running one job at a time bounds the CPU a server spends on studies (Warp's CPU launches
already use every core), and a bounded queue and history bound its memory.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from twin.core.errors import TwinError

from .live import LiveStart
from .model import LineModel
from .simulation import Variant, variant_parameters
from .sweep import SweepParameter
from .whatif import WhatIfResult, check_horizon, run_whatif, sweep_variants, too_many_variants

log = logging.getLogger("twin.whatif")
MAX_QUEUED = 4
KEEP = 20  # finished jobs kept for their results
MAX_JOB_VARIANTS = 20_000  # about 35 MB of simulation state for the sample line
MAX_STATE_BYTES = 512 * 2**20
STATE_BYTES_PER_SLOT = 20  # entry and release times (float64) and a part id per queue place


class Cancelled(Exception):
    """The server is stopping: a running study ends at its next slice of simulated time."""


@dataclass
class WhatIfRequest:
    sweep: list[SweepParameter] = field(default_factory=list)
    replications: int = 30
    hours: float = 8.0
    warmup_hours: float = 0.0
    seed: int = 1
    start: str = "empty"  # or "live"


@dataclass
class Job:
    id: str
    request: WhatIfRequest
    user: str
    status: str = "queued"  # running, done, failed
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    result: WhatIfResult | None = None
    live_start: LiveStart | None = None

    def as_dict(self, with_result: bool = True) -> dict:
        out = {"id": self.id, "status": self.status, "progress": round(self.progress, 4), "error": self.error,
               "created": self.created, "finished": self.finished, "user": self.user,
               "request": {"sweep": [{"prim": p.prim, "attr": p.attribute, "values": list(p.values)}
                                     for p in self.request.sweep],
                           "replications": self.request.replications, "hours": self.request.hours,
                           "warmup_hours": self.request.warmup_hours, "seed": self.request.seed,
                           "start": self.request.start}}
        if with_result and self.result is not None:
            out["result"] = self.result.as_dict()
        return out


class WhatIfJobs:
    def __init__(self, model: LineModel, live_start=None, device: str | None = None, ray_address: str | None = None):
        """`live_start()` returns a LiveStart of the plant now (the server reads its runtime cache); with a
        `ray_address` studies run as batches on that Ray cluster (twin.line.distributed), not in this process."""
        self.model = model
        self.live_start = live_start
        self.device = device
        self.ray_address = ray_address
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="twin-whatif")
        self._ids = itertools.count(1)
        self.stopping = threading.Event()

    def submit(self, request: WhatIfRequest, user: str) -> Job:
        """Check a study, then queue it."""
        self.check(request)
        return self.enqueue(request, user)

    def check(self, request: WhatIfRequest) -> None:
        """Refuse a study that would cost too much, counting its size before expanding it; the server calls
        this on a worker thread, since checking 20,000 points' parameters takes a while."""
        check_horizon(request.hours, request.warmup_hours, live=request.start == "live")
        if problem := too_many_variants(request.sweep, request.replications, MAX_JOB_VARIANTS):
            raise TwinError(f"{problem} a server study may run; run it in-process with run_whatif")
        points, _ = sweep_variants(self.model, request.sweep, request.replications)
        variants = len(points) * request.replications
        tables = variant_parameters(self.model, [Variant(point, 0) for point in points])  # bad values: now
        queue = max(self.model.capacity(e, table) for table in tables for e in range(len(self.model)))
        state_bytes = variants * len(self.model) * max(1, queue) * STATE_BYTES_PER_SLOT
        if state_bytes > MAX_STATE_BYTES:
            raise TwinError(f"this study would hold {state_bytes / 2**20:,.0f} MiB of simulation state (capacities "
                            f"up to {queue:,} parts); a server study may hold {MAX_STATE_BYTES / 2**20:,.0f} MiB")
        if request.start not in ("empty", "live"):
            raise TwinError(f"start must be 'empty' or 'live', got {request.start!r}")
        if request.start == "live" and self.live_start is None:
            raise TwinError("this server has no live signals to start from")

    def enqueue(self, request: WhatIfRequest, user: str) -> Job:
        """Queue a checked study (on the server's event loop: a live start reads the runtime cache it writes)."""
        with self.lock:
            waiting = sum(job.status in ("queued", "running") for job in self.jobs.values())
            if waiting >= MAX_QUEUED:
                raise TwinError(f"{waiting} what-if jobs are already waiting or running; try again later")
            job = Job(f"w{next(self._ids)}", request, user)
            if request.start == "live":
                job.live_start = self.live_start()  # the plant as it is now, not when the job gets its turn
            self.jobs[job.id] = job
            while len(self.jobs) > KEEP + MAX_QUEUED:
                self.jobs.popitem(last=False)
        self.pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise KeyError(f"no what-if job {job_id!r}") from None

    def _run(self, job: Job) -> None:
        job.status = "running"
        request = job.request

        def progress(share: float) -> None:
            job.progress = share
            if self.stopping.is_set():
                raise Cancelled("the server stopped")

        try:
            job.result = run_whatif(self.model, sweep=request.sweep, replications=request.replications,
                                    hours=request.hours, warmup_hours=request.warmup_hours, seed=request.seed,
                                    device=self.device, start=job.live_start, progress=progress,
                                    executor="local" if self.ray_address is None else "ray",
                                    ray_address=self.ray_address)
            job.result.kpis = {}  # per-variant arrays: the summaries keep what the API serves
            job.status = "done"
        except Cancelled as error:
            job.status, job.error = "failed", str(error)
        except Exception as error:  # reported through the API; the server keeps running
            log.exception("what-if job %s failed", job.id)
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        job.finished = time.time()

    def shutdown(self) -> None:
        """Cancel queued studies and stop a running one at its next slice, so the server exits promptly."""
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
