"""The authored layout stays untouched; live values reach the live layer at a bounded rate."""

import hashlib

import numpy as np
import pytest
from pxr import Usd, UsdGeom

from twin.core.cache import RuntimeCache
from twin.core.errors import LayoutError
from twin.core.stage import LiveLayerWriter, TwinStage

LAYOUT = """#usda 1.0
(
    defaultPrim = "Factory"
    upAxis = "Z"
)

def Xform "Factory"
{
    def Xform "Conveyor1"
    {
        string twin:kind = "conveyor"
        double twin:length = 4
        double3 xformOp:translate = (1, 2, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
}
"""


@pytest.fixture
def layout(tmp_path):
    path = tmp_path / "layout.usda"
    path.write_text(LAYOUT)
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_live_values_go_to_the_live_layer_never_the_authored_file(layout):
    before = digest(layout)
    twin_stage = TwinStage(layout)
    cache = RuntimeCache()
    speed = cache.add_signal("/Factory/Conveyor1", "twin:speed", unit="m/s")
    moved = cache.add_transform("/Factory/Conveyor1")
    writer = LiveLayerWriter(twin_stage, cache, max_rate_hz=2.0)
    cache.write_signal(speed, 0.42)
    matrix = np.eye(4)
    matrix[:3, 3] = (5.0, 6.0, 7.0)
    cache.write_transforms(np.array([moved]), matrix[None])
    assert writer.maybe_flush(now=100.0)
    prim = twin_stage.stage.GetPrimAtPath("/Factory/Conveyor1")
    assert prim.GetAttribute("twin:speed").Get() == pytest.approx(0.42)
    world = UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(Usd.TimeCode.Default())
    assert tuple(world.ExtractTranslation()) == (5.0, 6.0, 7.0)
    assert twin_stage.live.GetPrimAtPath("/Factory/Conveyor1") is not None
    assert not twin_stage.authored.GetPrimAtPath("/Factory/Conveyor1").attributes.get("twin:speed")
    twin_stage.authored.Save()  # even an explicit save of the authored layer finds nothing to write
    assert digest(layout) == before


def test_flushes_are_rate_limited(layout):
    twin_stage = TwinStage(layout)
    cache = RuntimeCache()
    row = cache.add_signal("/Factory/Conveyor1", "twin:speed")
    writer = LiveLayerWriter(twin_stage, cache, max_rate_hz=4.0)
    flushed = 0
    for step in range(100):  # one second of 100 Hz updates
        cache.write_signal(row, float(step))
        flushed += writer.maybe_flush(now=step / 100.0)
    assert flushed == 4
    assert twin_stage.stage.GetPrimAtPath("/Factory/Conveyor1").GetAttribute("twin:speed").Get() == 75.0


def test_snapshot_is_its_own_layer_over_the_layout(layout, tmp_path):
    twin_stage = TwinStage(layout)
    cache = RuntimeCache()
    row = cache.add_signal("/Factory/Conveyor1", "twin:speed")
    cache.write_signal(row, 0.5)
    LiveLayerWriter(twin_stage, cache).flush()
    (tmp_path / "snapshots").mkdir()
    out = twin_stage.save_snapshot(tmp_path / "snapshots" / "state.usda")
    reopened = Usd.Stage.Open(str(out))
    prim = reopened.GetPrimAtPath("/Factory/Conveyor1")
    assert prim.GetAttribute("twin:speed").Get() == 0.5
    assert prim.GetAttribute("twin:length").Get() == 4  # from the authored layout, through the sublayer


def test_malformed_layout_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.usda"
    bad.write_text(LAYOUT.replace("double twin:length = 4", "double twin:length = four"))
    with pytest.raises(LayoutError) as caught:
        TwinStage(bad)
    line = bad.read_text().splitlines().index("        double twin:length = four") + 1
    assert caught.value.path == bad and caught.value.line == line
    assert f"broken.usda:{line}" in str(caught.value) and "four" in str(caught.value)


def test_missing_layout_and_missing_default_prim(tmp_path):
    with pytest.raises(LayoutError, match="nowhere.usda: file not found"):
        TwinStage(tmp_path / "nowhere.usda")
    plain = tmp_path / "plain.usda"
    plain.write_text('#usda 1.0\ndef Xform "A"\n{\n}\n')
    with pytest.raises(LayoutError, match="plain.usda: has no defaultPrim"):
        TwinStage(plain)


def test_a_value_usd_cannot_hold_never_blocks_the_others(layout):
    twin_stage = TwinStage(layout)
    cache = RuntimeCache()
    huge = cache.add_signal("/Factory/Conveyor1", "twin:counter", kind="int")
    speed = cache.add_signal("/Factory/Conveyor1", "twin:speed")
    writer = LiveLayerWriter(twin_stage, cache)
    cache.write_signal(huge, 2.0**64 - 1)  # a UInt64 beyond what a USD int64 holds
    writer.flush()
    cache.write_signal(speed, 0.3)
    writer.flush()
    prim = twin_stage.stage.GetPrimAtPath("/Factory/Conveyor1")
    assert prim.GetAttribute("twin:speed").Get() == pytest.approx(0.3)
    assert huge in writer.rejected
