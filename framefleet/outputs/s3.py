"""S3 output: the encoded MP4 streams into an S3 multipart upload while later frames are still
being captured, and becomes visible only when the upload completes.

The encoder thread calls ``S3Upload.write``; every ``part_size`` bytes are cut into a part with a
fixed part number and handed to the event loop, which uploads it. At most ``parts_in_flight``
parts are cut but not yet uploaded: past that, ``write`` blocks the encoder thread (and so the
capture loop behind it), so memory stays near (parts_in_flight + 1) x part_size however long the
video is. ``complete`` uploads the tail as the last part and completes the upload with every part
in order; any failure, cancellation or lost lease aborts it instead, so neither a half-written
object nor an orphaned multipart upload is left behind. An output smaller than one part is sent
with a single PutObject.

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
import contextvars
import io
import logging
import mimetypes
import os
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from framefleet.core.backoff import Backoff
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.telemetry import tracer

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("framefleet.agent")

T = TypeVar("T")

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum part number
CONTENT_TYPE = "video/mp4"  # unless the key's suffix says otherwise (.webm)


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or CONTENT_TYPE


# Outputs are named by content key: the bytes behind a name never change.
CACHE_CONTROL = "public, max-age=31536000, immutable"

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


def _error_code(error: BaseException) -> str:
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
            # One retry policy, ours (S3Upload._call): per request, exponential backoff, and
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


# --- one upload -------------------------------------------------------------------------------


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not bucket or not key or parsed.query or parsed.fragment:
        raise FramefleetError(
            ErrorClass.OUTPUT_ERROR, f"{url!r} is not an s3://bucket/key output URL"
        )
    return bucket, key


def _cut(buffer: bytearray, size: int) -> io.BytesIO:
    """Moves the first ``size`` bytes of ``buffer`` into a part. One copy, and only one: a
    BytesIO that owns its bytes is sent by botocore and aiohttp as it is, where bytes would be
    copied into a BytesIO again."""
    part = io.BytesIO()
    with memoryview(buffer) as view, view[:size] as head:
        part.write(head)
    del buffer[:size]
    return part


class _Stopped(Exception):
    """The upload is being aborted: stop retrying."""


@dataclass
class _State:
    """Shared between the encoder thread and the loop; guarded by S3Upload._cond."""

    parts_cut: int = 0
    parts_started: int = 0  # parts that reached the loop (uploading, or dropped if stopped)
    in_flight: int = 0
    max_in_flight: int = 0
    stopped: bool = False
    failure: FramefleetError | None = None
    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)


class S3Upload:
    """An ``outputs.Upload`` into ``s3://bucket/key`` (create it on the event loop)."""

    def __init__(
        self, url: str, settings: S3Settings | None = None, client: SharedClient | None = None
    ) -> None:
        self.url = url
        self.bucket, self.key = parse_s3_url(url)
        self.settings = settings or S3Settings.from_env()
        self._client = client or shared_client(self.settings)
        self._loop = asyncio.get_running_loop()
        self._cond = threading.Condition()
        self._state = _State()
        self._buffer = bytearray()
        self._parts: dict[int, CompletedPartTypeDef] = {}
        self._create: asyncio.Task[str] | None = None
        self._abort: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set on abort or failure (loop thread only)
        self._completed = False
        self.bytes_written = 0
        # Parts are started from the encoder thread; their tasks run in the context the
        # upload was opened in, so their spans join the render's trace.
        self._context = contextvars.copy_context()

    @property
    def upload_id(self) -> str:
        """The multipart upload's id once created ("" before, or for a single PutObject)."""
        create = self._create
        if create is None or not create.done() or create.cancelled() or create.exception():
            return ""
        return create.result()

    @property
    def parts(self) -> int:
        """Parts cut so far (0 for an output sent with PutObject)."""
        return self._state.parts_cut

    @property
    def max_in_flight(self) -> int:
        """The most parts that were cut but not yet uploaded at once."""
        return self._state.max_in_flight

    # --- the encoder thread --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Buffers bytes; hands each full part to the loop, blocking while too many are in
        flight. Raises OUTPUT_ERROR once the upload has failed."""
        self._check()
        self._buffer += data
        self.bytes_written += len(data)
        size = self.settings.part_size
        while len(self._buffer) >= size:
            # Wait for a slot before copying the part out: bytes wait in the buffer, once.
            number = self._take_slot()
            part = _cut(self._buffer, size)
            self._loop.call_soon_threadsafe(self._start_part, number, part)

    def _check(self) -> None:
        with self._cond:
            self._raise_if_stopped()

    def _raise_if_stopped(self) -> None:
        state = self._state
        if state.failure is not None:
            raise state.failure
        if state.stopped:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"the upload to {self.url} was aborted")

    def _reserve(self) -> int:
        """Takes a slot and the next part number (with self._cond held)."""
        state = self._state
        if state.parts_cut >= MAX_PARTS:
            raise FramefleetError(
                ErrorClass.OUTPUT_ERROR,
                f"{self.url} needs more than {MAX_PARTS} parts; raise FRAMEFLEET_S3_PART_SIZE",
            )
        state.parts_cut += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        return state.parts_cut

    def _take_slot(self) -> int:
        with self._cond:
            state = self._state
            while state.in_flight >= self.settings.parts_in_flight:
                self._raise_if_stopped()
                self._cond.wait()  # backpressure: the encoder waits for a part to finish
            self._raise_if_stopped()
            return self._reserve()

    # --- the loop ------------------------------------------------------------------------

    def _start_part(self, number: int, data: io.BytesIO) -> None:
        with self._cond:
            self._state.parts_started += 1
            if self._state.stopped:
                self._release()
                return
        if self._create is None:
            self._create = self._loop.create_task(self._create_upload(), context=self._context)
        self._state.tasks[number] = self._loop.create_task(
            self._upload_part(number, data), context=self._context
        )

    def _release(self) -> None:
        """Frees a part's slot (with self._cond held)."""
        self._state.in_flight -= 1
        self._cond.notify_all()

    def _fail(self, failure: FramefleetError) -> None:
        with self._cond:
            if self._state.failure is None:
                self._state.failure = failure
            self._cond.notify_all()
        self._wake.set()

    async def _call(
        self,
        what: str,
        op: Callable[[S3Client], Awaitable[T]],
        *,
        stoppable: bool = True,
        attempts: int | None = None,
    ) -> T:
        """One S3 request with retries: exponential backoff on transient errors; anything else,
        or running out of attempts, is an OUTPUT_ERROR. A stoppable request is not started
        (nor retried) once the upload is being aborted."""
        limit = attempts or self.settings.max_attempts
        attempt = 0
        while True:
            attempt += 1
            if stoppable and self._stopping():
                raise _Stopped
            try:
                return await op(await self._client.get())
            except Exception as e:
                if not is_transient(e) or attempt >= limit:
                    tries = f"after {attempt} attempts" if attempt > 1 else "(not retried)"
                    raise FramefleetError(
                        ErrorClass.OUTPUT_ERROR, f"{what} for {self.url} failed {tries}: {e}"
                    ) from e
                log.warning(
                    "s3 request failed, retrying",
                    extra={"request": what, "url": self.url, "attempt": attempt, "error": str(e)},
                )
                delay = self.settings.backoff(attempt)
                if stoppable:
                    # An abort, or another part's failure, ends the wait at once.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                else:
                    await asyncio.sleep(delay)

    def _stopping(self) -> bool:
        """Aborting, or a part already failed: nothing more is worth sending."""
        with self._cond:
            return self._state.stopped or self._state.failure is not None

    async def _create_upload(self) -> str:
        async def create(client: S3Client) -> str:
            extra: dict[str, Any] = {}
            checksums = getattr(client.meta.config, "request_checksum_calculation", None)
            if checksums == "when_supported":
                # Each part then carries a CRC32 that S3 checks, and so does the whole object.
                extra["ChecksumAlgorithm"] = "CRC32"
            response = await client.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                ContentType=content_type(self.key),
                CacheControl=CACHE_CONTROL,
                **extra,
            )
            return response["UploadId"]

        return await self._call("CreateMultipartUpload", create)

    async def _upload_part(self, number: int, data: io.BytesIO) -> None:
        attributes = {
            "framefleet.part.number": number,
            "framefleet.part.bytes": data.getbuffer().nbytes,
        }
        with tracer.start_as_current_span("upload_part", attributes=attributes):
            await self._upload_part_traced(number, data)

    async def _upload_part_traced(self, number: int, data: io.BytesIO) -> None:
        try:
            assert self._create is not None
            upload_id = await asyncio.shield(self._create)

            async def upload(client: S3Client) -> None:
                data.seek(0)  # a retry sends the part again from its start
                response = await client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                )
                part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
                if "ChecksumCRC32" in response:
                    part["ChecksumCRC32"] = response["ChecksumCRC32"]
                self._parts[number] = part

            await self._call(f"UploadPart {number}", upload)
        except _Stopped:
            pass
        except FramefleetError as e:
            self._fail(e)
        except Exception as e:
            self._fail(FramefleetError(ErrorClass.OUTPUT_ERROR, f"part {number} failed: {e!r}"))
        finally:
            with self._cond:
                self._release()

    async def complete(self) -> None:
        """Sends what is left and makes the object visible; aborts (and raises OUTPUT_ERROR)
        if any part failed."""
        try:
            await self._complete()
        except BaseException as e:
            await self.abort()
            if isinstance(e, _Stopped):
                raise FramefleetError(
                    ErrorClass.OUTPUT_ERROR, f"the upload to {self.url} was aborted"
                ) from None
            raise

    async def _complete(self) -> None:
        self._check()
        state = self._state
        # Parts cut on the encoder thread reach the loop through call_soon_threadsafe.
        # They are queued before the encoder's last result, so this wait is normally empty.
        while state.parts_started < state.parts_cut:  # noqa: ASYNC110
            await asyncio.sleep(0)
        tail = _cut(self._buffer, len(self._buffer))
        if state.parts_cut == 0:
            await self._put_object(tail)
            self._completed = True
            return
        if tail.tell():
            # The last part may be smaller than the rest; it still respects the bound.
            while state.in_flight >= self.settings.parts_in_flight:
                running = [t for t in state.tasks.values() if not t.done()]
                if not running:
                    break
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            with self._cond:
                self._raise_if_stopped()
                number = self._reserve()
            self._start_part(number, tail)
        await asyncio.gather(*state.tasks.values())
        self._check()
        assert self._create is not None
        upload_id = await asyncio.shield(self._create)
        parts = [self._parts[n] for n in sorted(self._parts)]
        if [p["PartNumber"] for p in parts] != list(range(1, state.parts_cut + 1)):
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"{self.url}: parts went missing")
        attempts = 0

        async def finish(client: S3Client) -> None:
            nonlocal attempts
            attempts += 1
            try:
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except ClientError as e:
                # A retry after a lost reply: the first attempt may have completed it.
                if attempts > 1 and _error_code(e) == "NoSuchUpload" and await self._exists(client):
                    return
                raise

        await self._call("CompleteMultipartUpload", finish)
        self._completed = True
        log.debug("s3 upload complete", extra={"url": self.url, "parts": len(parts)})

    async def _exists(self, client: S3Client) -> bool:
        try:
            head = await client.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError:
            return False
        return head["ContentLength"] == self.bytes_written

    async def _put_object(self, body: io.BytesIO) -> None:
        async def put(client: S3Client) -> None:
            body.seek(0)
            await client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ContentType=content_type(self.key),
                CacheControl=CACHE_CONTROL,
            )

        await self._call("PutObject", put)

    async def abort(self) -> None:
        """Stops the upload and aborts the multipart upload, so nothing is left behind. Never
        raises (but a cancelled caller is still cancelled). The work is shielded: it goes on even
        if the caller is cancelled, and the loop's shutdown waits for it."""
        if self._abort is None:
            self._abort = self._client.run_in_background(self._abort_until_done())
        await asyncio.shield(self._abort)

    async def _abort_until_done(self) -> None:
        task = asyncio.current_task()
        deadline = self._loop.time() + self.settings.abort_timeout
        while True:
            try:
                await self._abort_once()
                return
            except asyncio.CancelledError:
                # Loop shutdown cancels every task; the abort must still happen.
                if task is None or self._loop.time() > deadline:
                    raise
                task.uncancel()
            except Exception:
                log.exception("s3 abort failed", extra={"url": self.url})
                return

    async def _abort_once(self) -> None:
        with self._cond:
            self._state.stopped = True
            self._cond.notify_all()  # a blocked encoder thread raises
        self._wake.set()  # retries waiting on a backoff give up
        if self._completed:
            return
        # Let requests in flight end (retries stop at once), so no part lands after the abort.
        running = [t for t in self._state.tasks.values() if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=self.settings.abort_timeout / 2)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late)
        if self._create is None:
            return
        try:
            upload_id = await asyncio.shield(self._create)
        except (Exception, asyncio.CancelledError) as e:
            if isinstance(e, asyncio.CancelledError) and not self._create.cancelled():
                raise  # we were cancelled, not the create
            return  # no multipart upload was ever created

        async def abort(client: S3Client) -> None:
            try:
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id
                )
            except ClientError as e:
                if _error_code(e) != "NoSuchUpload":  # already gone
                    raise

        attempts = max(self.settings.max_attempts, 5)
        await self._call("AbortMultipartUpload", abort, stoppable=False, attempts=attempts)
        log.info("s3 upload aborted", extra={"url": self.url, "parts": self._state.parts_cut})


