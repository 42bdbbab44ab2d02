import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("TWIN_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _ordinary_heap() -> Iterator[None]:
    """Connectors freeze the long-lived heap (twin/heap.py); each test starts and ends with an ordinary one."""
    import gc

    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def sample_layout(tmp_path_factory) -> Path:
    """The sample factory, authored once per test session (USD + GLB)."""
    from twin.sample_factory.scene import build_sample_factory

    return build_sample_factory(tmp_path_factory.mktemp("sample_factory"))

LOOPBACK = "http://127.0.0.1"  # TestClient's base URL: a loopback twin answers only loopback host names


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


@contextlib.contextmanager
def viewer_page(url: str, *, width: int = 1400, height: int = 850, ready_s: float = 60.0):
    """The viewer at `url` in headless Debian chromium, once its scene and first snapshot are in; fails the
    test on any uncaught error in the page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_function("window.twin && window.twin.ready", timeout=ready_s * 1000)
        try:
            yield page
        finally:
            browser.close()
    assert not errors, errors
