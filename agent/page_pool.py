"""One Chromium and a page per slot. A page is recycled after a number of renders or when its
JavaScript heap passes a bound, and replaced at once if it crashed or hung; if the browser
process itself dies, it is relaunched (the job it was rendering fails as retryable)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agent import metrics
from agent.browser import Chromium
from agent.template_page import TemplatePage

log = logging.getLogger("framefleet.agent")


class PagePool:
    def __init__(self, executable: str, slots: int, max_renders: int, max_heap_bytes: int) -> None:
        self._executable = executable
        self._slots = slots
        self._max_renders = max_renders
        self._max_heap = max_heap_bytes
        self._idle: asyncio.Queue[TemplatePage] = asyncio.Queue()
        self._chromium: Chromium | None = None
        self._launching = asyncio.Lock()

    async def start(self) -> None:
        self._chromium = await Chromium.launch(self._executable)
        for _ in range(self._slots):
            self._idle.put_nowait(await self._open())

    async def close(self) -> None:
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
                self._chromium = await Chromium.launch(self._executable)
            return self._chromium

    async def _open(self) -> TemplatePage:
        chromium = await self._browser()
        context = await chromium.browser.new_context(device_scale_factor=1)
        return await TemplatePage.open(context)

    async def acquire(self) -> TemplatePage:
        page = await self._idle.get()
        if (
            page.page.is_closed()
            or not page.context.browser
            or not (page.context.browser.is_connected())
        ):
            page = await self._open()
        return page

    async def release(self, page: TemplatePage) -> None:
        """Returns a page after a render, replacing it when it is due for recycling."""
        page.renders += 1
        try:
            reason = self._recycle_reason(page) or await self._heap_reason(page)
            if reason:
                log.info("recycling page", extra={"reason": reason, "renders": page.renders})
                metrics.PAGE_RECYCLES.labels(reason.split(":")[0]).inc()
                with contextlib.suppress(Exception):
                    await page.close()
                page = await self._open()
        finally:
            self._idle.put_nowait(page)

    def _recycle_reason(self, page: TemplatePage) -> str:
        if page.crashed:
            return "crashed"
        if page.stuck:
            return "hung"
        if page.renders >= self._max_renders:
            return f"renders: {page.renders}"
        return ""

    async def _heap_reason(self, page: TemplatePage) -> str:
        try:
            heap = await page.heap_bytes()
        except Exception:
            return "unreachable"
        return f"heap: {heap >> 20} MiB" if heap > self._max_heap else ""
