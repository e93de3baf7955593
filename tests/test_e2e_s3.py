"""End to end into S3: a coordinator and an agent as separate processes, moto's S3 server as a
third, and a fault proxy between agent and S3. Jobs go in through the SDK with an s3://
destination; the objects are downloaded and decoded as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from framefleet import AsyncClient, ErrorClass, FramefleetError, template_job
from framefleet.core.jobspec import output_key
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, wait_until
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
from tests.video import decode, is_colour

pytestmark = pytest.mark.e2e

BUCKET = "framefleet-renders"
DESTINATION = f"s3://{BUCKET}/prefix"
FRAME_BYTES = 400_000  # about what one 640x360 noise frame takes at CRF 0


@dataclass
class S3Farm:
    farm: FarmProcesses
    moto: MotoServer
    proxy: FaultProxy

    def client(self) -> AsyncClient:
        return AsyncClient(self.farm.address)


@pytest.fixture(scope="module")
def s3_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Farm]:
    root = tmp_path_factory.mktemp("s3farm")
    farm = FarmProcesses(root)
    moto = MotoServer.start(root / "logs" / "moto.log")
    proxy = FaultProxy("127.0.0.1", moto.port).start()
    try:

        async def create_bucket() -> None:
            async with s3_client(moto.url) as s3:
                await s3.create_bucket(Bucket=BUCKET)

        asyncio.run(create_bucket())
        farm.start_coordinator(
            f"sqlite:///{root}/jobs.db",
            root / "out",
            "--allow-output",
            f"s3://{BUCKET}",
            "--lease-ttl",
            "6",
            "--heartbeat-interval",
            "1",
        )
        agent_env = {
            **CREDENTIALS,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "FRAMEFLEET_S3_ENDPOINT": proxy.url,
            "FRAMEFLEET_S3_PART_SIZE": "5MiB",
            "FRAMEFLEET_S3_RETRY_BASE": "0.05",
            "FRAMEFLEET_S3_MAX_ATTEMPTS": "4",
        }
        farm.start_agent("s3-agent", "--slots", "1", "--ready-timeout", "10", env=agent_env)
        yield S3Farm(farm, moto, proxy)
    finally:
        farm.close()
        proxy.stop()
        moto.stop()


@pytest.fixture
def s3f(s3_farm: S3Farm) -> S3Farm:
    s3_farm.proxy.reset()
    return s3_farm


def noise_job(color: str, frames: int, **options: object) -> pb.JobSpec:
    """640x360 seeded noise at CRF 0: about 0.4 MB a frame, so 5 MiB parts fill quickly."""
    settings: dict[str, object] = {"width": 640, "height": 360, "fps": 30, "frames": frames}
    settings.update(crf=0, preset="ultrafast", destination=DESTINATION, **options)
    return template_job(TEMPLATES / "noise.html", {"color": color}, **settings)  # type: ignore[arg-type]


def unique_colour() -> str:
    """A colour no other job used: a new content key, so the result cache stays out of it."""
    n = uuid.uuid4().int
    return f"rgb({n % 200 + 40}, {n // 200 % 60}, {n // 12000 % 60})"


def key_of(job: pb.Job) -> str:
    return f"prefix/{output_key(job.content_key)}"


async def wait_for_nothing_left(s3f: S3Farm, key: str) -> None:
    """No object and no multipart upload, once the agent's abort has gone through."""
    async with s3_client(s3f.moto.url) as s3:

        async def no_open_upload() -> bool:
            return not await open_uploads(s3, BUCKET)

        await eventually(no_open_upload, 20, "the multipart upload to be aborted")
        assert key not in await object_keys(s3, BUCKET), "a failed render left an object"


def aborts(proxy: FaultProxy) -> int:
    return sum(1 for r in proxy.requests() if r.method == "DELETE" and "uploadId" in r.query)


