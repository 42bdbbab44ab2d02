"""The viewer's stream worker merges the frames that arrive between two of the page's turns into one
(web/src/protocol.js MergedFrames): a snapshot and the deltas after it, merged, must show the page the same
state as a fresh snapshot of the cache at the end, with each value's time that of the frame that carried it."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from tests.test_wire_agreement import NODE, ROOT, T0, assert_same_poses, floats, moved, populated_cache
from twin.stream.protocol import Scope, decode_frame, encode_frame, signal_values

MERGE = """
import { readFileSync } from 'node:fs';
import { decodeFrame, MergedFrames } from '%s';
const { widths, frames } = JSON.parse(readFileSync(process.argv[1], 'utf8'));
const merged = new MergedFrames();
frames.forEach((path, index) => {
  const bytes = readFileSync(path);
  merged.add(decodeFrame(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), widths),
             widths, 1000 + index);
});
const { frame, transfer } = merged.take();
const plain = (view) => Array.from(view);
const poses = (item) => ({ positions: plain(item.positions), quaternions: plain(item.quaternions) });
process.stdout.write(JSON.stringify({
  ...frame, empty: merged.empty, transfers: transfer.length,
  transforms: { rows: plain(frame.transforms.rows), ...poses(frame.transforms) },
  signals: Object.fromEntries(Object.entries(frame.signals).map(([name, view]) => [name, plain(view)])),
  instances: frame.instances.map((item) => ({ set: item.set, count: item.count, ...poses(item) })),
}));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_snapshot_and_deltas_merged_equal_a_fresh_snapshot(tmp_path):
    cache, rows = populated_cache()
    snapshot, version = encode_frame(cache, None, Scope())
    cache.write_signal(rows["array"], [0.5, -1.0, math.nan, 0.0, 1.0, 0.25], source_time=T0 + 1)
    cache.write_signal(rows["text"], "lot 8", source_time=T0 + 1)
    cache.write_transforms(np.array([1]), moved([0.4, 0.5, 0.6], [0, 1, 0], -1.0)[None])
    first, version = encode_frame(cache, version, Scope())
    cache.write_signal(rows["float"], 7.5, source_time=T0 + 2)
    cache.write_signal(rows["enum"], 3.0, source_time=T0 + 2)  # a code without a name: the old label goes
    cache.write_transforms(np.array([1]), moved([0.7, 0.8, 0.9], [1, 0, 0], 0.5)[None])
    cache.write_instances("parts", np.stack([moved([i, 1, 0], [0, 0, 1], 0.3 * i) for i in range(5)]),
                          np.array([True, True, False, False, True]))
    second, version = encode_frame(cache, version, Scope())
    widths = [info.width for info in cache.signals]
    final = decode_frame(encode_frame(cache, None, Scope())[0], widths)
    decoded = [decode_frame(data, widths) for data in (snapshot, first, second)]

    paths = []
    for index, data in enumerate((snapshot, first, second)):
        paths.append(str(tmp_path / f"frame{index}.bin"))
        (tmp_path / f"frame{index}.bin").write_bytes(data)
    manifest = tmp_path / "frames.json"
    manifest.write_text(json.dumps({"widths": widths, "frames": paths}))
    script = MERGE % (ROOT / "web/src/protocol.js").as_uri()
    done = subprocess.run([NODE, "--input-type=module", "-e", script, str(manifest)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    merged = json.loads(done.stdout)

    assert merged["empty"] and merged["frames"] == 3 and merged["snapshot"] and not merged["replay"]
    assert (merged["base"], merged["version"], merged["time"]) == (decoded[0].base, version, decoded[2].time)
    assert merged["transfers"] == 3 + 7 + 2  # every array on a buffer of its own, so none is copied to the page

    order = np.argsort(merged["transforms"]["rows"])
    assert list(np.array(merged["transforms"]["rows"])[order]) == list(final.transform_rows)
    positions = np.array(merged["transforms"]["positions"]).reshape(-1, 3)[order]
    quaternions = np.array(merged["transforms"]["quaternions"]).reshape(-1, 4)[order]
    assert_same_poses(final.poses, positions.ravel().tolist(), quaternions.ravel().tolist())

    signals = merged["signals"]
    by_row = {row: index for index, row in enumerate(signals["rows"])}
    assert sorted(by_row) == list(final.signal_rows)
    starts = np.cumsum([0] + [widths[row] for row in signals["rows"]])
    values = floats(signals["values"])
    last_frame_of = {}  # row -> index of the last frame that carried it
    for index, frame in enumerate(decoded):
        last_frame_of.update(dict.fromkeys(frame.signal_rows.tolist(), index))
    for position, (row, expected) in enumerate(zip(final.signal_rows.tolist(), signal_values(final, widths),
                                                   strict=True)):
        index = by_row[row]
        np.testing.assert_array_equal(values[starts[index]:starts[index] + widths[row]], expected)
        assert signals["status"][index] == final.status[position]
        assert signals["quality"][index] == final.quality[position]
        assert signals["times"][index] == decoded[last_frame_of[row]].time
        assert signals["received"][index] == 1000 + last_frame_of[row]
        age = floats([signals["age"][index]])[0]
        if math.isnan(final.source_time[position]):
            assert math.isnan(age)
        else:
            assert signals["times"][index] - age == pytest.approx(final.source_time[position], abs=1e-3)
    assert {int(row): text for row, text in merged["text"].items()} == final.text

    assert [item["set"] for item in merged["instances"]] == sorted(final.instances)
    for item in merged["instances"]:
        assert_same_poses(final.instances[item["set"]], item["positions"], item["quaternions"])
