"""Debian's chromium-headless-shell, driven by Playwright: never a downloaded browser."""

from __future__ import annotations

import os
from dataclasses import dataclass

from playwright.async_api import Browser, Playwright, async_playwright

CHROMIUM = os.environ.get("FRAMEFLEET_CHROMIUM", "/usr/bin/chromium-headless-shell")

# Offline and reproducible: no background traffic, same text and colour on every host.
CHROMIUM_FLAGS = [
    "--no-sandbox",
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


def _check_executable(executable: str) -> None:
    if not os.access(executable, os.X_OK):
        raise RuntimeError(
            f"no Chromium at {executable}: install Debian's chromium-headless-shell "
            "or set FRAMEFLEET_CHROMIUM"
        )


@dataclass
class Chromium:
    playwright: Playwright
    browser: Browser

    @classmethod
    async def launch(cls, executable: str = CHROMIUM) -> Chromium:
        _check_executable(executable)
        playwright = await async_playwright().start()
        try:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_FLAGS, headless=True
            )
        except BaseException:
            await playwright.stop()
            raise
        return cls(playwright, browser)

    async def close(self) -> None:
        try:
            await self.browser.close()
        finally:
            await self.playwright.stop()
