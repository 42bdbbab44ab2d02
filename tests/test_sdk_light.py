"""The SDK's two promises beyond tests/test_sdk.py: `twin.connect` runs in an interpreter that never loads Warp
or USD (a remote client installs and starts light), and an in-process twin reads back exactly what it stores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

import twin
from tests.helpers import serve_app
from twin.server.app import create_app
from twin.sim.runtime import Twin

PROBE = "/Factory/Line/Machining.twin:probe"
ARRAY = "/Factory/Line/Machining.twin:probes"

CLIENT = textwrap.dedent("""
    import json, sys
    import twin
    from twin.line.sweep import whatif_request

    url, key = sys.argv[1], sys.argv[2]
    with twin.connect(url) as plant:
        first = plant.read(key).value
        seen = []
        for update in plant.subscribe([key], idle_timeout=20):
            if key in update.signals:
                seen.append(update.signals[key].value)
                if len(seen) == 2:  # the snapshot, then a delta the server sent as the value moved
                    break
    sweep = [twin.SweepParameter("/Factory/Line/Machining", "twin:cycleTime", [6, 7])]
    body = whatif_request(sweep=sweep, replications=2, hours=1.0, warmup_hours=0.0, seed=1, start="empty")
    print(json.dumps({"read": first, "updates": seen, "sweep": body["sweep"],
                      "loaded": sorted(m for m in ("warp", "pxr", "newton") if m in sys.modules)}))
""")


def test_a_remote_client_never_loads_warp_or_usd(sample_layout):
    served = Twin(sample_layout)
    row = served.cache.add_signal(*PROBE.rsplit(".", 1))
    served.cache.write_signal(row, 1.5)
    stop = threading.Event()

    def count_up() -> None:  # a connector's writes, so the subscription sees deltas
        value = 1.5
        while not stop.wait(0.05):
            value += 1.0
            served.cache.write_signal(row, value)

    with serve_app(create_app(served, tick_hz=20)) as url:
        writer = threading.Thread(target=count_up, daemon=True)
        writer.start()
        try:
            done = subprocess.run([sys.executable, "-c", CLIENT, url, PROBE], capture_output=True, text=True,
                                  timeout=120, check=False)
        finally:
            stop.set()
            writer.join(2)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["read"] >= 1.5 and answer["read"] == int(answer["read"]) + 0.5
    first, second = answer["updates"]
    assert second > first >= answer["read"]
    assert answer["sweep"] == [{"prim": "/Factory/Line/Machining", "attr": "twin:cycleTime", "values": [6.0, 7.0]}]
    assert answer["loaded"] == []


def test_in_process_reads_are_the_stored_values(sample_layout):
    stored = [0.123456789, 1 / 3, math.nan, -2.000000001, 1e-9, 12345.678901234]
    source_time = time.time() - 10.123456789
    with twin.open(sample_layout) as plant:
        probe = plant.cache.add_signal(*PROBE.rsplit(".", 1))
        probes = plant.cache.add_signal(*ARRAY.rsplit(".", 1), width=len(stored))
        plant.cache.write_signal(probe, 0.123456789, source_time=source_time)
        plant.cache.write_signal(probes, stored, source_time=source_time)
        sample = plant.read(PROBE)
        assert sample.value == 0.123456789 and sample.time == source_time
        many = plant.read_many([ARRAY])[ARRAY]
        assert isinstance(many.value, np.ndarray)
        np.testing.assert_array_equal(many.value, stored)  # NaN stays NaN
        assert plant.read_many()[PROBE].value == 0.123456789
        plant.cache.write_signal(probe, math.nan)
        assert plant.read(PROBE).value is None  # as a remote client reads a NaN scalar (JSON null)


def test_the_sweep_parameter_keeps_its_old_import_path():
    """`twin.line.whatif.SweepParameter`, the path scripts used before the light module, still names it."""
    from twin.line.sweep import SweepParameter
    from twin.line.whatif import SweepParameter as old

    assert old is SweepParameter is twin.SweepParameter
