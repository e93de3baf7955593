"""One video split into chunks, end to end: a coordinator, three agents and moto's S3 server
as separate processes. The output's bytes do not depend on the split (1, 2 or 7 chunks, over
several agents; local and S3), a chunk whose agent is SIGKILLed runs again alone, and a failed
or cancelled split job leaves no chunk objects."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framefleet import AsyncClient, template_job
from framefleet.core.jobspec import output_key
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, wait_until
from tests.moto_server import (
    CREDENTIALS,
    MotoServer,
    create_bucket,
    eventually,
    object_keys,
    open_uploads,
    read_object,
    s3_client,
)
from tests.video import decode, path_of

pytestmark = pytest.mark.e2e

BUCKET = "framefleet-chunks"
FPS = 10  # two-second segments of 20 frames: seven chunks need only 140 frames
AGENTS = ("agent-1", "agent-2", "agent-3")


@dataclass
class ChunkFarm:
    farm: FarmProcesses
    moto: MotoServer
    root: Path

    @property
    def out(self) -> Path:
        return self.root / "out"

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Reads the coordinator's job table (read-only), as an operator could."""
        database = f"file:{self.root}/jobs.db?mode=ro"
        with contextlib.closing(sqlite3.connect(database, uri=True)) as db:
            return db.execute(sql, args).fetchall()

    def chunks(self, job_id: str) -> list[tuple[object, ...]]:
        """(state, attempt, lease_owner, frames_done, frames_total) of each chunk, in order."""
        return self.rows(
            "SELECT state, attempt, lease_owner, frames_done, frames_total FROM jobs"
            " WHERE parent_id = ? ORDER BY chunk_index",
            job_id,
        )

    def chunk_files(self, partial: bool = True) -> list[Path]:
        """Chunk objects on disk (``partial``: with the hidden files of unfinished writes)."""
        found = [p for p in self.out.rglob("*") if ".chunk" in p.name]
        return [p for p in found if partial or not p.name.startswith(".")]

    async def chunk_keys(self) -> list[str]:
        async with s3_client(self.moto.url) as s3:
            return [k for k in await object_keys(s3, BUCKET) if ".chunk" in k]


def s3_env(root: Path, endpoint: str) -> dict[str, str]:
    return {
        **CREDENTIALS,
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "FRAMEFLEET_S3_ENDPOINT": endpoint,
    }


def start_coordinator(
    farm: FarmProcesses, root: Path, env: dict[str, str], listen: str = ""
) -> None:
    farm.start_coordinator(
        f"sqlite:///{root}/jobs.db",
        root / "out",
        *("--allow-output", f"s3://{BUCKET}"),
        *("--lease-ttl", "3", "--heartbeat-interval", "0.5", "--retry-base", "0.2"),
        listen=listen or "127.0.0.1:0",
        env=env,
    )


def start(root: Path, agents: tuple[str, ...]) -> ChunkFarm:
    farm = FarmProcesses(root)
    moto = MotoServer.start(root / "logs" / "moto.log")
    try:
        env = s3_env(root, moto.url)  # the coordinator deletes chunk objects too
        start_coordinator(farm, root, env)
        for agent in agents:
            farm.start_agent(agent, "--slots", "1", env=env)
        connected = farm.processes[0].log
        wait_until(
            lambda: connected.read_text().count('"msg": "agent connected"') >= len(agents),
            60,
            "the agents to connect",
        )
    except BaseException:
        farm.close()
        moto.stop()
        raise
    return ChunkFarm(farm, moto, root)


@pytest.fixture(scope="module")
def chunk_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChunkFarm]:
    cf = start(tmp_path_factory.mktemp("chunks"), AGENTS)
    try:
        asyncio.run(create_bucket(cf.moto.url, BUCKET))
        yield cf
    finally:
        cf.farm.close()
        cf.moto.stop()


def video(destination: str, frames: int = 140, **options: int) -> pb.JobSpec:
    """A moving box, in a colour no other test uses (a content key of its own)."""
    n = uuid.uuid4().int
    colour = f"rgb({n % 200 + 40}, {n // 200 % 200}, 90)"
    return template_job(
        TEMPLATES / "moving_box.html",
        {"color": colour},
        width=160,
        height=96,
        fps=FPS,
        frames=frames,
        destination=destination,
        **options,  # type: ignore[arg-type]
    )


async def output_bytes(cf: ChunkFarm, job: pb.Job) -> bytes:
    if job.output_url.startswith("s3://"):
        async with s3_client(cf.moto.url) as s3:
            body = await read_object(s3, BUCKET, f"prefix/{output_key(job.content_key)}")
        assert body is not None
        return body
    return path_of(job.output_url).read_bytes()


@pytest.mark.parametrize("where", ["local", "s3"])
async def test_output_bytes_do_not_depend_on_the_split(chunk_farm: ChunkFarm, where: str) -> None:
    cf = chunk_farm
    destination = str(cf.out) if where == "local" else f"s3://{BUCKET}/prefix"
    spec = video(destination, chunks=1)
    async with AsyncClient(cf.farm.address) as client:
        whole = await client.wait((await client.submit(spec)).id)
        assert whole.chunks == 0
        reference = await output_bytes(cf, whole)
        if where == "local":
            assert len(decode(path_of(whole.output_url))) == 140
        for count in (2, 7):
            spec.chunks, spec.force = count, True
            done = await client.wait((await client.submit(spec)).id)
            assert (done.content_key, done.chunks, done.chunks_done) == (
                whole.content_key,
                count,
                count,
            )
            assert done.frames_done == done.frames_total == 140
            assert await output_bytes(cf, done) == reference, f"{count} chunks differ"
            states = {row[0] for row in cf.chunks(done.id)}
            assert states == {"succeeded"}
            if count == 7:  # three agents with one slot each: the chunks were spread
                owners = {row[2] for row in cf.chunks(done.id)}
                assert len(owners) >= 2, owners
    # The assembly removed the chunk objects.
    if where == "local":
        assert cf.chunk_files() == []
    else:
        async with s3_client(cf.moto.url) as s3:
            await eventually(lambda: _no_chunk_keys(cf), 20, "the chunk objects to be removed")
            assert await open_uploads(s3, BUCKET) == []


