"""One Chromium per slot, and a fresh browser context (with its one page) for every job.

Each job's page is in a Chromium that no other running job uses: pages of one Chromium take
turns to draw (framefleet/agent/template_page.py), so slots sharing one would capture one at a time
(bench/README.md, "One Chromium per slot").

A context is reused only by the next job of the same isolation group (the rows of one batch:
one template, one tenant), so consecutive variants keep the warm parameter swap; any other job
gets a new context, and nothing of one job's page (globals, storage, popups, workers) is there
for the next. A warm context is given up after a number of renders, when its JavaScript heap
passes a bound, or at once if it crashed, hung or broke the rules. If the browser process itself
dies, it is relaunched (the job it was rendering fails as retryable).

The Chromiums share one Playwright driver, which the agent may start before the pool exists (it
comes up while the agent imports the rest). If the driver dies, its Chromiums go with it: the next
page opened finds out and starts a fresh driver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Playwright

from framefleet.agent import metrics
from framefleet.agent.browser import Chromium, start_driver
from framefleet.agent.renderers import RendererWatch
from framefleet.agent.template_page import TemplatePage
from framefleet.core.errors import ErrorClass, FramefleetError

log = logging.getLogger("framefleet.agent")

# How long the driver has to answer a probe (or to stop) before it counts as gone.
DRIVER_PROBE_SECONDS = 5.0


class PagePool:
    def __init__(
        self,
        executable: str,
        slots: int,
        max_renders: int,
        max_heap_bytes: int,
        memory_limit_bytes: int = 0,
        sandbox: bool = True,
        driver: Awaitable[Playwright] | None = None,
    ) -> None:
        self._executable = executable
        # The driver being started for this pool (by the agent, early), then the one running.
        self._starting_driver = driver
        self._driver: Playwright | None = None
        self._driver_lock = asyncio.Lock()
        self._sandbox = sandbox
        self._slots = slots
        self._max_renders = max_renders
        self._max_heap = max_heap_bytes
        # Warm pages by isolation group, oldest first; at most one per slot.
        self._warm: dict[str, TemplatePage] = {}
        # One Chromium per slot (None until launched), and how many jobs each is rendering.
        self._chromiums: list[Chromium | None] = [None] * slots
        self._busy = [0] * slots
        self._lanes: dict[TemplatePage, int] = {}  # open page -> the slot holding its Chromium
        self._launching = [asyncio.Lock() for _ in range(slots)]
        self.watch = RendererWatch(memory_limit_bytes)
        self._watching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Launched side by side: an agent (and `framefleet render`) is ready a launch sooner.
        await asyncio.gather(*(self._browser(lane) for lane in range(self._slots)))
        self._watching = asyncio.create_task(self.watch.run())

    def browser_up(self) -> bool:
        return all(c is not None and c.browser.is_connected() for c in self._chromiums)

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
        # Side by side, as they were launched: an agent stopping waits for the slowest only.
        closing = [c.close() for c in self._chromiums if c is not None]
        await asyncio.gather(*closing, return_exceptions=True)
        await self._stop_driver()

    async def _playwright(self) -> Playwright:
        async with self._driver_lock:
            if self._driver is None:
                starting, self._starting_driver = self._starting_driver, None
                self._driver = await (starting or start_driver())
            return self._driver

    async def _stop_driver(self) -> None:
        async with self._driver_lock:
            if self._starting_driver is not None:  # never awaited: close what it started
                starting, self._starting_driver = self._starting_driver, None
                with contextlib.suppress(Exception):
                    self._driver = await starting
            driver, self._driver = self._driver, None
            if driver is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(DRIVER_PROBE_SECONDS):
                        await driver.stop()

    async def _driver_answers(self) -> bool:
        """Whether the driver still answers. A Chromium's is_connected() stays true when the
        driver under it has gone, so a failure asks the driver itself."""
        driver = self._driver
        if driver is None:
            return False
        try:
            async with asyncio.timeout(DRIVER_PROBE_SECONDS):
                request = await driver.request.new_context()
                await request.dispose()
        except Exception:
            return False
        return True

    async def _launch(self) -> Chromium:
        driver = await self._playwright()
        try:
            return await Chromium.launch(self._executable, sandbox=self._sandbox, driver=driver)
        except Exception:
            if not await self._driver_answers():
                await self._stop_driver()  # the next launch starts a fresh one
            raise

    async def _browser(self, lane: int) -> Chromium:
        async with self._launching[lane]:
            chromium = self._chromiums[lane]
            if chromium is None or not chromium.browser.is_connected():
                if chromium is not None:
                    log.warning("Chromium died; relaunching")
                    metrics.BROWSER_RELAUNCHES.inc()
                    with contextlib.suppress(Exception):
                        await chromium.close()
                self._chromiums[lane] = None
                chromium = await self._launch()
                self._chromiums[lane] = chromium
            return chromium

    async def _forget(self, lane: int) -> None:
        """Drops a lane's Chromium that failed; with the driver gone, every lane's (they went
        with it) and the driver, so the next launch starts a fresh one."""
        lanes = [lane]
        if not await self._driver_answers():
            log.warning("Playwright's driver is gone; starting a new one")
            await self._stop_driver()
            lanes = list(range(self._slots))
        for i in lanes:
            async with self._launching[i]:
                chromium, self._chromiums[i] = self._chromiums[i], None
            if chromium is not None:
                with contextlib.suppress(Exception):
                    await chromium.close()

    async def _open(self, lane: int) -> TemplatePage:
        """A fresh context and page in the lane's Chromium; where that Chromium (or the driver
        under it) has gone, once more in a fresh one."""
        for retry in (False, True):
            chromium = await self._browser(lane)
            try:
                context = await chromium.browser.new_context(
                    device_scale_factor=1, service_workers="block", accept_downloads=False
                )
                return await TemplatePage.open(context, self.watch)
            except PlaywrightError as e:
                await self._forget(lane)
                if retry:
                    message = f"cannot open a page: {e.message}"
                    raise FramefleetError(ErrorClass.BROWSER_CRASHED, message) from e
        raise AssertionError("unreachable")

    async def acquire(self, group: str = "") -> TemplatePage:
        """A page for one job, in a Chromium no other job is drawing in: the warm one of its
        isolation group if its Chromium is free (only a non-empty group shares), else a fresh
        context in the least busy Chromium."""
        warm = self._warm.get(group) if group else None
        if warm is not None:
            lane = self._lanes[warm]
            browser = warm.context.browser
            if warm.page.is_closed() or browser is None or not browser.is_connected():
                await self._close(self._warm.pop(group))
            elif self._busy[lane] == 0:
                del self._warm[group]
                self._busy[lane] += 1
                return warm
        lane = min(range(self._slots), key=lambda i: self._busy[i])
        self._busy[lane] += 1
        try:
            page = await self._open(lane)
            self._lanes[page] = lane
            return page
        except BaseException:
            self._busy[lane] -= 1
            raise

    async def release(self, page: TemplatePage, group: str = "") -> None:
        """Takes a page back after its job: kept warm for its group, or closed."""
        self._busy[self._lanes[page]] -= 1
        page.renders += 1
        reason = "" if group else "isolated"
        try:
            reason = reason or self._recycle_reason(page) or await self._heap_reason(page)
        finally:
            if reason or group in self._warm:
                if reason != "isolated":
                    log.info("recycling page", extra={"reason": reason, "renders": page.renders})
                    metrics.PAGE_RECYCLES.labels(reason.split(":")[0]).inc()
                await self._close(page)
            else:
                self._warm[group] = page
                while len(self._warm) > self._slots:
                    await self._close(self._warm.pop(next(iter(self._warm))))

    async def _close(self, page: TemplatePage) -> None:
        del self._lanes[page]
        with contextlib.suppress(Exception):
            await page.close()

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
