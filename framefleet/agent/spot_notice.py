"""Polls the EC2 spot interruption notice (the ``spot/instance-action`` document) and starts a
drain when one appears: the instance has about two minutes left.

Agents are fit for spot by default: on EC2 (detected from the machine's DMI data) the notice is
polled unless turned off, and the drain grace fits inside the notice: the notice is seen within
one poll interval, running jobs get ``DRAIN_GRACE`` seconds, the rest is handed back and the
hand-back acknowledged (a few seconds) before the instance goes.

EC2's metadata service may require IMDSv2: a session token from ``PUT /latest/api/token``
sent with every read. The token is fetched when the service offers one (and refreshed when a
read is refused); a service without tokens (IMDSv1, or a test server) is read directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger("framefleet.agent")

TOKEN_TTL_SECONDS = 21600
EC2_URL = "http://169.254.169.254/latest/meta-data/spot/instance-action"
NOTICE_SECONDS = 120  # what EC2 promises between the notice and the interruption
POLL_INTERVAL = 5.0
DRAIN_GRACE = 100.0  # the notice, less a poll interval and the hand-back, with room to spare
DMI = Path("/sys/devices/virtual/dmi/id")
XEN_UUID = Path("/sys/hypervisor/uuid")


def on_ec2(dmi: Path = DMI, xen_uuid: Path = XEN_UUID) -> bool:
    """Whether this machine is an EC2 instance: Nitro instances name "Amazon EC2" in their
    DMI vendor fields, older Xen ones have a hypervisor UUID starting "ec2"."""
    for field in ("sys_vendor", "board_vendor", "bios_vendor"):
        try:
            if "amazon ec2" in (dmi / field).read_text().lower():
                return True
        except OSError:
            pass
    try:
        return xen_uuid.read_text().lower().startswith("ec2")
    except OSError:
        return False


def notice_url(setting: str, ec2: Callable[[], bool] = on_ec2) -> str | None:
    """The URL to poll for ``--spot-notice-url``: ``auto`` is EC2's own on EC2 and nothing
    elsewhere, ``off`` is nothing, anything else is that URL."""
    if setting == "off":
        return None
    if setting == "auto":
        return EC2_URL if ec2() else None
    return setting


def fetch_token(url: str) -> str | None:
    """An IMDSv2 session token from the service behind ``url``, or None if it offers none."""
    parsed = urlparse(url)
    request = urllib.request.Request(
        f"{parsed.scheme}://{parsed.netloc}/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.read().decode().strip() or None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def fetch_notice(url: str, token: str | None = None) -> str | None:
    """The notice's action ("terminate", "stop", "hibernate"), or None while there is none
    (the metadata service answers 404 until an interruption is scheduled). Raises
    PermissionError when the service wants a (new) token."""
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as r:
            document = json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise PermissionError("the metadata service wants an IMDSv2 token") from e
        return None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    action = document.get("action") if isinstance(document, dict) else None
    return action if isinstance(action, str) else None


def poll_once(url: str, token: str | None) -> tuple[str | None, str | None]:
    """One read, fetching a token first if the service refuses without one."""
    try:
        return fetch_notice(url, token), token
    except PermissionError:
        token = fetch_token(url)
        try:
            return fetch_notice(url, token), token
        except PermissionError:
            return None, None


async def watch_spot_notice(
    url: str, interval: float, on_notice: Callable[[str], Awaitable[None]]
) -> None:
    token = await asyncio.to_thread(fetch_token, url)
    while True:
        action, token = await asyncio.to_thread(poll_once, url, token)
        if action is not None:
            log.warning("spot interruption notice", extra={"action": action, "url": url})
            await on_notice(action)
            return
        await asyncio.sleep(interval)
