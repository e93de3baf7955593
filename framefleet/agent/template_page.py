"""One Chromium page that renders templates: load (offline, from the job's bundle), wait until
ready, seek to a virtual time, capture.

The page lives alone in its own browser context, and the context, not the page, is what keeps
it in: every request of every page and worker in it is answered from the job's bundle or
refused; any other page (a popup, ``window.open``) is closed at once and a navigation away is
refused, and either fails the job as TEMPLATE_FORBIDDEN."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import mimetypes
import re
import weakref
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

from playwright.async_api import Browser, BrowserContext, CDPSession, Frame, Page, Route
from playwright.async_api import Error as PlaywrightError

from framefleet.agent import hf_fonts, hf_quality
from framefleet.agent.renderers import RendererWatch, any_exit, spinning_renderers
from framefleet.core import jobspec
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

RUNTIME_FILES = ("virtualclock.js", "timecontrol.js", "hyperframes.js")
# The runtime's own failures name their class: "framefleet:CLASS: message".
CLASSED = re.compile(r"framefleet:([A-Z_]+): (.*)")
# The most of a template's throw kept in a job's error message.
THROWN_CHARS = 500
# Templates are served from this origin by request interception; nothing else is reachable.
ORIGIN = "http://template.framefleet.invalid"
INDEX = f"{ORIGIN}/index.html"
# Virtual time, then the HyperFrames runtime on top of it.
RUNTIME_JS = "\n".join(files("framefleet.agent").joinpath(f).read_text() for f in RUNTIME_FILES)
# What a dedicated worker's script gets in front of it (the page's runtime marks its URL).
WORKER_MARK = "__framefleet_worker"
WORKER_CLOCK = b"".join(
    files("framefleet.agent").joinpath(f).read_bytes() + b"\n"
    for f in ("virtualclock.js", "workerclock.js")
)
DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)
# A frame past its timeout is the template's (an endless loop) when its renderer's main thread
# then spends this much more time on the CPU, watched while it keeps wanting the CPU (longer on a
# starved machine) up to HANG_PROBE_SECONDS; a renderer that sleeps instead is not looping.
HANG_CPU_SECONDS = 0.5
HANG_PROBE_SECONDS = 15.0
# After the first frame's timeout, how much longer an onSeek promise may take to settle before
# it counts as never settling (a template error) rather than slow (a retryable timeout).
SEEK_GRACE = 5.0
SEEK_SETTLED = """() => new Promise((settled) => {
  const check = () => (window.__framefleet.waitingOnSeek ? setTimeout(check, 50) : settled());
  check();
})"""
JPEG = {"format": "jpeg", "optimizeForSpeed": True}  # at the job's quality (agent/hf_quality.py)
PNG = {"format": "png", "optimizeForSpeed": True}  # with alpha, for transparent outputs
# BeginFrame timestamps only have to increase: templates see the runtime's virtual time instead.
TICK_MS = 1000 / 60
# One BeginFrame at a time per browser: two pages of one Chromium drawing BeginFrames at once
# get frames without pictures ("Chromium drew no picture"), so an agent's slots take turns for
# the draw itself (seek, encode and everything else still overlap). bench/README.md, "Slots".
_DRAWING: weakref.WeakKeyDictionary[Browser, asyncio.Lock] = weakref.WeakKeyDictionary()


def script_tag(code: str) -> str:
    return "<script>" + code.replace("</", "<\\/") + "</script>"


def page_html(html: str, params: dict[str, Any], prelude: str = "") -> str:
    """The template's HTML with ``prelude`` and then its parameters in place before any
    template script runs (after the doctype, so the page keeps standards mode)."""
    head = prelude + script_tag(f"window.__framefleetParams = {json.dumps(params)};")
    match = DOCTYPE.match(html)
    cut = match.end() if match else 0
    return html[:cut] + head + html[cut:]


def first_line(thrown: str) -> str:
    """What of a template's throw is kept: its first line, at most THROWN_CHARS (the template
    writes it; it travels in the job's result and is stored with the job)."""
    lines = thrown.strip().splitlines()
    line = lines[0] if lines else "(nothing)"
    return line if len(line) <= THROWN_CHARS else line[:THROWN_CHARS] + "…"


