"""Polls the EC2 spot interruption notice (the ``spot/instance-action`` document) and starts a
drain when one appears: the instance has about two minutes left."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

log = logging.getLogger("framefleet.agent")


def fetch_notice(url: str) -> str | None:
    """The notice's action ("terminate", "stop", "hibernate"), or None while there is none
    (the metadata service answers 404 until an interruption is scheduled)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            document = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    action = document.get("action") if isinstance(document, dict) else None
    return action if isinstance(action, str) else None


async def watch_spot_notice(
    url: str, interval: float, on_notice: Callable[[str], Awaitable[None]]
) -> None:
    while True:
        action = await asyncio.to_thread(fetch_notice, url)
        if action is not None:
            log.warning("spot interruption notice", extra={"action": action, "url": url})
            await on_notice(action)
            return
        await asyncio.sleep(interval)
