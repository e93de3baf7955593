"""The S3 connection every S3 operation shares: settings (from the environment), one client
per event loop and endpoint, the S3 URL's parts, and the one retry loop for S3 requests.

Configuration: endpoint, region and credentials come from the standard AWS settings as botocore
resolves them (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_REGION``, ``~/.aws/config``,
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, instance roles, ...). On top of those:

``FRAMEFLEET_S3_ENDPOINT``         endpoint of an S3-compatible store (wins over AWS_ENDPOINT_URL*)
``FRAMEFLEET_S3_ADDRESSING_STYLE`` auto, path or virtual (default: path when an endpoint is
                                   overridden, as most S3-compatible stores expect, else auto)
``FRAMEFLEET_S3_PART_SIZE``        part size, e.g. 8MiB (default and minimum: 5 MiB)
``FRAMEFLEET_S3_PARTS_IN_FLIGHT``  parts uploading at once per output (default 3)
``FRAMEFLEET_S3_MAX_ATTEMPTS``     attempts per request before OUTPUT_ERROR (default 5)
``FRAMEFLEET_S3_RETRY_BASE``       first retry delay in seconds, doubled per attempt (default 0.25)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlparse

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from framefleet.core.backoff import Backoff
from framefleet.core.errors import ErrorClass, FramefleetError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

log = logging.getLogger("framefleet.agent")

T = TypeVar("T")

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last

# Errors worth another attempt: throttling, server-side trouble, timeouts, corrupt transfers.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "BadDigest",
        "IncompleteBody",
    }
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'8MiB', '8M', '5242880' -> bytes (K, M, G are binary multiples)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[unit])


@dataclass(frozen=True)
class S3Settings:
    # S3's minimum: a 12 s 720p video is about 5.4 MiB at CRF 23, so with 8 MiB parts nothing
    # would go up before the last frame (bench/README.md, s3_upload). At most 48.8 GiB.
    part_size: int = MIN_PART_SIZE
    parts_in_flight: int = 3
    max_attempts: int = 5
    retry_base: float = 0.25
    retry_cap: float = 10.0
    # None: whatever botocore resolves (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, config files).
    endpoint_url: str | None = None
    addressing_style: str = "auto"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # How long an abort may take, cancellations included, before it gives up.
    abort_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE:
            raise ValueError(f"part size {self.part_size} is below S3's minimum of 5 MiB")
        if self.parts_in_flight < 1 or self.max_attempts < 1:
            raise ValueError("parts in flight and attempts must be at least 1")
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise ValueError(f"addressing style {self.addressing_style!r} is not auto|path|virtual")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> S3Settings:
        endpoint = env.get("FRAMEFLEET_S3_ENDPOINT") or None
        overridden = bool(endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"))
        part_size = cls.part_size
        if "FRAMEFLEET_S3_PART_SIZE" in env:
            part_size = parse_size(env["FRAMEFLEET_S3_PART_SIZE"])
            if part_size < MIN_PART_SIZE:
                log.warning(
                    "FRAMEFLEET_S3_PART_SIZE is below S3's 5 MiB minimum; using 5 MiB",
                    extra={"part_size": part_size},
                )
                part_size = MIN_PART_SIZE
        return cls(
            part_size=part_size,
            parts_in_flight=int(env.get("FRAMEFLEET_S3_PARTS_IN_FLIGHT", cls.parts_in_flight)),
            max_attempts=int(env.get("FRAMEFLEET_S3_MAX_ATTEMPTS", cls.max_attempts)),
            retry_base=float(env.get("FRAMEFLEET_S3_RETRY_BASE", cls.retry_base)),
            endpoint_url=endpoint,
            addressing_style=env.get(
                "FRAMEFLEET_S3_ADDRESSING_STYLE", "path" if overridden else "auto"
            ),
        )

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: exponential, jittered over its upper half."""
        return Backoff(self.retry_base, self.retry_cap).delay(attempt)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "")
        return status >= 500 or status in (408, 429) or code in TRANSIENT_CODES
    # Dropped connections, resets and timeouts, however they surface.
    return isinstance(
        error,
        (HTTPClientError, BotoConnectionError, aiohttp.ClientError, TimeoutError, OSError),
    )


