"""The S3 sink against moto's S3 server (a separate process, over HTTP on loopback), with a fault
proxy in between. Bytes are written from a worker thread, as the encoder thread does."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from framefleet import outputs
from framefleet.agent.assemble import assemble
from framefleet.agent.hls import SegmentedUpload
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs import Upload, open_upload
from framefleet.outputs.s3 import S3Upload
from framefleet.outputs.s3_client import (
    MIB,
    S3Settings,
    close_shared_clients,
    parse_s3_url,
    parse_size,
)
from framefleet.outputs.s3_objects import CACHE_CONTROL, CONTENT_TYPE
from framefleet.v1 import framefleet_pb2 as pb
from tests.moto_server import (
    CREDENTIALS,
    MotoServer,
    eventually,
    object_keys,
    open_uploads,
    read_object,
    s3_client,
)
from tests.s3_fault_proxy import FaultProxy
from tests.test_chunks import assembly
from tests.test_hls import fragmented_mp4

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

PART = 5 * MIB
CHUNK = 64 * 1024  # about what the muxer hands over at a time


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer.start(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        yield proxy


@pytest.fixture
def s3_env(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FaultProxy:
    """The agent's environment: credentials, the endpoint (the proxy), 5 MiB parts, quick
    retries. No AWS config file or other endpoint setting from the machine leaks in."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FRAMEFLEET_S3_ENDPOINT", proxy.url)
    monkeypatch.setenv("FRAMEFLEET_S3_PART_SIZE", "5MiB")
    monkeypatch.setenv("FRAMEFLEET_S3_RETRY_BASE", "0.02")
    monkeypatch.setenv("FRAMEFLEET_S3_MAX_ATTEMPTS", "4")
    proxy.reset()
    return proxy


@pytest.fixture
async def s3(moto: MotoServer) -> AsyncIterator[S3Client]:
    """A client straight to moto (no proxy, no faults), to check results as a user would."""
    async with s3_client(moto.url) as client:
        yield client
    await close_shared_clients()


@pytest.fixture
async def bucket(s3: S3Client) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def write_like_an_encoder(upload: Upload, data: bytes, pause: float = 0.0005) -> None:
    """Writes in muxer-sized chunks at a steady pace (on a worker thread)."""
    for offset in range(0, len(data), CHUNK):
        upload.write(data[offset : offset + CHUNK])
        time.sleep(pause)


async def upload_like_render(upload: Upload, data: bytes) -> None:
    """What the agent's producer (framefleet/agent/producer.py) does: write on another thread,
    complete, abort on any failure."""
    try:
        await asyncio.to_thread(write_like_an_encoder, upload, data)
        await upload.complete()
    except BaseException:
        await upload.abort()
        raise


async def wait_for(predicate: Callable[[], bool]) -> None:
    async def check() -> bool:
        return predicate()

    await eventually(check, 15, "the proxy to see it")


def create_requests(proxy: FaultProxy) -> int:
    return sum(1 for r in proxy.requests() if r.method == "POST" and "uploads" in r.query)