async def abort_upload(url: str, upload_id: str) -> None:
    """Aborts a multipart upload whose writer is gone (the coordinator's clean-up after an agent
    was lost with its lease). An upload already completed or aborted is fine."""
    bucket, key = parse_s3_url(url)
    settings = S3Settings.from_env()
    client = await shared_client(settings).get()
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as e:
        if _error_code(e) != "NoSuchUpload":
            raise
    log.info("orphaned s3 upload aborted", extra={"url": url, "upload_id": upload_id})


async def check(url: str) -> None:
    """The bucket exists and these credentials may use it (HeadBucket)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"{url!r} is not an s3://bucket/prefix URL")
    try:
        client = await shared_client(S3Settings.from_env()).get()
        await client.head_bucket(Bucket=parsed.netloc)
    except (ClientError, BotoCoreError, ValueError) as e:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot write to {url}: {e}") from e


async def size(url: str) -> int | None:
    """The object's ContentLength (HeadObject); None when it does not exist."""
    bucket, key = parse_s3_url(url)
    client = await shared_client(S3Settings.from_env()).get()
    try:
        head = await client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot look at {url}: {e}") from e
    return int(head["ContentLength"])


async def copy(source: str, target: str) -> None:
    """A server-side copy (CopyObject: S3 moves the bytes, up to 5 GB), retried like a part."""
    source_bucket, source_key = parse_s3_url(source)
    bucket, key = parse_s3_url(target)
    settings = S3Settings.from_env()
    client = await shared_client(settings).get()
    for attempt in range(1, settings.max_attempts + 1):
        try:
            await client.copy_object(
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": source_bucket, "Key": source_key},
                MetadataDirective="COPY",
            )
            return
        except Exception as e:
            if not is_transient(e) or attempt == settings.max_attempts:
                raise FramefleetError(
                    ErrorClass.OUTPUT_ERROR, f"copying {source} to {target} failed: {e}"
                ) from e
            await asyncio.sleep(settings.backoff(attempt))


