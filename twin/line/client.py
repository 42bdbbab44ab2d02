"""What-if studies on a running twin server, from Python: start one, wait for it, read its KPIs.

    client = WhatIfClient("http://127.0.0.1:8000", token=None)
    job = client.start(sweep=[SweepParameter("/Factory/Line/Machining", "twin:cycleTime", [6, 7, 8])],
                       replications=30, hours=8)
    result = client.wait(job["id"])          # the job with its "result"
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from twin.core.errors import TwinError

from .sweep import SweepParameter, whatif_request


class WhatIfError(TwinError):
    """The server refused or failed a what-if request; the message is the server's."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


class WhatIfClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None, query: str = ""):
        request = urllib.request.Request(f"{self.url}{path}{query}", method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                detail = json.loads(error.read()).get("detail")
            except (ValueError, AttributeError):
                detail = error.reason
            raise WhatIfError(error.code, detail if isinstance(detail, str) else json.dumps(detail)) from None

    def line(self) -> dict:
        return self._call("GET", "/api/line")

    def start(self, *, sweep: Sequence[SweepParameter] = (), replications: int = 30, hours: float = 8.0,
              warmup_hours: float = 0.0, seed: int = 1, start: str = "empty") -> dict:
        body = whatif_request(sweep=sweep, replications=replications, hours=hours, warmup_hours=warmup_hours,
                              seed=seed, start=start)
        return self._call("POST", "/api/whatif", body)

    def status(self, job_id: str) -> dict:
        return self._call("GET", f"/api/whatif/{job_id}")

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> dict:
        """The finished job; WhatIfError if it failed, TimeoutError if it takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if job["status"] == "done":
                return job
            if job["status"] == "failed":
                raise WhatIfError(500, job["error"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"what-if job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)

    def playback(self, job_id: str, *, point: int = 0, replication: int = 0, seconds: float = 300.0,
                 step: float = 0.5) -> dict:
        return self._call("GET", f"/api/whatif/{job_id}/playback",
                          query=f"?point={point}&replication={replication}&seconds={seconds}&step={step}")