async def test_multipart_object_is_complete_identical_and_streamed(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    data = payload(12 * MIB + 12345)
    key = "renders/ab/cd/abcd.mp4"
    upload = open_upload(f"s3://{bucket}/{key}")
    assert isinstance(upload, S3Upload)
    # About 1 s of writes, a slow encoder's pace.
    await asyncio.to_thread(write_like_an_encoder, upload, data, 0.005)
    writes_done = time.monotonic()
    await upload.complete()

    assert await read_object(s3, bucket, key) == data
    head = await s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == CONTENT_TYPE == "video/mp4"
    assert head["CacheControl"] == CACHE_CONTROL == "public, max-age=31536000, immutable"
    assert head["ETag"].strip('"').endswith("-3"), "three parts: 5 MiB, 5 MiB and the tail"
    assert await open_uploads(s3, bucket) == []
    assert s3_env.part_attempts() == {1: 1, 2: 1, 3: 1}
    # Streaming: the first parts reached the store while bytes were still being written.
    first_part = min(r.at for r in s3_env.requests() if r.part_number == 1)
    assert first_part < writes_done


async def test_small_output_is_one_put_object(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    data = payload(300_000, seed=2)
    upload = open_upload(f"s3://{bucket}/small.mp4")
    await upload_like_render(upload, data)
    assert await read_object(s3, bucket, "small.mp4") == data
    head = await s3.head_object(Bucket=bucket, Key="small.mp4")
    assert (head["ContentType"], head["CacheControl"]) == (CONTENT_TYPE, CACHE_CONTROL)
    assert [r.method for r in s3_env.requests()] == ["PUT"]
    assert create_requests(s3_env) == 0


async def test_abort_leaves_no_object_and_no_open_upload(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    upload = open_upload(f"s3://{bucket}/aborted.mp4")
    await asyncio.to_thread(write_like_an_encoder, upload, payload(11 * MIB))
    await wait_for(lambda: s3_env.part_attempts() == {1: 1, 2: 1} and not s3_env.parts_in_flight)
    assert await open_uploads(s3, bucket) == ["aborted.mp4"]  # two parts stored
    await upload.abort()
    assert await read_object(s3, bucket, "aborted.mp4") is None
    assert await open_uploads(s3, bucket) == []
    with pytest.raises(FramefleetError):
        upload.write(b"more")  # the encoder thread learns at once


async def test_cancelled_render_aborts_even_if_cancelled_again(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    s3_env.part_delay = 0.5  # parts are still uploading when the task is cancelled
    upload = open_upload(f"s3://{bucket}/cancelled.mp4")
    started = asyncio.Event()

    async def render() -> None:
        try:
            await asyncio.to_thread(write_like_an_encoder, upload, payload(11 * MIB))
            started.set()
            await asyncio.Event().wait()  # capture goes on until the lease is lost
        except BaseException:
            await upload.abort()
            raise

    task = asyncio.create_task(render())
    await asyncio.wait_for(started.wait(), 30)
    await wait_for(lambda: s3_env.parts_in_flight > 0)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # a second cancellation lands while the abort waits for the parts
    with pytest.raises(asyncio.CancelledError):
        await task

    # The abort goes on in the background and leaves nothing behind.
    async def aborted() -> bool:
        return not await open_uploads(s3, bucket)

    await eventually(aborted, 15, "the abort")
    assert await object_keys(s3, bucket) == []


async def test_503_and_dropped_connections_are_retried_per_part(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    s3_env.fail_part(1, "slowdown", times=2)
    s3_env.fail_part(2, "drop", times=1)
    s3_env.fail_part(3, "drop", times=1)
    s3_env.fail_part(3, "slowdown", times=1)
    data = payload(12 * MIB + 1, seed=3)
    await upload_like_render(open_upload(f"s3://{bucket}/retried.mp4"), data)
    assert s3_env.part_attempts() == {1: 3, 2: 2, 3: 3}
    faults = [r.fault for r in s3_env.requests() if r.fault]
    assert faults.count("slowdown") == 3 and faults.count("drop") == 2
    assert await read_object(s3, bucket, "retried.mp4") == data
    assert await open_uploads(s3, bucket) == []


@pytest.mark.parametrize("fault", ["slowdown", "drop"])
async def test_exhausted_retries_are_an_output_error_and_leave_nothing(
    s3_env: FaultProxy, s3: S3Client, bucket: str, fault: str
) -> None:
    s3_env.fail_part(2, "slowdown" if fault == "slowdown" else "drop", times=100)
    upload = open_upload(f"s3://{bucket}/failed.mp4")
    with pytest.raises(FramefleetError) as failure:
        await upload_like_render(upload, payload(16 * MIB, seed=4))
    assert failure.value.error_class == ErrorClass.OUTPUT_ERROR
    assert failure.value.retryable
    assert "UploadPart 2" in str(failure.value) and "after 4 attempts" in str(failure.value)
    # aiohttp itself resends an idempotent request once when a reused connection drops.
    attempts = s3_env.part_attempts()[2]
    assert attempts == 4 if fault == "slowdown" else 4 <= attempts <= 8
    assert await object_keys(s3, bucket) == []
    assert await open_uploads(s3, bucket) == []


async def test_a_missing_bucket_fails_at_once(s3_env: FaultProxy) -> None:
    upload = open_upload(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x.mp4")
    with pytest.raises(FramefleetError) as failure:
        await upload_like_render(upload, payload(1000))
    assert failure.value.error_class == ErrorClass.OUTPUT_ERROR
    assert "NoSuchBucket" in str(failure.value) and "not retried" in str(failure.value)
    assert len(s3_env.requests()) == 1


def write_generated(upload: Upload, total: int, digest: hashlib._Hash) -> float:
    """Writes ``total`` bytes made on the fly (as an encoder would, so the test holds almost
    none); returns the longest time one write() blocked."""
    chunk, blocked = payload(CHUNK, seed=5), 0.0
    for n in range(total // CHUNK):
        piece = n.to_bytes(8, "big") + chunk[8:]
        digest.update(piece)
        started = time.monotonic()
        upload.write(piece)
        blocked = max(blocked, time.monotonic() - started)
    return blocked


async def test_parts_in_flight_stay_bounded(s3_env: FaultProxy, s3: S3Client, bucket: str) -> None:
    s3_env.part_delay = 0.15  # a slow link: the encoder must wait for it
    settings = dataclasses.replace(S3Settings.from_env(), parts_in_flight=2)
    upload = S3Upload(f"s3://{bucket}/slow-link.mp4", settings)
    digest = hashlib.sha256()
    blocked = await asyncio.to_thread(write_generated, upload, 32 * MIB, digest)
    await upload.complete()
    assert upload.parts == 7
    assert upload.max_in_flight == 2
    assert s3_env.max_parts_in_flight == 2, "parts are uploaded two at a time, never more"
    assert blocked > 0.05, "the writer never had to wait for the store"
    body = await read_object(s3, bucket, "slow-link.mp4")
    assert body is not None and hashlib.sha256(body).digest() == digest.digest()


async def test_memory_does_not_grow_with_length(
    s3_env: FaultProxy, s3: S3Client, bucket: str, moto: MotoServer
) -> None:
    # Straight to moto: the proxy lives in this process and would count its own buffers.
    settings = dataclasses.replace(S3Settings.from_env(), endpoint_url=moto.url)
    peaks = []
    for total in (16 * MIB, 64 * MIB):
        upload = S3Upload(f"s3://{bucket}/{total}.mp4", settings)
        digest = hashlib.sha256()
        tracemalloc.start()
        try:
            await asyncio.to_thread(write_generated, upload, total, digest)
            await upload.complete()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        body = await read_object(s3, bucket, f"{total}.mp4")
        assert body is not None and hashlib.sha256(body).digest() == digest.digest()
    # The buffer, three parts in flight and what the HTTP stack copies, whatever the length.
    assert peaks[1] < 6 * PART, f"peak Python memory {peaks[1] / MIB:.1f} MiB for 64 MiB"
    assert peaks[1] < 1.3 * peaks[0], f"peaks {[round(p / MIB, 1) for p in peaks]} MiB"


async def test_aws_endpoint_url_s3_is_honoured(
    s3_env: FaultProxy, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FRAMEFLEET_S3_ENDPOINT")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env.url)
    assert S3Settings.from_env().addressing_style == "path"
    await upload_like_render(open_upload(f"s3://{bucket}/env.mp4"), b"tiny")
    assert await read_object(s3, bucket, "env.mp4") == b"tiny"
    assert len(s3_env.requests()) == 1, "the request went through the endpoint from the env"


def test_settings_from_env() -> None:
    assert parse_size("5MiB") == parse_size("5m") == parse_size("5242880") == 5 * MIB
    assert parse_size("1.5G") == 1536 * MIB
    assert S3Settings.from_env({}).part_size == 5 * MIB
    assert S3Settings.from_env({}).addressing_style == "auto"
    small = S3Settings.from_env({"FRAMEFLEET_S3_PART_SIZE": "1MiB"})
    assert small.part_size == 5 * MIB, "S3's minimum part size wins"
    custom = S3Settings.from_env(
        {"FRAMEFLEET_S3_ENDPOINT": "http://minio:9000", "FRAMEFLEET_S3_PARTS_IN_FLIGHT": "4"}
    )
    assert (custom.endpoint_url, custom.addressing_style) == ("http://minio:9000", "path")
    assert custom.parts_in_flight == 4
    with pytest.raises(ValueError):
        S3Settings(part_size=MIB)


def test_bad_s3_urls_are_output_errors() -> None:
    async def open_it(url: str) -> None:
        open_upload(url)

    for url in ("s3://bucket-only", "s3:///no-bucket.mp4"):
        with pytest.raises(FramefleetError) as failure:
            asyncio.run(open_it(url))
        assert failure.value.error_class == ErrorClass.OUTPUT_ERROR


async def test_an_hls_set_is_sized_copied_and_cleaned_up_whole(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    """HLS in S3 (agent/hls.py, outputs/hls.py): segments as objects under the playlist's
    prefix; size and copy take the whole set; an aborted render leaves no object."""
    data = fragmented_mp4(45)
    upload = SegmentedUpload(f"s3://{bucket}/ab/KEY.m3u8", 45, 10)
    await upload_like_render(upload, data)
    keys = ["ab/KEY.m3u8", "ab/KEY/init.mp4", *(f"ab/KEY/seg0000{n}.m4s" for n in (1, 2, 3))]
    assert sorted(await object_keys(s3, bucket)) == sorted(keys)
    assert await outputs.size(f"s3://{bucket}/ab/KEY.m3u8") == upload.size

    await outputs.copy(f"s3://{bucket}/ab/KEY.m3u8", f"s3://{bucket}/named/clip.m3u8")
    playlist = await read_object(s3, bucket, "named/clip.m3u8")
    assert playlist is not None and b'URI="clip/init.mp4"' in playlist
    for n in (1, 2, 3):
        assert await read_object(s3, bucket, f"named/clip/seg0000{n}.m4s") == await read_object(
            s3, bucket, f"ab/KEY/seg0000{n}.m4s"
        )
    await s3.delete_object(Bucket=bucket, Key="ab/KEY/seg00002.m4s")
    assert await outputs.size(f"s3://{bucket}/ab/KEY.m3u8") is None, "not a whole set"

    failed = SegmentedUpload(f"s3://{bucket}/cd/KEY.m3u8", 45, 10)
    await asyncio.to_thread(failed.write, data[: data.rindex(b"moof") - 4])

    async def segments_stored() -> bool:
        return "cd/KEY/seg00002.m4s" in await object_keys(s3, bucket)

    await eventually(segments_stored, 15, "the segments to be uploaded")
    await failed.abort()
    assert not [k for k in await object_keys(s3, bucket) if k.startswith("cd/")]


# --- assembling a chunked render (agent/assemble.py, outputs/s3_assemble.py) -----------------


async def put_chunks(s3: S3Client, assign: pb.Assign, sizes: list[int]) -> bytes:
    data = [payload(size, seed) for seed, size in enumerate(sizes)]
    for url, part in zip(assign.chunk_urls, data, strict=True):
        where, key = parse_s3_url(url)
        await s3.put_object(Bucket=where, Key=key, Body=part)
    return b"".join(data)


def reads(through: FaultProxy, assign: pb.Assign) -> list[int]:
    """Which chunks the agent read (GetObject) through the proxy."""
    paths = [urlsplit(url.replace("s3://", "http://")).path for url in assign.chunk_urls]
    seen = [r.path for r in through.requests() if r.method == "GET"]
    return [i for i, path in enumerate(paths) if any(p.endswith(path) for p in seen)]


async def test_s3_assembly_copies_big_chunks_in_s3(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    assign = assembly("job-1", f"s3://{bucket}/ab/video.mp4", 3)
    whole = await put_chunks(s3, assign, [5 * MIB + 3, 5 * MIB + 1, 100_000])
    result = await assemble(assign)
    assert result.output_bytes == len(whole)
    assert await read_object(s3, bucket, "ab/video.mp4") == whole
    assert reads(s3_env, assign) == [2], "the big chunks were copied by S3, not read"
    assert await object_keys(s3, bucket) == ["ab/video.mp4"]  # the chunks are gone
    assert await open_uploads(s3, bucket) == []
    assert (await assemble(assign)).output_bytes == len(whole)  # redone: same answer


async def test_s3_assembly_reads_small_chunks_into_one_part(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    assign = assembly("job-1", f"s3://{bucket}/video.mp4", 4)
    whole = await put_chunks(s3, assign, [2 * MIB, 2 * MIB + 5, 2 * MIB, 70_000])
    assert (await assemble(assign)).output_bytes == len(whole)
    assert await read_object(s3, bucket, "video.mp4") == whole
    assert reads(s3_env, assign) == [0, 1, 2, 3]
    assert await object_keys(s3, bucket) == ["video.mp4"]


async def test_a_failed_s3_assembly_leaves_no_upload_and_keeps_the_chunks(
    s3_env: FaultProxy, s3: S3Client, bucket: str
) -> None:
    assign = assembly("job-1", f"s3://{bucket}/video.mp4", 2)
    await put_chunks(s3, assign, [5 * MIB, 5 * MIB])
    s3_env.fail_part(2, "slowdown", times=100)
    with pytest.raises(FramefleetError, match="UploadPartCopy 2") as failure:
        await assemble(assign)
    assert failure.value.error_class == ErrorClass.OUTPUT_ERROR
    assert await open_uploads(s3, bucket) == []
    keys = [parse_s3_url(url)[1] for url in assign.chunk_urls]
    assert await object_keys(s3, bucket) == sorted(keys)  # a retry can still assemble them