async def _no_chunk_keys(cf: ChunkFarm) -> bool:
    return not await cf.chunk_keys()


@pytest.mark.parametrize("where", ["local", "s3"])
async def test_cancel_leaves_no_chunk_objects(chunk_farm: ChunkFarm, where: str) -> None:
    cf = chunk_farm
    destination = str(cf.out) if where == "local" else f"s3://{BUCKET}/prefix"
    async with AsyncClient(cf.farm.address) as client:
        # Four chunks on three slots: one can be done while others still render.
        job = await client.submit(video(destination, frames=800, chunks=4))
        assert job.chunks == 4

        def midway() -> bool:
            rows = cf.chunks(job.id)
            done = any(row[0] == "succeeded" for row in rows)
            return done and any(row[0] == "leased" and int(str(row[3])) > 0 for row in rows)

        await asyncio.to_thread(wait_until, midway, 90, "a chunk done and one rendering")
        # The precondition: a finished chunk object is there to be removed.
        assert cf.chunk_files(partial=False) if where == "local" else await cf.chunk_keys()
        cancelled = await client.cancel(job.id)
        assert cancelled.state == pb.JOB_STATE_CANCELLED
    assert {row[0] for row in cf.chunks(job.id)} <= {"cancelled", "succeeded"}
    if where == "local":
        await asyncio.to_thread(
            wait_until, lambda: not cf.chunk_files(), 20, "the chunk files to be removed"
        )
    else:
        await eventually(lambda: _no_chunk_keys(cf), 20, "the chunk objects to be removed")
        async with s3_client(cf.moto.url) as s3:

            async def no_open_upload() -> bool:
                return not await open_uploads(s3, BUCKET)

            await eventually(no_open_upload, 20, "the chunk uploads to be aborted")


async def test_a_killed_agents_chunk_runs_again_alone(tmp_path: Path) -> None:
    """SIGKILL the agent holding a chunk mid-render: that chunk alone is leased again (on the
    agent started after), the others run once, and the output is the unsplit one's bytes."""
    cf = start(tmp_path, ("victim",))
    try:
        async with AsyncClient(cf.farm.address) as client:
            spec = video(str(cf.out), frames=240, chunks=1)
            reference = await output_bytes(cf, await client.wait((await client.submit(spec)).id))
            spec.chunks, spec.force = 2, True
            job = await client.submit(spec)

            def victim_renders() -> bool:
                rows = cf.chunks(job.id)
                return any(
                    r[0] == "leased" and r[2] == "victim" and int(str(r[3])) > 0 for r in rows
                )

            await asyncio.to_thread(wait_until, victim_renders, 60, "the victim to render a chunk")
            cf.farm.processes[1].signal(signal.SIGKILL)
            (killed,) = [i for i, r in enumerate(cf.chunks(job.id)) if r[2] == "victim"]
            assert cf.chunks(job.id)[killed][0] == "leased", "the chunk ended before the kill"
            cf.farm.start_agent("rescuer", "--slots", "1", env=s3_env(tmp_path, cf.moto.url))
            done = await client.wait(job.id)
        assert done.state == pb.JOB_STATE_SUCCEEDED
        assert await output_bytes(cf, done) == reference
        rows = cf.chunks(job.id)
        assert [(r[0], r[1]) for r in rows] == [
            ("succeeded", 2 if i == killed else 1) for i in range(2)
        ]
        assert rows[killed][2] == "rescuer"
        # What SIGKILL interrupted stays as a hidden partial file, as for any job.
        assert cf.chunk_files(partial=False) == []
    finally:
        cf.farm.close()
        cf.moto.stop()


async def test_a_coordinator_killed_mid_split_loses_nothing(tmp_path: Path) -> None:
    """The coordinator is SIGKILLed while chunks render and restarted on its store: the
    chunks finish, the assembly is leased, and the output is the unsplit one's bytes."""
    cf = start(tmp_path, ("steady-1", "steady-2"))
    try:
        address = cf.farm.address
        async with AsyncClient(address) as client:
            spec = video(str(cf.out), frames=400, chunks=1)
            reference = await output_bytes(cf, await client.wait((await client.submit(spec)).id))
            spec.chunks, spec.force = 4, True
            job = await client.submit(spec)

        def rendering() -> bool:
            return any(r[0] == "leased" and int(str(r[3])) > 0 for r in cf.chunks(job.id))

        await asyncio.to_thread(wait_until, rendering, 60, "a chunk to render")
        coordinator = cf.farm.processes[0]
        coordinator.signal(signal.SIGKILL)
        coordinator.popen.wait()
        start_coordinator(cf.farm, tmp_path, s3_env(tmp_path, cf.moto.url), listen=address)
        async with AsyncClient(address) as client:
            done = await client.wait(job.id)
        assert (done.state, done.chunks_done) == (pb.JOB_STATE_SUCCEEDED, 4)
        assert await output_bytes(cf, done) == reference
        assert {r[0] for r in cf.chunks(job.id)} == {"succeeded"}
        assert cf.chunk_files(partial=False) == []
    finally:
        cf.farm.close()
        cf.moto.stop()
