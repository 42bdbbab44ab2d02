"""Fixtures the whole suite shares; helpers that tests import live in tests/helpers.py."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("TWIN_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))


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


@pytest.fixture(scope="module")
def sample_viewer(sample_layout) -> Iterator[str]:
    """The sample twin (no PLC) with its GLB, served in a thread at a 10 Hz tick: the viewer page's URL."""
    from tests.helpers import require_viewer_build, serve_app
    from twin.server.app import create_app
    from twin.sim.runtime import Twin

    require_viewer_build()
    with serve_app(create_app(Twin(sample_layout), glb_path=sample_layout.with_suffix(".glb"), tick_hz=10)) as url:
        yield f"{url}/"
