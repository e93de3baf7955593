"""One Chromium, and a fresh browser context (with its one page) for every job.

A context is reused only by the next job of the same isolation group (the rows of one batch:
one template, one tenant), so consecutive variants keep the warm parameter swap; any other job
gets a new context, and nothing of one job's page (globals, storage, popups, workers) is there
for the next. A warm context is given up after a number of renders, when its JavaScript heap
passes a bound, or at once if it crashed, hung or broke the rules. If the browser process itself
dies, it is relaunched (the job it was rendering fails as retryable)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agent import metrics
from agent.browser import Chromium
from agent.renderers import RendererWatch
from agent.template_page import TemplatePage

log = logging.getLogger("framefleet.agent")


class PagePool:
    def __init__(
        self,
        executable: str,
        slots: int,
        max_renders: int,
        max_heap_bytes: int,
        memory_limit_bytes: int = 0,
        sandbox: bool = True,
    ) -> None:
        self._executable = executable
        self._sandbox = sandbox
        self._slots = slots
        self._max_renders = max_renders
        self._max_heap = max_heap_bytes
        # Warm pages by isolation group, oldest first; at most one per slot.
        self._warm: dict[str, TemplatePage] = {}
        self._chromium: Chromium | None = None
        self._launching = asyncio.Lock()
        self.watch = RendererWatch(memory_limit_bytes)
        self._watching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._chromium = await Chromium.launch(self._executable, sandbox=self._sandbox)
        self._watching = asyncio.create_task(self.watch.run())

    def browser_up(self) -> bool:
        return self._chromium is not None and self._chromium.browser.is_connected()

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
        if self._chromium is not None:
            with contextlib.suppress(Exception):
                await self._chromium.close()

    async def _browser(self) -> Chromium:
        async with self._launching:
            if self._chromium is None or not self._chromium.browser.is_connected():
                if self._chromium is not None:
                    log.warning("Chromium died; relaunching")
                    metrics.BROWSER_RELAUNCHES.inc()
                    with contextlib.suppress(Exception):
                        await self._chromium.close()
                self._chromium = await Chromium.launch(self._executable, sandbox=self._sandbox)
            return self._chromium

    async def _open(self) -> TemplatePage:
        chromium = await self._browser()
        context = await chromium.browser.new_context(
            device_scale_factor=1, service_workers="block", accept_downloads=False
        )
        return await TemplatePage.open(context, self.watch)

    async def acquire(self, group: str = "") -> TemplatePage:
        """A page for one job: the warm one of its isolation group if there is one (only a
        non-empty group shares), else a fresh context."""
        page = self._warm.pop(group, None) if group else None
        if page is not None and not page.page.is_closed() and page.context.browser is not None:
            if page.context.browser.is_connected():
                return page
        return await self._open()

    async def release(self, page: TemplatePage, group: str = "") -> None:
        """Takes a page back after its job: kept warm for its group, or closed."""
        page.renders += 1
        reason = "" if group else "isolated"
        try:
            reason = reason or self._recycle_reason(page) or await self._heap_reason(page)
        finally:
            if reason or group in self._warm:
                if reason != "isolated":
                    log.info("recycling page", extra={"reason": reason, "renders": page.renders})
                    metrics.PAGE_RECYCLES.labels(reason.split(":")[0]).inc()
                with contextlib.suppress(Exception):
                    await page.close()
            else:
                self._warm[group] = page
                while len(self._warm) > self._slots:
                    oldest = self._warm.pop(next(iter(self._warm)))
                    with contextlib.suppress(Exception):
                        await oldest.close()

    def _recycle_reason(self, page: TemplatePage) -> str:
        if page.crashed:
            return "crashed"
        if page.stuck:
            return "hung"
        if page.forbidden:
            return "forbidden"
        if page.renders >= self._max_renders:
            return f"renders: {page.renders}"
        return ""

    async def _heap_reason(self, page: TemplatePage) -> str:
        try:
            heap = await page.heap_bytes()
        except Exception:
            return "unreachable"
        return f"heap: {heap >> 20} MiB" if heap > self._max_heap else ""
