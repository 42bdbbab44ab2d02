"""What several test files need: free loopback ports, a twin served in a thread or waited for in a process,
conditions polled until they hold, and the viewer in headless Debian chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

LOOPBACK = "http://127.0.0.1"  # TestClient's base URL: a loopback twin answers only loopback host names
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
# The marks of a test that drives chromium: `pytest -m "not browser"` leaves it out, and it skips without chromium.
BROWSER = [pytest.mark.browser,
           pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(app, port: int | None = None) -> Iterator[str]:
    """Serve an app with uvicorn on loopback in a thread, as `twin serve` does; yields its http:// URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ws="websockets-sansio", ws_per_message_deflate=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def require_viewer_build() -> None:
    """Fail (not skip) when the viewer is not built: a browser test without it would test nothing."""
    from twin.server.app import WEB_DIST

    if not (WEB_DIST / "index.html").is_file():
        pytest.fail(f"the viewer is not built ({WEB_DIST}); scripts/setup.sh builds it")


@contextlib.contextmanager
def serve_sample_with_history(layout: Path, history_dir: Path, admin_token: str) -> Iterator[str]:
    """The sample twin with a historian and one admin token, served on loopback at a 10 Hz tick: what the
    hostile-client tests aim at, so that every route, the operator ones included, is reachable."""
    from twin.history.store import Historian
    from twin.server.app import create_app
    from twin.server.auth import Access, Principal
    from twin.sim.runtime import Twin

    twin = Twin(layout)
    historian = Historian(history_dir / "h.duckdb", twin.cache)
    app = create_app(twin, tick_hz=10, historian=historian, access=Access({admin_token: Principal("ada", "admin")}))
    with serve_app(app) as url:
        yield url


def wait_for_health(url: str, process: subprocess.Popen, timeout: float) -> bool:
    """Whether the twin that `process` runs at `url` answers /api/health before it exits or `timeout` runs out;
    the caller says what failed, with what it knows (a log, say)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/api/health", timeout=2):
            return True
        time.sleep(0.2)
    return False


def stop_process(process: subprocess.Popen, sent: int = signal.SIGTERM, *, grace_s: float = 20.0,
                 group: bool = False) -> bool:
    """Stop a process a test started as a user would: `sent` (to its process group with `group`, so its own children
    get it too), then SIGKILL to whatever is left after `grace_s`. Whether it stopped within the grace period."""
    def send(what: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:  # the group outlives its leader while the leader's children run
                os.killpg(process.pid, what)
            else:
                process.send_signal(what)

    send(sent)
    try:
        process.wait(timeout=grace_s)
        return True
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=10)
        return False


async def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` while the event loop runs (a connector, a server); fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def viewer_page(url: str, *, width: int = 1400, height: int = 850, ready_s: float = 60.0, init_script: str = ""):
    """The viewer at `url` in headless Debian chromium, once its scene and first snapshot are in; fails the
    test on any uncaught error in the page. `init_script` runs in the page before its own scripts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        if init_script:
            page.add_init_script(init_script)
        page.goto(url)
        page.wait_for_function("window.twin && window.twin.ready", timeout=ready_s * 1000)
        try:
            yield page
        finally:
            browser.close()
    assert not errors, f"errors in the page: {errors}"
