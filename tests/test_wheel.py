"""The product as a user installs it: the wheel, in a fresh virtual environment, runs `twin demo` with the viewer.

The wheel is built from this checkout with its existing viewer build (TWIN_SKIP_VIEWER_BUILD=1, see setup.py)
and installed without dependencies into a new venv that sees the project venv's third-party packages through
a .pth file, but not its editable `twin`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (the demo starts its PLC in a session of its own, outside its group)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def stop_process_tree(process: subprocess.Popen) -> None:
    """SIGTERM the demo's process group (it stops its PLC itself), then SIGKILL every group that is left."""
    groups = set()
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    for sent in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sent)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)


def clean_env() -> dict[str, str]:
    """The caller's environment without what would steer imports or stop bytecode from being written."""
    drop = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONHOME", "VIRTUAL_ENV"}
    return {key: value for key, value in os.environ.items() if key not in drop}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "TWIN_SKIP_VIEWER_BUILD": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
                   env=env, check=True, timeout=300)
    [built] = out.glob("factory_twin-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A new venv holding only the wheel; the project venv's site-packages are listed in a .pth file."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    project = sysconfig.get_paths()["purelib"]
    assert project in sys.path
    # plain path lines: the project's own .pth files (its editable finder among them) are not run
    (site_packages / "project_venv.pth").write_text(project + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-compile", str(wheel)], check=True, timeout=300)
    return root


def test_the_wheel_carries_the_viewer_and_type_information(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "twin/server/viewer/index.html" in names
    assert any(name.startswith("twin/server/viewer/assets/") and name.endswith(".js") for name in names)
    assert "twin/py.typed" in names
    assert "twin/sample_factory/bindings.yaml" in names
    assert not any(name.startswith(("scenes/", "connectors/", "sample_factory/", "web/")) for name in names)


def test_installed_twin_comes_from_the_new_venv_without_the_editable_finder(venv, tmp_path):
    probe = ("import sys, twin, twin.server.assets as assets, importlib.metadata as md; print(json.dumps({"
             "'twin': twin.__file__, 'viewer': str(assets.viewer_dir()), 'version': md.version('factory-twin'),"
             "'declared': twin.__version__, 'finders': [type(f).__module__ for f in sys.meta_path]}))")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", "import json; " + probe], cwd=tmp_path,
                            capture_output=True, text=True, check=True, env=clean_env())
    found = json.loads(result.stdout)
    assert Path(found["twin"]).is_relative_to(venv)
    assert Path(found["viewer"]) == Path(found["twin"]).parent / "server" / "viewer"
    assert found["version"] == found["declared"]
    assert not any("__editable__" in module for module in found["finders"])


def test_installed_demo_serves_the_viewer_scene_and_stream(venv, tmp_path):
    from websockets.sync.client import connect

    port = free_port()
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [str(venv / "bin" / "twin"), "demo", "--port", str(port), "--workdir", str(tmp_path / "factory")],
        cwd=tmp_path, env=clean_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, f"the demo exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the demo did not answer in 300 s:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/", timeout=5) as response:
                    index = response.read()
                break
            except OSError:
                time.sleep(0.5)
        packaged = next((venv / "lib").glob("python3*/site-packages/twin"))
        assert index == (packaged / "server" / "viewer" / "index.html").read_bytes()
        with urllib.request.urlopen(f"{url}/scene.glb", timeout=30) as response:
            assert response.read(4) == b"glTF"
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30) as stream:
            assert json.loads(stream.recv(timeout=30))["type"] == "hello"
            deadline = time.monotonic() + 60
            while not isinstance(message := stream.recv(timeout=30), bytes):
                assert time.monotonic() < deadline, "no binary frame within 60 s"
            assert message[:4] == b"TWIN" and int.from_bytes(message[6:8], "little") & 1, "not a snapshot frame"
        # installed with --no-compile: bytecode next to the server's modules was written by this demo's imports
        assert list((packaged / "server" / "__pycache__").glob("app.*.pyc")), "the demo did not import this twin"
        assert (tmp_path / "factory" / "factory.usda").is_file()
    finally:
        stop_process_tree(process)
