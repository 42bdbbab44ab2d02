"""docs/tutorial.md, run as written: its files are written and its commands run, in order, in an empty folder.

Fenced blocks: ```yaml NAME / ```python NAME are files, ```sh runs in the folder, ```sh background starts
and keeps running, ```text is output (the `twin layout build` report is compared line by line). The ports are
swapped for free ones, so the test never meets another server.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import stop_process
from twin.cli import free_port, wait_for_port

TUTORIAL = Path(__file__).parent.parent / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)[ \t]*([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PLC_PORT, HTTP_PORT = "4841", "8000"


def _blocks(text: str) -> list[tuple[str, str, str]]:
    return [(kind, label.strip(), body) for kind, label, body in BLOCK.findall(text)]


def _run(command: str, folder: Path, env: dict, timeout: float = 120) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_tutorial_runs_as_written(tmp_path):
    plc_port, http_port = str(free_port()), str(free_port())
    text = TUTORIAL.read_text().replace(f":{PLC_PORT}/", f":{plc_port}/").replace(f":{HTTP_PORT}", f":{http_port}")
    text = text.replace(f"--port {HTTP_PORT}", f"--port {http_port}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    blocks = _blocks(text)
    assert [kind for kind, _, _ in blocks].count("sh") >= 4
    background: list[subprocess.Popen] = []
    outputs: list[str] = []
    try:
        for index, (kind, label, body) in enumerate(blocks):
            if kind in ("yaml", "python") and label:
                (tmp_path / label).write_text(body)
            elif kind == "sh" and label == "background":
                background.append(subprocess.Popen(["bash", "-c", body], cwd=tmp_path, env=env,
                                                   start_new_session=True))
                if "twin serve" in body:
                    wait_for_port(int(plc_port), 30)
                    wait_for_port(int(http_port), 60, background[-1])
            elif kind == "sh":
                output = _run(body, tmp_path, env)
                if "curl" in body:  # the signal arrives once the connector has subscribed
                    deadline = time.monotonic() + 30
                    while '"q":"good"' not in output and time.monotonic() < deadline:
                        time.sleep(0.5)
                        output = _run(body, tmp_path, env)
                    assert '"q":"good"' in output, output
                outputs.append(output)
            elif kind == "text" and "twin layout build" in blocks[index - 1][2]:
                expected = [line for line in body.splitlines() if not line.startswith("twin: layout written")]
                assert outputs[-1].splitlines()[1:] == expected
    finally:
        for process in background:
            if process.poll() is None:
                stop_process(process, signal.SIGINT, grace_s=15, group=True)
    assert {"plant.usda", "plant.glb", "plc.py", "bindings.yaml", "whatif.py"} <= {p.name for p in tmp_path.iterdir()}
    check = next(output for output in outputs if "bindings bindings.yaml" in output)
    assert "bindings bindings.yaml: 4 bindings, 4 reach a prim" in check and "error" not in check
    study = outputs[-1].splitlines()
    assert len(study) == 2 and all("parts/h, bottleneck /Factory/Line/" in line for line in study), study
    slow, fast = (float(re.search(r": ([\d.]+) parts/h", line).group(1)) for line in study)
    assert fast >= slow > 0
