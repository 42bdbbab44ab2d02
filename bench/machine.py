"""What every benchmark shares: the machine it ran on (../shared/README.md asks for it) and its table for humans."""

from __future__ import annotations

import os


def cpu() -> str:
    """The CPU model and core count, e.g. 'AMD EPYC, 2 cores'."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, from /proc (fields 14 and 15 of its stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def warp_machine(device: str) -> str:
    """`cpu()` and the Warp device the benchmark ran on (with the GPU's name when it is one)."""
    import warp as wp

    accelerator = "warp device cpu" if device == "cpu" else f"warp device {device} ({wp.get_device(device).name})"
    return f"{cpu()}, {accelerator}"


def print_table(rows: list[dict], columns: tuple[tuple[str, ...], ...]) -> None:
    """`rows` as right-aligned columns; each column is (key, title) or (key, title, format), None shown as "-"."""
    formats = [column[2] if len(column) > 2 else "{}" for column in columns]
    cells = [[fmt.format(row[column[0]]) if row[column[0]] is not None else "-"
              for column, fmt in zip(columns, formats, strict=True)] for row in rows]
    widths = [max(len(column[1]), *(len(c[i]) for c in cells)) for i, column in enumerate(columns)]
    print("  ".join(column[1].rjust(w) for column, w in zip(columns, widths, strict=True)))
    for c in cells:
        print("  ".join(value.rjust(w) for value, w in zip(c, widths, strict=True)))
