"""One wire format, two decoders: frames encoded by the server (twin.stream.protocol.encode_frame) decode to
the same fields with the Python decoder (SDK, tests) and with the viewer's web/src/protocol.js under node."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from twin.core.cache import GOOD, UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache
from twin.core.transforms import pose_to_matrix
from twin.sdk.types import update_from_frame
from twin.stream.protocol import (
    PROTOCOL,
    QUALITIES,
    QUATERNION_SCALE,
    Frame,
    Scope,
    StreamState,
    decode_frame,
    encode_frame,
    schema_id,
    schema_message,
    signal_values,
)

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
T0 = float(int(time.time())) + 0.25  # near now: ages travel as float32 seconds
PRECISE = 0.123456789
ARRAY = [PRECISE, 1 / 3, math.nan, -2.5e-7, 1e12, 0.0]


def moved(position, axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    quaternion = [*(axis * math.sin(angle / 2)), math.cos(angle / 2)]
    return pose_to_matrix(np.array([*position, *quaternion]))


def populated_cache() -> tuple[RuntimeCache, dict[str, int]]:
    """Every kind of row the wire carries, in every quality, with values the rounding would change."""
    cache = RuntimeCache()
    for index, prim in enumerate(("/Factory/Line/Robot1/link_1", "/Factory/Line/Robot1/link_2", "/Factory/Belt")):
        cache.add_transform(prim, moved([0.1 * index, -1.25, 3.0 + index], [1, index, 2], 0.3 + index))
    rows = {
        "float": cache.add_signal("/Factory/Line/Machining", "twin:cycleTime", unit="s"),
        "int": cache.add_signal("/Factory/Line/Sink", "twin:partsIn", kind="int"),
        "bool": cache.add_signal("/Factory/Line/Sink", "twin:running", kind="bool"),
        "text": cache.add_signal("/Factory/Line/Sink", "twin:batch", kind="text"),
        "enum": cache.add_signal("/Factory/Line/Machining", "twin:state", kind="int", labels={2: "running"}),
        "array": cache.add_signal("/Factory/Line/Robot1", "twin:jointPositions", width=6, unit="rad"),
        "nan": cache.add_signal("/Factory/Line/Machining", "twin:temperature"),
        "stale": cache.add_signal("/Factory/Line/Conveyor1", "twin:speed"),
        "uncertain": cache.add_signal("/Factory/Line/Conveyor1", "twin:load"),
        "never": cache.add_signal("/Factory/Line/Conveyor1", "twin:unwritten"),  # bad, NaN value, no source time
    }
    cache.write_signal(rows["float"], PRECISE, source_time=T0 - 0.5)
    cache.write_signal(rows["int"], 42.0, source_time=T0 - 1)
    cache.write_signal(rows["bool"], 1.0, source_time=T0 - 2)
    cache.write_signal(rows["text"], "lot 7 — Ünïcode", source_time=T0 - 3)
    cache.write_signal(rows["enum"], 2.0, label="running", source_time=T0 - 4)
    cache.write_signal(rows["array"], ARRAY, source_time=T0 - 5)
    cache.write_signal(rows["nan"], math.nan, source_time=T0 - 6)
    cache.write_signal(rows["stale"], 0.35, source_time=T0 - 7)
    cache.mark_status([rows["stale"]], UNCERTAIN_LAST_USABLE_VALUE)
    cache.write_signal(rows["uncertain"], 12.0, status=0x40000000, source_time=T0 - 8)
    parts = cache.add_instance_set("parts", 5)
    transforms = np.stack([moved([i, 2 * i, 0.5], [0, 0, 1], 0.2 * i) for i in range(5)])
    cache.write_instances(parts.name, transforms, np.array([True, False, True, True, False]))
    return cache, rows


def encoded_frames(cache: RuntimeCache, rows: dict[str, int]) -> list[bytes]:
    """A snapshot, a delta of values, poses and parts, a replay snapshot, and a snapshot scoped to two signals."""
    snapshot, version = encode_frame(cache, None, Scope())
    cache.write_signal(rows["array"], [0.5, -1.0, math.nan, 0.0, 1.0, 0.25], source_time=T0 + 1)
    cache.write_signal(rows["text"], "lot 8", source_time=T0 + 1)
    cache.write_transforms(np.array([1]), moved([0.4, 0.5, 0.6], [0, 1, 0], -1.0)[None])
    cache.write_instances("parts", np.stack([moved([i, 0, 0], [1, 0, 0], 0.1 * i) for i in range(5)]),
                          np.array([False, True, True, False, False]))
    delta, _ = encode_frame(cache, version, Scope())
    replay, _ = encode_frame(cache, None, Scope(), replay_of=T0 - 3600)
    scoped, _ = encode_frame(cache, None, Scope(signals=(cache.signals[rows["enum"]].key,
                                                         cache.signals[rows["array"]].key)))
    frames = [snapshot, delta, replay, scoped]
    assert all(frame is not None for frame in frames)
    return [frame for frame in frames if frame is not None]


def floats(values) -> np.ndarray:
    """Numbers from JSON, with null (how JSON.stringify writes NaN) back to NaN."""
    return np.array([math.nan if v is None else v for v in values], np.float64)


def assert_same_poses(python: np.ndarray, positions: list, quaternions: list) -> None:
    count = len(python)
    np.testing.assert_array_equal(python[:, :3], floats(positions).reshape(count, 3))
    np.testing.assert_array_equal(python[:, 3:], np.array(quaternions, np.int16).reshape(count, 4) / QUATERNION_SCALE)


def assert_same_frame(python: Frame, js: dict) -> None:
    header = (PROTOCOL, python.snapshot, python.replay, python.schema, python.base, python.version, python.time)
    assert header == (js["protocol"], js["snapshot"], js["replay"], js["schema"], js["base"], js["version"],
                      js["time"])
    np.testing.assert_array_equal(python.transform_rows, js["transforms"]["rows"])
    assert_same_poses(python.poses, js["transforms"]["positions"], js["transforms"]["quaternions"])
    signals = js["signals"]
    np.testing.assert_array_equal(python.signal_rows, signals["rows"])
    np.testing.assert_array_equal(python.status, signals["status"])
    np.testing.assert_array_equal(python.quality, signals["quality"])
    np.testing.assert_array_equal(python.source_time, js["time"] - floats(signals["age"]))  # NaN: no source time
    np.testing.assert_array_equal(python.values, floats(signals["values"]))
    assert sorted(python.instances) == [item["set"] for item in js["instances"]]
    for item in js["instances"]:
        assert len(python.instances[item["set"]]) == item["count"]
        assert_same_poses(python.instances[item["set"]], item["positions"], item["quaternions"])
    assert python.text == {int(row): text for row, text in js["text"].items()}


def test_the_viewer_decoder_is_plain_javascript():
    """Node loads it as the browser does; imports of browser-only modules (three.js, the DOM) would stop that."""
    source = (ROOT / "web/src/protocol.js").read_text()
    imports = re.findall(r"^\s*import\s.*?from\s+['\"]([^'\"]+)['\"]", source, re.MULTILINE)
    assert all(module.startswith(".") for module in imports), imports
    assert not re.search(r"\b(window|document|navigator|localStorage)\b", source)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_python_and_javascript_decoders_agree_on_every_field(tmp_path):
    cache, rows = populated_cache()
    frames = encoded_frames(cache, rows)
    widths = [info.width for info in cache.signals]
    paths = []
    for index, data in enumerate(frames):
        paths.append(str(tmp_path / f"frame{index}.bin"))
        Path(paths[-1]).write_bytes(data)
    manifest = tmp_path / "frames.json"
    manifest.write_text(json.dumps({"widths": widths, "frames": paths}))
    done = subprocess.run([NODE, str(ROOT / "tests/decode_frames.mjs"), str(manifest)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    decoded_js = json.loads(done.stdout)
    decoded = [decode_frame(data, widths) for data in frames]
    assert len(decoded_js) == len(decoded) == 4
    for python, js in zip(decoded, decoded_js, strict=True):
        assert_same_frame(python, js)

    snapshot, delta, replay, scoped = decoded
    # What was encoded is what came through, so agreeing decoders cannot both be wrong the same way.
    assert (snapshot.snapshot, snapshot.replay, delta.snapshot, delta.replay) == (True, False, False, False)
    assert (replay.snapshot, replay.replay, replay.time) == (True, True, T0 - 3600)
    assert delta.base == snapshot.version and list(delta.signal_rows) == sorted([rows["array"], rows["text"]])
    assert list(delta.transform_rows) == [1] and list(delta.instances) == [0]
    assert len(delta.instances[0]) == 2 and len(snapshot.instances[0]) == 3
    assert list(scoped.signal_rows) == sorted([rows["enum"], rows["array"]]) and not len(scoped.transform_rows)
    assert {QUALITIES[code] for code in snapshot.quality} == set(QUALITIES)
    assert snapshot.text == {rows["text"]: "lot 7 — Ünïcode", rows["enum"]: "running"}
    assert delta.text == {rows["text"]: "lot 8"}
    values = dict(zip(snapshot.signal_rows, signal_values(snapshot, np.array(widths)), strict=True))
    assert values[rows["float"]][0] == PRECISE and np.isnan(values[rows["nan"]][0])
    np.testing.assert_array_equal(values[rows["array"]], ARRAY)
    assert snapshot.source_time[rows["float"]] == pytest.approx(T0 - 0.5, abs=1e-4)  # an f32 age: sub-ms
    assert np.isnan(snapshot.source_time[rows["never"]]) and snapshot.status[rows["float"]] == GOOD


def test_the_sdk_says_which_updates_are_replays():
    cache, _ = populated_cache()
    state = StreamState()
    state.receive(json.dumps(schema_message(cache, schema_id(cache))))
    live, _ = encode_frame(cache, None, Scope())
    past, _ = encode_frame(cache, None, Scope(), replay_of=T0 - 60)
    assert live is not None and past is not None
    updates = []
    for data in (live, past):
        frame = state.receive(data)
        assert isinstance(frame, Frame)
        updates.append(update_from_frame(frame, state))
    assert [update.replay for update in updates] == [False, True]
    assert updates[1].time == T0 - 60
    key = cache.signals[0].key
    assert updates[0].signals[key].value == PRECISE  # the binary wire keeps float64 exactly
