"""Where a render holds the page (software WebGL), the viewer rations rendering (web/src/viewer.js #mayRender):
after a slow render it leaves the following animation frames without WebGL, so that the page can apply and paint
what arrived. Without the rule, a camera being orbited renders on every animation frame.
"""

from __future__ import annotations

from tests.helpers import BROWSER, viewer_page
from tests.test_viewer_quality import orbit

pytestmark = BROWSER

# Each animation frame: (its time, frames the viewer has rendered so far).
RECORD_FRAMES = """() => {
  const frames = window.__frames = [];
  const record = (time) => { frames.push([time, window.twin.renderedFrames()]); requestAnimationFrame(record); };
  requestAnimationFrame(record);
}"""


def test_slow_renders_leave_animation_frames_without_webgl(sample_viewer):
    with viewer_page(sample_viewer + "?quality=medium") as page:  # medium: well over a vsync in software
        page.evaluate(RECORD_FRAMES)
        quality = orbit(page, lambda q: False, seconds=6.0)  # the view changes all along: every frame wants a render
        frames = page.evaluate("window.__frames")
        assert quality["frameMs"] is not None and quality["frameMs"] > 20, f"renders are not slow here: {quality}"
        rendered = frames[-1][1] - frames[0][1]
        assert rendered >= 5, f"only {rendered} renders in {len(frames)} animation frames"
        # A render over 20 ms is followed by up to 100 ms (6 vsyncs) without WebGL: far fewer renders than
        # animation frames (skipping a single frame after each slow render would leave half of them rendering).
        assert rendered <= 0.3 * len(frames), f"{rendered} renders in {len(frames)} animation frames"
