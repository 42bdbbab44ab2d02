"""The what-if panel in a real browser (Debian chromium): define a sweep, see the throughput plot with
its confidence band, play one variant with parts moving, and return to live."""


from tests.helpers import BROWSER, viewer_page

pytestmark = BROWSER


def test_sweep_plot_and_playback(sample_viewer, artifacts):
    with viewer_page(sample_viewer) as page:
        page.click("#whatif-toggle")
        page.wait_for_selector("#whatif select[name=element] option", state="attached")
        page.select_option("#whatif select[name=element]", "/Factory/Line/Machining")
        page.select_option("#whatif select[name=parameter]", "twin:cycleTime")
        for name, value in (("from", "6"), ("to", "18"), ("steps", "4"), ("replications", "5"), ("hours", "2")):
            page.fill(f"#whatif input[name={name}]", value)
        page.click("#whatif button[name=run]")
        page.wait_for_selector("#whatif .whatif-chart circle.point", timeout=120_000)
        assert page.locator("#whatif .whatif-chart circle.point").count() == 4
        assert page.locator("#whatif .whatif-chart polygon.band").count() == 1  # the 95 % band
        rows = page.locator("#whatif .whatif-table tbody tr")
        assert rows.count() == 4
        throughputs = [float(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(4)]
        assert throughputs[0] > throughputs[-1]  # a slower machine, fewer parts
        assert rows.nth(3).locator("td").nth(4).inner_text() == "Machining"  # at 18 s it is the bottleneck
        page.screenshot(path=str(artifacts / "whatif-sweep.png"))

        page.click("#whatif [data-play='3']")
        page.wait_for_function("window.twin.whatif.playback && window.twin.whatif.playback.parts > 0",
                               timeout=60_000)
        assert page.is_visible("#mode")
        first = page.evaluate("window.twin.whatif.playback.time")
        page.wait_for_timeout(1500)
        assert page.evaluate("window.twin.whatif.playback.time") > first + 5  # 10x by default
        lamps = page.evaluate("window.twin.whatif.playback.data.states.length")
        assert lamps == 5  # three stations and two robots
        page.screenshot(path=str(artifacts / "whatif-playback.png"))
        page.click("#whatif [data-live]")
        assert page.evaluate("window.twin.whatif.playback") is None
        assert not page.is_visible("#mode")