async def read(url: str) -> bytes | None:
    """The object's bytes (GetObject); None when it does not exist."""
    bucket, key = parse_s3_url(url)
    client = await shared_client(S3Settings.from_env()).get()
    try:
        response = await client.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data
    except ClientError as e:
        if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot read {url}: {e}") from e


async def delete(url: str) -> None:
    """DeleteObject, retried like a part (deleting what is not there is fine in S3)."""
    bucket, key = parse_s3_url(url)
    settings = S3Settings.from_env()
    client = await shared_client(settings).get()
    for attempt in range(1, settings.max_attempts + 1):
        try:
            await client.delete_object(Bucket=bucket, Key=key)
            return
        except Exception as e:
            if not is_transient(e) or attempt == settings.max_attempts:
                raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"deleting {url} failed: {e}") from e
            await asyncio.sleep(settings.backoff(attempt))


class S3Sink:
    """s3://bucket/key URLs, on AWS or any S3-compatible store."""

    def open_upload(self, url: str) -> S3Upload:
        try:
            settings = S3Settings.from_env()
        except ValueError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"S3 settings: {e}") from e
        return S3Upload(url, settings)

    async def abort_upload(self, url: str, upload_id: str) -> None:
        await abort_upload(url, upload_id)

    async def check(self, url: str) -> None:
        await check(url)

    async def size(self, url: str) -> int | None:
        return await size(url)

    async def copy(self, source: str, target: str) -> None:
        await copy(source, target)

    async def read(self, url: str) -> bytes | None:
        return await read(url)

    async def delete(self, url: str) -> None:
        await delete(url)

    async def assemble(self, parts: list[str], target: str) -> int:
        from framefleet.outputs.s3_assemble import assemble  # it imports this module's helpers

        return await assemble(parts, target)


SINK = S3Sink()
