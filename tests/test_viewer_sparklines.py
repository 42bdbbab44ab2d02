"""The inspector's sparklines (web/src/history.js) under node: the stream sends a value only when it changes, so a
signal that changed once and then held still must still draw a line up to the newest frame. Before, a counter that
ticks every half minute drew nothing for half a minute, and the e2e browser test flaked on it."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")

SCRIPT = """
globalThis.location = new URL('http://127.0.0.1/');
const { SignalHistory } = await import(process.argv[1]);
const history = new SignalHistory();
const plain = (series) => series && [Array.from(series[0]), Array.from(series[1])];
const out = {};
history.record('counter', 1000.0, 7);           // the one change so far
out.alone = plain(history.series('counter'));
history.advance(1000.5);                         // frames in the same 2 s bucket: nothing to hold yet
out.same_bucket = plain(history.series('counter'));
history.advance(1010.0);                         // ten seconds of frames without a change
history.record('joint', 1010.0, 0.25);
out.held = plain(history.series('counter'));
history.record('counter', 1012.5, 8);            // the next change replaces the held point
out.changed = plain(history.series('counter'));
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_value_that_holds_still_draws_a_flat_line_to_the_newest_frame():
    done = subprocess.run([NODE, "--input-type=module", "-e", SCRIPT, str(ROOT / "web/src/history.js")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["alone"] == [[1000.0], [7.0]]
    assert out["same_bucket"] == [[1000.0], [7.0]]
    assert out["held"] == [[1000.0, 1010.0], [7.0, 7.0]], "the last value holds up to the newest frame"
    assert out["changed"] == [[1000.0, 1012.5], [7.0, 8.0]]