def template_error(message: str) -> FramefleetError:
    """What a template's throw means: its own error class (``framefleet:CLASS: message``), or
    a script error with the throw's first line."""
    line = first_line(message)
    classed = CLASSED.search(line)
    if classed and classed[1] in ErrorClass.__members__:
        return FramefleetError(ErrorClass(classed[1]), classed[2])
    return FramefleetError(ErrorClass.TEMPLATE_SCRIPT_ERROR, f"the template threw: {line}")


class TemplatePage:
    def __init__(
        self, context: BrowserContext, page: Page, cdp: CDPSession, watch: RendererWatch
    ) -> None:
        self.context = context
        self.page = page
        self._cdp = cdp
        self._watch = watch
        self._bundle: dict[str, bytes] = {}
        # (source key, width, height) of the template loaded now, for in-place swaps.
        self._loaded: tuple[str, int, int, float] | None = None
        self._scale = 1.0  # the device scale factor the page draws at (a resolution preset)
        self.renders = 0
        self._thrown = ""  # the first error the page threw (uncaught), if any
        self.crashed = False
        # Set when a wait timed out: the renderer may still be busy, so the page is replaced.
        self.stuck = False
        # What the template tried that a page may not do (a popup, a navigation away): the
        # job fails as TEMPLATE_FORBIDDEN and the context is never reused.
        self.forbidden = ""
        self._left = asyncio.Event()  # set with ``forbidden``
        # Set when the renderer was killed for its memory (the RSS then), or burned CPU through
        # a frame that never returned: the template's failures, not the machine's.
        self._over_memory: int | None = None
        self._hung = ""
        # The one main-frame navigation the page expects (to INDEX, from _navigate).
        self._navigation_expected = False
        # Frames are drawn by BeginFrames (set by ``open`` when Chromium allows it), else captured
        # with screenshots.
        self.begin_frames = False
        self._ticks = 0.0
        # The last picture of this load, and whether the page changed between the last two
        # (then the next frame is drawn at once instead of asking first whether it changed).
        self._last: bytes | None = None
        self._moving = True
        self.frames_reused = 0  # frames of this load that repeat the previous picture
        # Capture with alpha (PNG, over no default background) for formats that keep it.
        self._alpha = False
        self._jpeg_quality = hf_quality.JPEG_QUALITY
        # Families a HyperFrames composition names that no face resolves (agent/hf_fonts.py).
        self.unresolved_fonts: list[str] = []
        page.on("pageerror", self._on_page_error)
        page.on("crash", self._on_crash)
        page.on("framenavigated", self._check_navigation)
        context.on("page", self._refuse_page)

    @classmethod
    async def open(
        cls, context: BrowserContext, watch: RendererWatch | None = None
    ) -> TemplatePage:
        page = await context.new_page()
        await page.add_init_script(RUNTIME_JS)
        cdp = await context.new_cdp_session(page)
        self = cls(context, page, cdp, watch or RendererWatch(0))
        await context.route("**/*", self._serve)
        self.begin_frames = await self._probe_begin_frames()
        return self

    async def _probe_begin_frames(self) -> bool:
        try:
            await self._begin_frame(screenshot=False)
        except PlaywrightError:
            return False  # no begin-frame control in this browser: screenshots instead
        return True

    async def close(self) -> None:
        await self.context.close()

    def _forbid(self, what: str) -> None:
        self.forbidden = self.forbidden or what
        self._left.set()

    def _check_navigation(self, frame: Frame) -> None:
        # Navigations without a request (history.back() to about:blank) pass no route.
        if frame.parent_frame is None and frame.url.split("#", 1)[0] != INDEX:
            self._forbid(f"the template navigated to {frame.url[:200]}")

    async def _note_navigation(self, error: PlaywrightError) -> None:
        # Our script's page went away under it (page.evaluate's words, then CDP's): the event
        # saying where to may come just after.
        message = str(error.message)
        gone = "context was destroyed" in message or "target navigated or closed" in message
        if gone and not self.forbidden:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._left.wait()

    async def _refuse_page(self, page: Page) -> None:
        self._forbid(f"the template opened another page ({page.url})")
        with contextlib.suppress(PlaywrightError):
            await page.close()

    def _on_page_error(self, error: PlaywrightError) -> None:
        if not self._thrown:  # the first is the one reported; one throwing in a loop holds
            self._thrown = first_line(str(error))  # no memory

    def _on_crash(self, _: Page) -> None:
        self.crashed = True
        self._over_memory = self._watch.take_memory_kill()

    async def _serve(self, route: Route) -> None:
        request = route.request
        url, _, query = request.url.split("#", 1)[0].partition("?")
        body = self._bundle.get(url)
        if body is not None and WORKER_MARK in parse_qs(query):
            body = WORKER_CLOCK + body  # a worker the page started: on the page's clock
        if request.is_navigation_request():
            try:
                frame: Frame | None = request.frame
            except PlaywrightError:
                frame = None  # a page being opened: refused (and closed by _refuse_page)
            if frame is None:
                body = None
            elif frame.parent_frame is None:
                if frame.page != self.page or not self._navigation_expected or url != INDEX:
                    self._forbid(f"the template navigated to {request.url[:200]}")
                    body = None
                self._navigation_expected = False
        if body is None:
            await route.abort("blockedbyclient")
            return
        content_type = "text/html" if url == INDEX else mimetypes.guess_type(url)[0]
        await route.fulfill(status=200, body=body, content_type=content_type)

    def raise_if_broken(self) -> None:
        """Raises the failure the template or the browser caused, if there was one."""
        if self.forbidden:
            raise FramefleetError(ErrorClass.TEMPLATE_FORBIDDEN, self.forbidden)
        if self._hung:
            raise FramefleetError(ErrorClass.TEMPLATE_FRAME_TIMEOUT, self._hung)
        if self.crashed and self._over_memory is not None:
            raise FramefleetError(
                ErrorClass.TEMPLATE_RESOURCE_LIMIT,
                f"the template's renderer grew to {self._over_memory >> 20} MiB, past the "
                f"page memory limit of {self._watch.memory_limit >> 20} MiB",
            )
        if self.crashed:
            raise FramefleetError(ErrorClass.BROWSER_CRASHED, "the Chromium page crashed")
        if self._thrown:
            raise FramefleetError(
                ErrorClass.TEMPLATE_SCRIPT_ERROR, f"the template threw: {self._thrown}"
            )

    async def load(
        self,
        template: pb.Template,
        params: dict[str, Any],
        size: tuple[int, int],
        ready_timeout: float,
        source_key: str = "",
        scale: float = 1.0,
    ) -> bool:
        """Makes the page show the template with these parameters at t = 0, ready to capture.
        When the same template is loaded already, the parameters are swapped in place (no
        reload); returns True when it did that."""
        self._thrown = ""
        self._last, self._moving, self.frames_reused = None, True, 0
        loaded = (source_key, *size, scale)
        swap = bool(source_key) and self._loaded == loaded
        self._loaded = None  # until this load succeeds
        try:
            async with asyncio.timeout(ready_timeout):
                if swap:
                    swap = await self._run_template("p => window.__framefleet.swap(p)", params)
                if not swap:
                    await self._navigate(template, params, size, scale)
                self.raise_if_broken()
                await self._run_template("() => window.__framefleet.ready()")
        except TimeoutError:
            self.stuck = True
            self.raise_if_broken()
            raise FramefleetError(
                ErrorClass.TEMPLATE_READY_TIMEOUT,
                f"the template was not ready within {ready_timeout:g}s",
            ) from None
        except PlaywrightError as e:
            await self._note_navigation(e)
            self.raise_if_broken()
            raise FramefleetError(ErrorClass.TEMPLATE_LOAD_ERROR, f"loading failed: {e}") from e
        self.raise_if_broken()
        self._loaded = loaded
        return swap

    async def _navigate(
        self, template: pb.Template, params: dict[str, Any], size: tuple[int, int], scale: float
    ) -> None:
        self._bundle = {f"{ORIGIN}/{path}": data for path, data in template.assets.items()}
        self._bundle[INDEX] = page_html(template.html, params).encode()
        # A HyperFrames composition gets the fonts HyperFrames would give it (agent/hf_fonts.py).
        self.unresolved_fonts = []
        if "data-composition-id" in template.html:
            self.unresolved_fonts = hf_fonts.apply(self._bundle, INDEX, ORIGIN)
        await self.page.set_viewport_size({"width": size[0], "height": size[1]})
        if scale != 1.0 or self._scale != 1.0:
            await self._scale_view(size, scale)
        self._navigation_expected = True
        await self.page.goto(INDEX, wait_until="load")

    async def _scale_view(self, size: tuple[int, int], scale: float) -> None:
        """A resolution preset: the same layout (``size`` CSS pixels), drawn at ``scale``
        device pixels per CSS pixel into a view of the output's size. BeginFrame pictures are
        the view's: the device scale factor alone draws finer but shrinks back to ``size``,
        so the view is scaled by as much and sized to match (scale 1: back to normal)."""
        metrics: dict[str, Any] = {"width": size[0], "height": size[1], "mobile": False}
        metrics.update(deviceScaleFactor=scale, scale=scale, dontSetVisibleSize=scale != 1.0)
        await self._cdp.send("Emulation.setDeviceMetricsOverride", metrics)
        if scale != 1.0:
            visible = {"width": round(size[0] * scale), "height": round(size[1] * scale)}
            await self._cdp.send("Emulation.setVisibleSize", visible)
        self._scale = scale

    async def _run_template(self, script: str, arg: Any = None) -> Any:
        """Evaluates runtime code that calls into the template: a throw is the template's,
        of the class the runtime names when it names one."""
        try:
            return await self.page.evaluate(script, arg)
        except PlaywrightError as e:
            await self._note_navigation(e)
            self.raise_if_broken()
            raise template_error(str(e.message or e)) from e

    # For the agent's own page runtime calls (timecontrol.js) that may reach template code.
    run_runtime = _run_template

    async def _seek_never_settles(self, grace: float) -> bool:
        """True when the page still waits on an onSeek promise ``grace`` seconds on: one that
        settles meanwhile was slow (the machine's trouble), not never settling."""
        try:
            async with asyncio.timeout(grace):
                await self.page.evaluate(SEEK_SETTLED)
                return False
        except TimeoutError:
            return True
        except PlaywrightError:
            return False

    async def sound_clips(self) -> list[dict[str, Any]]:
        """The page's audible media and where they play (see timecontrol.js soundClips)."""
        clips: list[dict[str, Any]] = await self._run_template(
            "() => window.__framefleet.soundClips()"
        )
        return clips

    async def composition_frames(self, fps: int) -> int:
        """A HyperFrames composition's frame count at ``fps`` when its root declares no
        duration: HyperFrames' rule (framefleet/agent/hyperframes.js compositionLength)."""
        seconds = float(
            await self._run_template("() => window.__framefleet.compositionLength?.() ?? 0") or 0
        )
        frames = round(seconds * fps)
        if not 0 < seconds <= jobspec.MAX_SECONDS or frames < 1:
            raise FramefleetError(
                ErrorClass.TEMPLATE_UNSUPPORTED,
                f"the composition's length is {seconds:g}s: its root has no data-duration and "
                "neither its timeline nor its timed clips give it 1 frame to "
                f"{jobspec.MAX_SECONDS}s; set data-duration or --duration",
            )
        return frames

    async def heap_bytes(self) -> int:
        """The page's JavaScript heap in use, for the recycling bound."""
        usage = await self._cdp.send("Runtime.getHeapUsage")
        return int(usage["usedSize"])

    async def _blame_hang(self, what: str) -> None:
        """After a frame overran: if a renderer keeps spinning on the CPU and is the one that
        goes away when this page's context is closed, the frame is in an endless loop (the
        template's fault, not retried); otherwise the machine or browser stalled (retryable)."""
        busy = await spinning_renderers(HANG_CPU_SECONDS, HANG_PROBE_SECONDS)
        with contextlib.suppress(PlaywrightError):
            await self.close()
        if busy and await any_exit(busy, within=5.0):
            self._hung = f"{what} and its renderer kept spinning on the CPU: an endless loop?"

    async def _capture(self) -> bytes:
        """Draws the frame, unless the template leaves the page meanwhile: a picture of a page
        that is going away may never come, and the navigation is the template's error."""
        draw = asyncio.ensure_future(self._draw() if self.begin_frames else self._screenshot())
        draw.add_done_callback(lambda task: task.cancelled() or task.exception())
        left = asyncio.ensure_future(self._left.wait())
        try:
            await asyncio.wait({draw, left}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
            if not draw.done():
                draw.cancel()
        self.raise_if_broken()
        return await draw

    async def frame(self, ms: float, limit: float) -> bytes:
        """Seeks to virtual time ``ms`` and captures the frame as JPEG. A frame that shows the
        same picture as the previous one returns that very ``bytes`` object."""
        try:
            async with asyncio.timeout(limit):
                # The template's throws come back in the result; an error of the call itself is
                # the page leaving (TEMPLATE_FORBIDDEN) or the browser or its driver going.
                thrown = await self._seek(ms)
                self.raise_if_broken()
                if thrown is not None:
                    raise template_error(thrown)
                image = await self._capture()
        except TimeoutError:
            self.stuck = True
            # The first frame never drew: the template's doing, not the machine's. (A chunk
            # that starts later is retried instead; the job's chunk at t=0 fails it.)
            if ms == 0 and await self._seek_never_settles(SEEK_GRACE):
                raise FramefleetError(
                    ErrorClass.TEMPLATE_SCRIPT_ERROR,
                    f"the promise framefleet.onSeek's callback returned for t=0 did not settle "
                    f"within {limit + SEEK_GRACE:g}s",
                ) from None
            await self._blame_hang(f"frame at {ms:.0f} ms took over {limit:g}s")
            self.raise_if_broken()
            raise FramefleetError(
                ErrorClass.CAPTURE_TIMEOUT, f"frame at {ms:.0f} ms took over {limit:g}s"
            ) from None
        except PlaywrightError as e:
            await self._note_navigation(e)
            self.raise_if_broken()
            raise FramefleetError(ErrorClass.BROWSER_CRASHED, f"capture failed: {e}") from e
        self.raise_if_broken()
        if image == self._last:
            image = self._last
            self.frames_reused += 1
        self._moving = image is not self._last
        self._last = image
        return image

    async def _seek(self, ms: float) -> str | None:
        """Seeks the page to ``ms``; what the template threw, if it did. Runtime.evaluate over
        the page's CDP session, not page.evaluate: it skips Playwright's in-page argument and
        result handling, about 2.5 ms of CPU and 2 ms of wall time a frame (bench/README.md,
        "Seek over CDP")."""
        result = await self._cdp.send(
            "Runtime.evaluate",
            {
                "expression": f"window.__framefleet.seek({float(ms)!r})",
                "awaitPromise": True,
                "returnByValue": True,
            },
        )
        thrown = result.get("exceptionDetails")
        if thrown is None:
            return None
        exception = thrown.get("exception") or {}
        return str(exception.get("description") or exception.get("value") or thrown.get("text"))

    @property
    def image_codec(self) -> str:
        """How the captured pictures are coded (for the encoder's decoder)."""
        return "png" if self._alpha else "mjpeg"

    async def set_capture(self, alpha: bool, jpeg_quality: int = hf_quality.JPEG_QUALITY) -> None:
        """Transparent pictures (PNG, where the page paints no background, alpha 0) or opaque
        ones (JPEG over Chromium's white default, at ``jpeg_quality``)."""
        if alpha != self._alpha:
            transparent = {"color": {"r": 0, "g": 0, "b": 0, "a": 0}} if alpha else {}
            await self._cdp.send("Emulation.setDefaultBackgroundColorOverride", transparent)
            self._alpha, self._last = alpha, None
        if jpeg_quality != self._jpeg_quality:
            self._jpeg_quality, self._last = jpeg_quality, None

    def _picture_format(self) -> dict[str, Any]:
        return PNG if self._alpha else {**JPEG, "quality": self._jpeg_quality}

    async def _screenshot(self) -> bytes:
        shot = await self._cdp.send("Page.captureScreenshot", self._picture_format())
        return base64.b64decode(shot["data"])

    async def _draw(self) -> bytes:
        """Draws one frame. While the page holds still, a BeginFrame without a screenshot first
        asks the compositor whether anything changed (cheap), and an unchanged frame reuses the
        last picture; a BeginFrame that takes a screenshot always redraws the whole page."""
        if self._last is not None and not self._moving:
            if not (await self._begin_frame(screenshot=False))["hasDamage"]:
                return self._last
        for _ in range(3):
            data = (await self._begin_frame(screenshot=True)).get("screenshotData")
            if data:
                return base64.b64decode(data)
        raise FramefleetError(ErrorClass.CAPTURE_TIMEOUT, "Chromium drew no picture")

    async def _begin_frame(self, screenshot: bool) -> dict[str, Any]:
        self._ticks += TICK_MS
        params: dict[str, Any] = {"frameTimeTicks": self._ticks, "interval": TICK_MS}
        if screenshot:
            params["screenshot"] = self._picture_format()
        browser = self.context.browser
        lock = _DRAWING.setdefault(browser, asyncio.Lock()) if browser else asyncio.Lock()
        async with lock:
            result: dict[str, Any] = await self._cdp.send("HeadlessExperimental.beginFrame", params)
        return result
