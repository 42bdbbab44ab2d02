"""The distribution's one build step: the wheel carries the built viewer (metadata lives in pyproject.toml).

build_py builds the viewer in web/ when its build is missing or older than its sources, and copies web/dist
into the wheel as twin/server/viewer, where twin.server.assets.viewer_dir() looks first. An sdist carries
web/dist as well (MANIFEST.in), so a wheel built from it needs no node. An editable install skips all this:
the server serves the checkout's web/dist. TWIN_SKIP_VIEWER_BUILD=1 packages web/dist as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

WEB = Path(__file__).resolve().parent / "web"
VIEWER_SOURCES = ("src", "index.html", "vite.config.js")


def viewer_is_stale(web: Path) -> bool:
    """True when web/dist is missing or any viewer source is newer than its index.html."""
    index = web / "dist" / "index.html"
    if not index.is_file():
        return True
    built = index.stat().st_mtime
    for name in VIEWER_SOURCES:
        source = web / name
        files = source.rglob("*") if source.is_dir() else [source]
        if any(path.is_file() and path.stat().st_mtime > built for path in files):
            return True
    return False


def build_viewer(web: Path = WEB) -> Path:
    """Bring web/dist up to date (npm ci, npm run build as needed) and return it."""
    dist = web / "dist"
    if os.environ.get("TWIN_SKIP_VIEWER_BUILD") == "1":
        if not (dist / "index.html").is_file():
            raise SystemExit(f"TWIN_SKIP_VIEWER_BUILD=1 but {dist} holds no index.html: build the viewer first")
        return dist
    if not viewer_is_stale(web):
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"the viewer in {web} must be built and npm is not on PATH: install node and npm")
    lock, installed = web / "package-lock.json", web / "node_modules" / ".package-lock.json"
    if not installed.is_file() or lock.stat().st_mtime > installed.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=web, check=True)
    subprocess.run([npm, "run", "build"], cwd=web, check=True)
    return dist


class BuildPyWithViewer(build_py):
    """build_py, then the viewer's build copied into the package as twin/server/viewer."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "twin" / "server" / "viewer"
        shutil.rmtree(target, ignore_errors=True)  # no hashed assets left over from an earlier build
        shutil.copytree(build_viewer(), target)


class SdistWithViewer(sdist):
    """sdist with an up-to-date web/dist inside, so that building the wheel from it needs no node."""

    def run(self) -> None:
        build_viewer()
        super().run()


setup(cmdclass={"build_py": BuildPyWithViewer, "sdist": SdistWithViewer})
