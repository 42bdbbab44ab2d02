"""One `twin serve` process per line: started in its own process group on a loopback port, restarted with
backoff when it dies, and ended (the whole group) when the site stops.

A line must not outlive the site, even a site killed by SIGKILL: on Linux each line asks the kernel for SIGTERM
when the site's main thread ends (PR_SET_PDEATHSIG), so processes are always started from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from twin.site.config import Line, Site, line_bindings

log = logging.getLogger("twin.site.supervisor")

MIN_BACKOFF_S, MAX_BACKOFF_S = 1.0, 30.0
STEADY_S = 60.0  # a line that ran this long starts again with the shortest backoff
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started it ends (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class LineProcess:
    """What the site knows of one line's process."""

    line: Line
    port: int
    bindings: Path
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    starts: int = 0
    last_exit: int | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def describe(self) -> dict:
        return {"pid": self.process.pid if self.running and self.process else None, "running": self.running,
                "starts": self.starts, "last_exit": self.last_exit, "log": str(self.log_path)}


class Supervisor:
    """Starts every line, restarts the ones that die, stops them all."""

    def __init__(self, site: Site, ports: dict[str, int], workdir: Path):
        self.site = site
        self.lines: dict[str, LineProcess] = {}
        for line in site.lines:
            bindings = workdir / f"{line.name}.bindings.yaml"
            bindings.write_text(yaml.safe_dump(line_bindings(site, line), sort_keys=False))
            self.lines[line.name] = LineProcess(line, ports[line.name], bindings, workdir / f"{line.name}.log")
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    def command(self, entry: LineProcess) -> list[str]:
        command = [sys.executable, "-m", "twin.cli", "serve", str(entry.line.layout), "--bindings",
                   str(entry.bindings), "--host", "127.0.0.1", "--port", str(entry.port)]
        if self.site.tokens is not None:
            command += ["--tokens", str(self.site.tokens)]  # one token works on the site and on every line
        return command

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep_running(entry), name=f"line-{name}")
                       for name, entry in self.lines.items()]

    async def _keep_running(self, entry: LineProcess) -> None:
        backoff = MIN_BACKOFF_S
        while not self._stopping:
            with entry.log_path.open("ab") as output:
                entry.process = await asyncio.create_subprocess_exec(
                    *self.command(entry), stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                    start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            entry.started, entry.starts = time.monotonic(), entry.starts + 1
            log.info("line %s: started (pid %d, port %d)", entry.line.name, entry.process.pid, entry.port)
            entry.last_exit = await entry.process.wait()
            if self._stopping:
                return
            if time.monotonic() - entry.started > STEADY_S:
                backoff = MIN_BACKOFF_S
            log.warning("line %s: exited with %s; starting again in %.0f s (its log: %s)%s", entry.line.name,
                        entry.last_exit, backoff, entry.log_path, _tail(entry.log_path))
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def stop(self) -> None:
        """SIGTERM to each line's process group, SIGKILL to what is left after the grace period."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        running = [entry.process for entry in self.lines.values() if entry.running and entry.process]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        if running:
            await asyncio.wait([asyncio.create_task(process.wait()) for process in running],
                                         timeout=STOP_GRACE_S)
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def describe(self, name: str) -> dict:
        return self.lines[name].describe()


def _tail(path: Path, lines: int = 12) -> str:
    with contextlib.suppress(OSError):
        text = path.read_bytes()[-4000:].decode(errors="replace").splitlines()[-lines:]
        return "\n  " + "\n  ".join(text) if text else ""
    return ""
