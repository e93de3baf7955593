"""The renderer processes of this agent's Chromium, watched from outside through /proc (psutil).

A template runs in a renderer process; each job's browser context has its own. What a page cannot
be trusted to report about itself is read here: a renderer whose resident memory passes the limit
is killed (its page crashes and the job fails as TEMPLATE_RESOURCE_LIMIT), and a frame that never
returns is told from a slow machine by the CPU time its renderer burns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import psutil

log = logging.getLogger("framefleet.agent")

RENDERER_FLAG = "--type=renderer"
POLL_SECONDS = 0.2
# A memory kill explains a page crash seen this soon after it.
KILL_ATTRIBUTION_SECONDS = 10.0


def renderers() -> dict[int, psutil.Process]:
    """This process's Chromium renderers (descendants only: other agents' are not ours)."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if RENDERER_FLAG in child.cmdline():
                found[child.pid] = child
    return found


class RendererWatch:
    """Kills renderers that grow past ``memory_limit`` bytes (0: no limit), polling while the
    agent runs, and remembers the kills so the crashed page can name the cause."""

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self._kills: list[tuple[float, int]] = []  # (monotonic time, RSS at the kill)

    async def run(self) -> None:
        if not self.memory_limit:
            return
        while True:
            for rss in await asyncio.to_thread(self._kill_oversized):
                log.warning("renderer killed: memory limit", extra={"rss_mib": rss >> 20})
            await asyncio.sleep(POLL_SECONDS)

    def _kill_oversized(self) -> list[int]:
        killed = []
        for process in renderers().values():
            with contextlib.suppress(psutil.Error):
                rss = int(process.memory_info().rss)
                if rss > self.memory_limit:
                    # Noted before the kill, so the page's crash always finds it.
                    self._kills.append((time.monotonic(), rss))
                    process.kill()
                    killed.append(rss)
        return killed

    def take_memory_kill(self) -> int | None:
        """The RSS of a renderer killed for memory in the last few seconds, if any; each kill
        explains one crashed page (a renderer hosts one job's context)."""
        now = time.monotonic()
        self._kills = [k for k in self._kills if now - k[0] < KILL_ATTRIBUTION_SECONDS]
        return self._kills.pop(0)[1] if self._kills else None


def _main_thread_seconds(process: psutil.Process) -> tuple[float, float]:
    """Seconds the renderer's main thread (where a template's JavaScript runs) has spent on a
    CPU, and on a CPU or waiting in the run queue for one (from /proc/PID/schedstat)."""
    on_cpu, waiting, _ = Path(f"/proc/{process.pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, (int(on_cpu) + int(waiting)) / 1e9


async def spinning_renderers(cpu_seconds: float, within: float) -> dict[int, psutil.Process]:
    """Renderers whose main thread spends ``cpu_seconds`` on the CPU from now on, watched for
    as long as some renderer keeps wanting the CPU (running or runnable; a starved machine gives
    a loop less of it, so it takes longer) and at most ``within`` seconds. A renderer that
    sleeps (waits on a timer, the network, a promise) is not spinning."""
    start = {}
    for pid, process in (await asyncio.to_thread(renderers)).items():
        with contextlib.suppress(OSError):
            start[pid] = (process, _main_thread_seconds(process))
    began = time.monotonic()
    while True:
        await asyncio.sleep(POLL_SECONDS)
        elapsed = time.monotonic() - began
        spinning, wanting = {}, False
        for pid, (process, (cpu0, wanted0)) in start.items():
            try:
                cpu, wanted = _main_thread_seconds(process)
            except OSError:
                continue  # it exited
            if cpu - cpu0 >= cpu_seconds:
                spinning[pid] = process
            elif wanted - wanted0 >= 0.8 * elapsed:
                wanting = True
        if elapsed >= within or (elapsed >= 1.0 and not wanting):
            return spinning


async def any_exit(processes: dict[int, psutil.Process], within: float) -> bool:
    """Whether one of ``processes`` exits within ``within`` seconds."""
    gone, _ = await asyncio.to_thread(psutil.wait_procs, list(processes.values()), within)
    return bool(gone)
