"""`twin demo` as a process: its simulated PLC ends with it, however it ends, and a busy port is a clear error."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from twin.cli import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def demo_command(workdir: Path, port: int, plc_port: int) -> list[str]:
    return [sys.executable, "-m", "twin.cli", "demo", "--port", str(port), "--plc-port", str(plc_port),
            "--workdir", str(workdir)]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (PID 1 of a container may never reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return re.search(r"^State:\s+Z", status, re.MULTILINE) is None


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.timeout(150)
def test_the_plc_dies_with_a_killed_demo(sample_layout, tmp_path):
    port, plc_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        demo = subprocess.Popen(demo_command(sample_layout.parent, port, plc_port), stdout=output,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert demo.poll() is None, f"the demo exited with {demo.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the demo did not come up in 90 s:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        plc = int(re.search(r"simulated PLC at \S+ \(pid (\d+)\)", log.read_text()).group(1))
        assert alive(plc) and listening(plc_port)
    finally:
        demo.send_signal(signal.SIGKILL)  # no handler runs: only the kernel and the PLC itself can stop it
        demo.wait()
    deadline = time.monotonic() + 5
    while (alive(plc) or listening(plc_port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not alive(plc), f"the PLC (pid {plc}) outlived its killed demo by 5 s"
        assert not listening(plc_port), f"the PLC port {plc_port} is still taken"
    finally:
        if alive(plc):
            os.kill(plc, signal.SIGKILL)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("taken", ["--plc-port", "--port"])
def test_a_busy_port_is_a_clear_error(sample_layout, taken):
    port, plc_port = free_port(), free_port()
    with socket.socket() as occupant:  # an earlier demo's PLC, or anything else listening there
        busy = plc_port if taken == "--plc-port" else port
        occupant.bind(("127.0.0.1", busy))
        occupant.listen()
        result = subprocess.run(demo_command(sample_layout.parent, port, plc_port), capture_output=True, text=True,
                                timeout=45)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {busy} on 127.0.0.1 is in use" in result.stderr, result.stderr
    assert f"choose another port with {taken}" in result.stderr, result.stderr
    assert "simulated PLC at" not in result.stdout  # refused before starting anything
