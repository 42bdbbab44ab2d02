"""The viewer survives a hung server and a restart: it shows the link as stale or lost, reconnects by
itself and resyncs."""

import signal
import subprocess
import sys

from tests.helpers import BROWSER, free_port, viewer_page, wait_for_health

pytestmark = BROWSER


def start_server(layout, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "twin.cli", "serve", str(layout), "--port", str(port),
                                "--glb", str(layout.with_suffix(".glb"))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    assert wait_for_health(f"http://127.0.0.1:{port}", process, 60), "the server did not start"
    return process


def test_viewer_reconnects_and_resyncs_after_a_server_restart(sample_layout, artifacts):
    port = free_port()
    server = start_server(sample_layout, port)
    try:
        with viewer_page(f"http://127.0.0.1:{port}/", width=1200, height=800) as page:
            assert page.text_content("#status") == "live"
            resyncs_before = page.evaluate("window.twin.stream.stats.frames")

            # A server that hangs (no frames, no heartbeats, socket still open) shows as stale.
            server.send_signal(signal.SIGSTOP)
            try:
                page.wait_for_function("window.twin.statusHistory.includes('stale')", timeout=30_000)
            finally:
                server.send_signal(signal.SIGCONT)
            page.wait_for_function("document.getElementById('status').textContent === 'live'", timeout=30_000)

            server.send_signal(signal.SIGINT)
            server.wait(20)
            page.wait_for_function("document.getElementById('status').textContent === 'reconnecting'",
                                   timeout=15_000)
            page.screenshot(path=str(artifacts / "viewer-reconnecting.png"))

            server = start_server(sample_layout, port)
            page.wait_for_function("document.getElementById('status').textContent === 'live'", timeout=30_000)
            # A fresh connection starts with a schema and a snapshot, so the page holds a version again.
            page.wait_for_function("window.twin.stream.version !== null", timeout=15_000)
            assert page.evaluate("window.twin.stream.stats.frames") > resyncs_before
            assert page.evaluate("window.twin.stream.stats.gaps") == 0
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(20)
