"""Where the built viewer is: inside the installed package (a wheel), else the repository's web/dist."""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "viewer"  # put there by the wheel's build step
_REPOSITORY = Path(__file__).resolve().parents[2] / "web" / "dist"  # an editable install or a checkout


def viewer_dir() -> Path:
    """The folder holding the viewer's index.html: the packaged copy first, then the checkout's build."""
    for candidate in (_PACKAGED, _REPOSITORY):
        if (candidate / "index.html").is_file():
            return candidate
    return _REPOSITORY  # not built: the server says so and names this folder


WEB_DIST = viewer_dir()