async def test_render_streams_into_s3_through_faults(s3f: S3Farm, tmp_path: Path) -> None:
    s3f.proxy.fail_part(2, "slowdown", times=2)
    s3f.proxy.fail_part(3, "drop", times=1)
    frames = 60
    spec = noise_job("rgb(230, 40, 40)", frames)
    streamed_while_capturing = False
    async with s3f.client() as client:
        job = await client.submit(spec)
        async for update in client.watch(job.id):
            capturing = update.job.state == pb.JOB_STATE_LEASED
            if capturing and update.job.frames_done < frames and s3f.proxy.part_attempts():
                streamed_while_capturing = True
        done = await client.wait(job.id)

    key = key_of(done)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert done.output_url == f"s3://{BUCKET}/{key}"
    assert key == f"prefix/{done.content_key[:2]}/{done.content_key[2:4]}/{done.content_key}.mp4"
    assert streamed_while_capturing, "no part reached S3 before the last frame was captured"
    attempts = s3f.proxy.part_attempts()
    assert attempts[2] == 3 and attempts[3] >= 2, f"faults were not retried: {attempts}"

    async with s3_client(s3f.moto.url) as s3:
        body = await read_object(s3, BUCKET, key)
        head = await s3.head_object(Bucket=BUCKET, Key=key)
        assert await open_uploads(s3, BUCKET) == []
    assert body is not None and len(body) == done.output_bytes > 3 * 5 * 1024 * 1024
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert parts == len(attempts) >= 4, "a multipart upload of 5 MiB parts"
    assert head["ContentType"] == "video/mp4"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"

    path = tmp_path / "download.mp4"
    path.write_bytes(body)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 640, 360)
    decoded = decode(path)
    assert len(decoded) == frames
    for n in (0, 17, 31, 59):  # frames from different parts, in order
        assert is_colour(decoded[n][60, 60], (230, 40, 40)), f"parameter colour at frame {n}"
        assert is_colour(decoded[n][180, 8 * n + 20], (255, 255, 255)), f"bar at frame {n}"


async def test_cancel_mid_render_leaves_nothing_in_s3(s3f: S3Farm) -> None:
    async with s3f.client() as client:
        job = await client.submit(noise_job(unique_colour(), 900))

        async def uploading() -> bool:
            return bool(s3f.proxy.part_attempts())

        await eventually(uploading, 60, "a part to be uploaded")
        cancelled = await client.cancel(job.id)
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        assert cancelled.frames_done < 900
    await wait_for_nothing_left(s3f, key_of(cancelled))
    assert aborts(s3f.proxy) == 1


async def test_template_that_throws_midway_leaves_nothing_in_s3(s3f: S3Farm) -> None:
    spec = template_job(
        TEMPLATES / "throws_later.html",
        {"throw_after": 40, "run": uuid.uuid4().hex},
        width=640,
        height=360,
        fps=30,
        frames=90,
        crf=0,
        preset="ultrafast",
        destination=DESTINATION,
        max_attempts=1,
    )
    async with s3f.client() as client:
        job = await client.submit(spec)
        with pytest.raises(FramefleetError) as failure:
            await client.wait(job.id)
        final = await client.get(job.id)
    assert failure.value.error_class == ErrorClass.TEMPLATE_SCRIPT_ERROR
    assert "at frame 40" in final.error_message
    assert len(s3f.proxy.part_attempts()) >= 2, "the render failed after parts were uploaded"
    await wait_for_nothing_left(s3f, key_of(final))
    assert aborts(s3f.proxy) == 1


async def test_s3_that_keeps_failing_fails_the_job_with_output_error(s3f: S3Farm) -> None:
    s3f.proxy.fail_part(None, "slowdown", times=1000)
    async with s3f.client() as client:
        job = await client.submit(noise_job(unique_colour(), 30, max_attempts=1))
        with pytest.raises(FramefleetError) as failure:
            await client.wait(job.id)
        final = await client.get(job.id)
    assert failure.value.error_class == ErrorClass.OUTPUT_ERROR
    assert final.state == pb.JOB_STATE_FAILED
    assert "UploadPart 1" in final.error_message and "after 4 attempts" in final.error_message
    await wait_for_nothing_left(s3f, key_of(final))
    assert aborts(s3f.proxy) == 1
    assert s3f.farm.processes[-1].alive(), "the agent survives and takes the next job"


