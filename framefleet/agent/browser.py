"""Debian's chromium-headless-shell, driven by Playwright: never a downloaded browser."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from playwright.async_api import Browser, Playwright, async_playwright

log = logging.getLogger("framefleet.agent")

CHROMIUM = os.environ.get("FRAMEFLEET_CHROMIUM", "/usr/bin/chromium-headless-shell")

# Offline and reproducible: no background traffic, same text and colour on every host.
CHROMIUM_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-gpu",
    "--font-render-hinting=none",
    "--force-color-profile=srgb",
    "--disable-lcd-text",
    "--disable-skia-runtime-opts",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
]

# Nothing leaves a page: every request is answered by the agent (context routing), and what
# routing does not see has nowhere to go. WebRTC may not use UDP without a proxy, and the only
# proxy (for loopback too) does not exist; no host name resolves.
ISOLATION_FLAGS = [
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--proxy-server=http://proxy.framefleet.invalid:1",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def sandboxed(wanted: bool = True) -> bool:
    """Chromium's sandbox is on unless we are root, where it cannot start, or the operator
    turned it off (a kernel without unprivileged user namespaces). It needs those namespaces
    (docs/how-to/secure.md, "Page isolation")."""
    if wanted and os.geteuid() == 0:
        log.warning("running as root: Chromium's sandbox is off; run agents as another user")
    elif not wanted:
        log.warning("Chromium's sandbox is off (--no-chromium-sandbox)")
    return wanted and os.geteuid() != 0


# How frames are captured. "beginframe": the agent drives Chromium's frames itself
# (HeadlessExperimental.beginFrame; --deterministic-mode turns on begin-frame control and runs
# every compositor stage before a frame is drawn), so capture is not paced by vsync and can tell
# unchanged frames. "screenshot": Page.captureScreenshot on a normally scheduled page, the
# fallback for a Chromium without begin-frame control.
CAPTURE_MODES = ("beginframe", "screenshot")
CAPTURE = os.environ.get("FRAMEFLEET_CAPTURE", "beginframe")
BEGIN_FRAME_FLAGS = ["--deterministic-mode"]


def _check_executable(executable: str) -> None:
    if not os.access(executable, os.X_OK):
        raise RuntimeError(
            f"no Chromium at {executable}: install Debian's chromium-headless-shell "
            "or set FRAMEFLEET_CHROMIUM"
        )


async def start_driver() -> Playwright:
    """Playwright's driver: a Node process that speaks to Chromium for us. Its start (about half
    a second) is most of a launch, so an agent starts one, early, for all its Chromiums."""
    return await async_playwright().start()


@dataclass
class Chromium:
    playwright: Playwright
    browser: Browser
    # Launched through a driver that others share (an agent's): closing leaves it running.
    shared_driver: bool = False

    @classmethod
    async def launch(
        cls,
        executable: str = CHROMIUM,
        capture: str = CAPTURE,
        sandbox: bool = True,
        driver: Playwright | None = None,
    ) -> Chromium:
        """A Chromium, through ``driver`` if given, else through a driver of its own."""
        _check_executable(executable)
        if capture not in CAPTURE_MODES:
            raise ValueError(f"FRAMEFLEET_CAPTURE must be one of {', '.join(CAPTURE_MODES)}")
        capture_flags = BEGIN_FRAME_FLAGS if capture == "beginframe" else []
        playwright = driver or await start_driver()
        try:
            browser = await playwright.chromium.launch(
                executable_path=executable,
                args=[*CHROMIUM_FLAGS, *ISOLATION_FLAGS, *capture_flags],
                headless=True,
                chromium_sandbox=sandboxed(sandbox),
            )
        except BaseException as e:
            if driver is None:
                await playwright.stop()
            if "No usable sandbox" in str(e):
                raise RuntimeError(
                    "Chromium's sandbox cannot start: it needs unprivileged user namespaces "
                    "(docs/how-to/secure.md, Page isolation), or run the agent with "
                    "--no-chromium-sandbox"
                ) from e
            raise
        return cls(playwright, browser, shared_driver=driver is not None)

    async def close(self) -> None:
        try:
            await self.browser.close()
        finally:
            if not self.shared_driver:
                await self.playwright.stop()
