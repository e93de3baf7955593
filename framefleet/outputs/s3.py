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

Settings, the shared client and the retry loop: framefleet/outputs/s3_client.py; requests on
whole objects: framefleet/outputs/s3_objects.py; a chunked render's assembly:
framefleet/outputs/s3_assemble.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.telemetry import tracer
from framefleet.outputs import s3_assemble, s3_objects
from framefleet.outputs.s3_client import (
    S3Settings,
    SharedClient,
    error_code,
    parse_s3_url,
    retried,
    shared_client,
)
from framefleet.outputs.s3_objects import CACHE_CONTROL, content_type

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("framefleet.agent")

T = TypeVar("T")

MAX_PARTS = 10_000  # S3's maximum part number


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
        """One S3 request with retries (s3_client.retried). A stoppable request is not started
        (nor retried) once the upload is being aborted, and an abort, or another part's
        failure, ends its backoff at once."""
        if not stoppable:
            return await retried(self._client, f"{what} for {self.url}", op, attempts=attempts)
        return await retried(
            self._client,
            f"{what} for {self.url}",
            op,
            attempts=attempts,
            before_each=self._raise_if_aborting,
            pause=self._pause,
        )

    def _raise_if_aborting(self) -> None:
        if self._stopping():
            raise _Stopped

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

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
                if attempts > 1 and error_code(e) == "NoSuchUpload" and await self._exists(client):
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
                if error_code(e) != "NoSuchUpload":  # already gone
                    raise

        attempts = max(self.settings.max_attempts, 5)
        await self._call("AbortMultipartUpload", abort, stoppable=False, attempts=attempts)
        log.info("s3 upload aborted", extra={"url": self.url, "parts": self._state.parts_cut})


class S3Sink:
    """s3://bucket/key URLs, on AWS or any S3-compatible store."""

    def open_upload(self, url: str) -> S3Upload:
        try:
            settings = S3Settings.from_env()
        except ValueError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"S3 settings: {e}") from e
        return S3Upload(url, settings)

    async def abort_upload(self, url: str, upload_id: str) -> None:
        await s3_objects.abort_upload(url, upload_id)

    async def check(self, url: str) -> None:
        await s3_objects.check(url)

    async def size(self, url: str) -> int | None:
        return await s3_objects.size(url)

    async def copy(self, source: str, target: str) -> None:
        await s3_objects.copy(source, target)

    async def read(self, url: str) -> bytes | None:
        return await s3_objects.read(url)

    async def delete(self, url: str) -> None:
        await s3_objects.delete(url)

    async def assemble(self, parts: list[str], target: str) -> int:
        return await s3_assemble.assemble(parts, target)


SINK = S3Sink()
