import os
import socket
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