async def test_a_killed_agents_upload_is_aborted_by_the_coordinator(tmp_path: Path) -> None:
    """SIGKILL leaves the agent no chance to abort: the coordinator, which the agent told the
    upload id, aborts it when the lease is lost, and the job completes on another agent."""
    moto = MotoServer.start(tmp_path / "moto.log")
    farm = FarmProcesses(tmp_path)
    try:
        async with s3_client(moto.url) as s3:
            await s3.create_bucket(Bucket=BUCKET)
        s3_env = {
            **CREDENTIALS,
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "FRAMEFLEET_S3_ENDPOINT": moto.url,
        }
        farm.start_coordinator(
            f"sqlite:///{tmp_path}/jobs.db",
            tmp_path / "out",
            "--allow-output",
            f"s3://{BUCKET}",
            "--lease-ttl",
            "3",
            "--heartbeat-interval",
            "0.5",
            env=s3_env,
        )
        doomed = farm.start_agent("doomed", "--slots", "1", env=s3_env)
        async with AsyncClient(farm.address) as client:
            job = await client.submit(noise_job(unique_colour(), 240))

            # The precondition: the agent has told the coordinator the upload id.
            def upload_id_recorded() -> bool:
                database = f"file:{tmp_path}/jobs.db?mode=ro"
                with contextlib.closing(sqlite3.connect(database, uri=True)) as db:
                    row = db.execute(
                        "SELECT upload_id FROM jobs WHERE id = ?", (job.id,)
                    ).fetchone()
                return bool(row and row[0])

            await asyncio.to_thread(wait_until, upload_id_recorded, 60, "the upload id")
            async with s3_client(moto.url) as s3:
                assert len(await open_uploads(s3, BUCKET)) == 1
            doomed.signal(signal.SIGKILL)
            farm.start_agent("rescuer", "--slots", "1", env=s3_env)
            done = await client.wait(job.id)
        assert (done.agent_id, done.attempt) == ("rescuer", 2)
        async with s3_client(moto.url) as s3:

            async def no_open_upload() -> bool:
                return not await open_uploads(s3, BUCKET)

            await eventually(no_open_upload, 20, "the dead agent's upload to be aborted")
            body = await read_object(s3, BUCKET, key_of(done))
        assert body is not None and len(body) == done.output_bytes
        assert "orphaned s3 upload aborted" in farm.processes[0].log.read_text()
    finally:
        farm.close()
        moto.stop()


async def test_hls_is_a_set_of_objects_under_one_prefix(s3f: S3Farm, tmp_path: Path) -> None:
    """`--format hls` into S3: the playlist and, under its prefix, the init segment and one
    object per segment; downloaded as they lie, FFmpeg's HLS reader plays every frame."""
    spec = template_job(
        TEMPLATES / "solid.html",
        {"color": unique_colour()},
        width=64,
        height=64,
        fps=10,
        duration=5,
        format="hls",
        destination=DESTINATION,
    )
    async with s3f.client() as client:
        done = await client.wait((await client.submit(spec)).id)
    playlist = f"prefix/{output_key(done.content_key, 'hls')}"
    assert done.output_url == f"s3://{BUCKET}/{playlist}"
    stem = playlist.removesuffix(".m3u8")
    async with s3_client(s3f.moto.url) as s3:
        keys = sorted(k for k in await object_keys(s3, BUCKET) if k.startswith(stem))
        assert keys == [
            playlist, *(f"{stem}/{name}" for name in ("init.mp4", "seg00001.m4s",
                                                      "seg00002.m4s", "seg00003.m4s"))
        ]  # fmt: skip
        for key in keys:
            data = await read_object(s3, BUCKET, key)
            assert data is not None
            (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / key).write_bytes(data)
    assert done.output_bytes == sum((tmp_path / key).stat().st_size for key in keys)
    assert len(decode(tmp_path / playlist)) == 50
