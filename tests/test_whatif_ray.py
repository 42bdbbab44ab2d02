"""What-if studies on a real local Ray cluster (two CPUs on 127.0.0.1, started here): the same KPIs as in
process for the same seed, progress as batches finish, a killed worker's batch run again, and the REST job of
`twin serve --ray-address`."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK
from twin.cli import build_parser
from twin.line.distributed import simulate_on_ray
from twin.line.model import read_line
from twin.line.whatif import SweepParameter, run_whatif, sweep_variants
from twin.scenes.layout import open_layout
from twin.server.app import create_app
from twin.sim.runtime import Twin

ray = pytest.importorskip("ray", reason="the Ray extra: pip install -e '.[ray]'")
psutil = pytest.importorskip("psutil")
SLOW = pytest.mark.slow  # a Ray cluster takes 10 to 20 s to start on two busy cores

MACHINING = "/Factory/Line/Machining"
# 4 points x 64 replications: two batches of 128 variants (MIN_BATCH_VARIANTS), one per worker
STUDY = {"sweep": [SweepParameter(MACHINING, "twin:cycleTime", [6.0, 7.5, 9.0, 12.0])], "replications": 64,
         "hours": 1.0, "seed": 5}


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray cluster's GCS address; this process stays connected to it for the module."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def model(sample_layout):
    return read_line(open_layout(sample_layout))


@pytest.fixture(scope="module")
def in_process(model):
    return run_whatif(model, device="cpu", **STUDY)


def assert_same_kpis(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> None:
    assert expected.keys() == actual.keys()
    for name, values in expected.items():
        np.testing.assert_array_equal(actual[name], values, err_msg=name)  # equal, NaN where NaN: not close


@SLOW
def test_study_on_ray_equals_the_in_process_study(cluster, model, in_process):
    seen: list[float] = []
    on_ray = run_whatif(model, executor="ray", ray_address=cluster, progress=seen.append, **STUDY)
    assert on_ray.device == "cpu"
    assert on_ray.points == in_process.points  # every summary, interval and bottleneck vote
    assert_same_kpis(in_process.kpis, on_ray.kpis)
    assert seen == [0.5, 1.0]  # as each of the two batches finished
    slower = next(p for p in on_ray.points if p["values"][f"{MACHINING}.twin:cycleTime"] == 12.0)
    assert slower["kpis"]["bottleneck"]["prim"] == MACHINING  # the sweep did reach the workers


@SLOW
def test_a_killed_worker_loses_nothing(cluster, model, in_process):
    _, variants = sweep_variants(model, STUDY["sweep"], STUDY["replications"])
    outcome: dict = {}

    def study() -> None:
        outcome["run"] = simulate_on_ray(model, variants, replications=STUDY["replications"], horizon=3600.0,
                                         warmup=0.0, steps=16, seed=STUDY["seed"], device="cpu", batch_points=1)

    thread = threading.Thread(target=study)
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline:
        for process in psutil.process_iter(["cmdline"]):
            if (process.info["cmdline"] or [""])[0].startswith("ray::simulate_batch"):  # running a batch now
                os.kill(process.pid, signal.SIGKILL)
                killed = process.pid
                break
        time.sleep(0.02)
    thread.join(120)
    assert killed is not None, "no worker was seen running a batch"
    run = outcome["run"]
    assert run.batches == 4 and killed not in run.worker_pids  # its batch ran again on another worker
    assert_same_kpis(in_process.kpis, run.kpis)


@SLOW
def test_serve_with_a_ray_address_runs_rest_jobs_on_the_cluster(cluster, sample_layout, model):
    args = build_parser().parse_args(["serve", str(sample_layout), "--ray-address", cluster])
    body = {"sweep": [{"prim": MACHINING, "attr": "twin:cycleTime", "values": [7.5, 20.0]}], "replications": 8,
            "hours": 0.5, "seed": 3}
    with TestClient(create_app(Twin(sample_layout), tick_hz=10, ray_address=args.ray_address),
                    base_url=LOOPBACK) as client:
        job = client.post("/api/whatif", json=body).json()
        deadline = time.monotonic() + 60
        while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.get(f"/api/whatif/{job['id']}").json()
    assert job["status"] == "done", job["error"]
    expected = run_whatif(model, sweep=[SweepParameter(MACHINING, "twin:cycleTime", [7.5, 20.0])], replications=8,
                          hours=0.5, seed=3, device="cpu")
    assert job["result"]["points"] == json.loads(json.dumps(expected.as_dict()["points"]))


@pytest.mark.parametrize("address", ["ray:/host:1", "host", "auto; rm -rf /", "host:port"])
def test_a_bad_ray_address_is_refused_naming_the_option(address, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "factory.usda", "--ray-address", address])
    error = capsys.readouterr().err
    assert "--ray-address" in error and "ray://HOST:PORT" in error and repr(address) in error
