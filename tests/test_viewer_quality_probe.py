"""Auto quality on a view where nothing moves: frame times are measured only while the viewer renders
continuously, so a level stepped down earlier (by slow first frames) would stay down for ever. After a while
without a render, auto probes the level above with a couple of timed frames (web/src/viewer.js #mayProbe) and
keeps it if it fits, else goes back and waits 10 s, then 20 s, 40 s... before the next probe.

The level is brought below high through the toolbar's menu: the page opens pinned at medium, then auto is chosen,
which carries on from the level in use. The sample twin without a PLC stands still: nothing renders after that.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.helpers import BROWSER, viewer_page

pytestmark = BROWSER

SOURCE = (Path(__file__).resolve().parents[1] / "web/src/viewer.js").read_text()
HEADROOM_MS = float(re.search(r"const HEADROOM_MS = (\d+)", SOURCE)[1])  # a probe's frame under this is kept
PROBE_IDLE_MS = float(re.search(r"const PROBE_IDLE_MS = (\d+)", SOURCE)[1])
RETRY_UP_MS = float(re.search(r"const RETRY_UP_MS = (\d+)", SOURCE)[1])

# Every animation frame's time advances one 16 ms vsync, however long the page really took: a machine whose
# graphics render any level within a vsync (a workstation's GPU), as the viewer measures it.
FAST_FRAMES = """(() => {
  const request = window.requestAnimationFrame.bind(window);
  let real = null, virtual = 0;
  window.requestAnimationFrame = (callback) => request((time) => {
    if (time !== real) { real = time; virtual += 16; }
    callback(virtual);
  });
})();"""


def auto_from_medium(page) -> None:
    assert page.evaluate("window.twin.quality()")["level"] == "medium"
    page.select_option("#quality", "auto")
    assert page.evaluate("window.twin.quality()")["setting"] == "auto"


def probes(page) -> list[dict]:
    return [step for step in page.evaluate("window.twin.qualityHistory") if "probe" in step]


def test_idle_auto_steps_up_where_a_probe_fits(sample_viewer):
    with viewer_page(sample_viewer + "?quality=medium", init_script=FAST_FRAMES) as page:
        auto_from_medium(page)
        page.wait_for_function("window.twin.quality().probe", timeout=15_000)
        quality = page.evaluate("window.twin.quality()")
        assert quality["level"] == "high" and not quality["probing"], quality
        assert quality["probe"]["level"] == "high" and quality["probe"]["kept"], quality
        assert quality["probe"]["frameMs"] < HEADROOM_MS, quality
        assert probes(page) == [{"level": "high", "setting": "auto", "frameMs": quality["probe"]["frameMs"],
                                 "probe": "high"}]
        assert page.evaluate("document.getElementById('quality').options[0].textContent") == "Auto (high)"
        time.sleep(3 * PROBE_IDLE_MS / 1000)  # at the top: nothing left to probe
        assert len(probes(page)) == 1 and page.evaluate("window.twin.quality()")["level"] == "high"


def test_idle_auto_probes_that_do_not_fit_back_off(sample_viewer):
    """In software WebGL (SwiftShader), high takes over 100 ms a frame: each probe goes back to medium, and the
    back-off spaces them (without it, one every PROBE_IDLE_MS or so)."""
    with viewer_page(sample_viewer + "?quality=medium") as page:
        auto_from_medium(page)
        started = time.monotonic()
        page.wait_for_function("window.twin.quality().probe", timeout=15_000)
        first = time.monotonic()
        quality = page.evaluate("window.twin.quality()")
        assert quality["level"] == "medium" and not quality["probing"], quality
        assert quality["probe"]["level"] == "high" and not quality["probe"]["kept"], quality
        assert quality["probe"]["frameMs"] >= HEADROOM_MS, quality
        # Watch past the first back-off (10 s), short of the second (20 s more).
        time.sleep((RETRY_UP_MS + 2 * PROBE_IDLE_MS) / 1000 + 4 - (time.monotonic() - first))
        history = probes(page)
        assert len(history) == 2, f"{len(history)} probes in {time.monotonic() - started:.0f} s: {history}"
        assert all(step["level"] == "medium" and step["probe"] == "high" for step in history), history
        assert page.evaluate("document.getElementById('quality').options[0].textContent") == "Auto (medium)"
