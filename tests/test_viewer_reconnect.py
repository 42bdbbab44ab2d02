"""The viewer survives a hung server and a restart: it shows the link as stale or lost, reconnects by
itself and resyncs."""

import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, free_port


def start_server(layout, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "twin.cli", "serve", str(layout), "--port", str(port),
                                "--glb", str(layout.with_suffix(".glb"))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                return process
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)


def test_viewer_reconnects_and_resyncs_after_a_server_restart(sample_layout, artifacts):
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = start_server(sample_layout, port)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("window.twin && window.twin.ready", timeout=60_000)
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
            browser.close()
        assert not errors, errors
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(20)
