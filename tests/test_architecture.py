"""The layer rule holds: the import contracts in pyproject.toml run against the package in its installed shape.

scenes/, connectors/ and sample_factory/ install as twin.scenes, twin.connectors and twin.sample_factory, so the
test lays the sources out the way a wheel does before import-linter reads them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"scenes": "scenes", "connectors": "connectors", "sample_factory": "sample_factory"}


def installed_shape(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "viewer")
    package = target / "twin"
    shutil.copytree(ROOT / "twin", package, ignore=ignore)
    for folder, name in MAPPED.items():
        shutil.copytree(ROOT / folder, package / name, ignore=ignore)
    return target


def run_contracts(root: Path) -> subprocess.CompletedProcess:
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", command, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=240)


def test_import_contracts_are_kept(tmp_path):
    root = installed_shape(tmp_path)
    result = run_contracts(root)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and "KEPT" in result.stdout


def test_a_broken_layer_is_caught(tmp_path):
    """The contracts can fail: the core importing the server breaks the layer contract."""
    root = installed_shape(tmp_path)
    cache = root / "twin" / "core" / "cache.py"
    cache.write_text(cache.read_text() + "\nimport twin.server.app  # noqa\n")
    result = run_contracts(root)
    assert result.returncode != 0
    assert "twin.core.cache -> twin.server.app" in result.stdout