def error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


# --- one client per agent process ------------------------------------------------------------


class SharedClient:
    """One aiobotocore S3 client (and its connection pool) for every upload on an event loop,
    created on first use. A keeper task owns it: when the loop shuts down (asyncio.run cancels
    every task) the keeper lets background aborts finish, then closes the client."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        # Aborts still running after their caller was cancelled: kept alive and waited for.
        self.background: set[asyncio.Task[None]] = set()
        self._ready: asyncio.Future[S3Client] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    async def get(self) -> S3Client:
        ready = self._ready
        if ready is None or (ready.done() and (ready.cancelled() or ready.exception())):
            ready = self._ready = self.loop.create_future()
            self._keeper = self.loop.create_task(self._keep(ready), name="s3-client")
        return await asyncio.shield(ready)

    def run_in_background(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def _keep(self, ready: asyncio.Future[S3Client]) -> None:
        s = self.settings
        config = AioConfig(
            # One retry policy, ours (retried, below): per request, exponential backoff, and
            # it also covers dropped connections. botocore's own retries are switched off.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            s3={"addressing_style": s.addressing_style},
            max_pool_connections=max(10, 4 * s.parts_in_flight),
        )
        try:
            async with get_session().create_client(
                "s3", endpoint_url=s.endpoint_url, config=config
            ) as client:
                ready.set_result(client)
                try:
                    await self._closing.wait()
                finally:
                    pending = [t for t in self.background if not t.done()]
                    if pending:
                        await asyncio.wait(pending, timeout=s.abort_timeout)
        except BaseException as e:
            if not ready.done():
                if isinstance(e, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(e)
            raise

    async def aclose(self) -> None:
        self._closing.set()
        if self._keeper is not None:
            with contextlib.suppress(Exception):
                await self._keeper


_shared: dict[tuple[int, str | None, str], SharedClient] = {}


def shared_client(settings: S3Settings) -> SharedClient:
    """The S3 client for the running loop and this endpoint, created on first use."""
    loop = asyncio.get_running_loop()
    for stale in [k for k, c in _shared.items() if c.loop.is_closed()]:
        del _shared[stale]
    key = (id(loop), settings.endpoint_url, settings.addressing_style)
    found = _shared.get(key)
    if found is None or found.loop is not loop:
        found = _shared[key] = SharedClient(settings)
    return found


async def close_shared_clients() -> None:
    """Closes the running loop's S3 clients (tests and benchmarks; the agent relies on the
    loop's shutdown)."""
    loop = asyncio.get_running_loop()
    for key, client in list(_shared.items()):
        if client.loop is loop:
            del _shared[key]
            await client.aclose()


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not bucket or not key or parsed.query or parsed.fragment:
        raise FramefleetError(
            ErrorClass.OUTPUT_ERROR, f"{url!r} is not an s3://bucket/key output URL"
        )
    return bucket, key


async def retried(
    client: SharedClient,
    what: str,
    op: Callable[[S3Client], Awaitable[T]],
    *,
    attempts: int | None = None,
    before_each: Callable[[], None] | None = None,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """One S3 request, ``op``, with retries: exponential backoff on transient errors; anything
    else, or running out of attempts (the settings' max_attempts unless given), is an
    OUTPUT_ERROR that says ``what`` failed. ``before_each`` runs before every attempt (it may
    raise to stop); ``pause`` waits out each backoff (it may end early)."""
    limit = attempts or client.settings.max_attempts
    attempt = 0
    while True:
        attempt += 1
        if before_each is not None:
            before_each()
        try:
            return await op(await client.get())
        except Exception as e:
            if not is_transient(e) or attempt >= limit:
                tries = f"after {attempt} attempts" if attempt > 1 else "(not retried)"
                message = f"{what} failed {tries}: {e}"
                raise FramefleetError(ErrorClass.OUTPUT_ERROR, message) from e
            log.warning(
                "s3 request failed, retrying",
                extra={"request": what, "attempt": attempt, "error": str(e)},
            )
            await pause(client.settings.backoff(attempt))
