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


def _cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


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


async def busy_renderers(seconds: float, share: float) -> dict[int, psutil.Process]:
    """Renderers that spent at least ``share`` of the next ``seconds`` on the CPU."""
    before = {pid: (p, _cpu_seconds(p)) for pid, p in (await asyncio.to_thread(renderers)).items()}
    await asyncio.sleep(seconds)
    return {
        pid: process
        for pid, (process, cpu) in before.items()
        if _cpu_seconds(process) - cpu >= share * seconds
    }


async def any_exit(processes: dict[int, psutil.Process], within: float) -> bool:
    """Whether one of ``processes`` exits within ``within`` seconds."""
    gone, _ = await asyncio.to_thread(psutil.wait_procs, list(processes.values()), within)
    return bool(gone)
