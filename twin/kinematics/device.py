"""Which Warp device the twin computes on: one rule for kinematics, parts, physics and the line."""

from __future__ import annotations

import os

import warp as wp

wp.config.log_level = wp.LOG_WARNING  # no banner or per-module load lines in the twin's logs


def default_device() -> str:
    """`TWIN_DEVICE` if set, else CUDA when Warp sees a GPU, else the CPU."""
    wp.init()
    wanted = os.environ.get("TWIN_DEVICE")
    if wanted:
        return wanted
    return "cuda:0" if wp.is_cuda_available() else "cpu"
