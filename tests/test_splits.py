"""Split jobs on the coordinator, without gRPC: a Farm on a real SQLite store, a fake clock
and fake agent sessions (as tests/test_leases.py). Chunks are leased like jobs; the last one
queues the assembly; a chunk failing for good, or a cancel, ends the job and removes the chunk
objects; a lost chunk lease runs again alone."""

from __future__ import annotations

import asyncio
from typing import Any

from framefleet import template_job
from framefleet.cli import build_parser, spec_from_args, status_rows
from framefleet.coordinator.dispatcher import dispatch_once
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.lease_reaper import reap_once
from framefleet.coordinator.sessions import Session
from framefleet.coordinator.splitting import plan
from framefleet.coordinator.store import JobState
from framefleet.coordinator.store.base import JobRecord
from framefleet.core import chunks, jobspec
from framefleet.outputs.local import local_path
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.test_leases import TTL, FakeClock, assigns, clock, drain, get, lease_farm, spec

__all__ = ["clock", "lease_farm"]  # fixtures

FPS = 10
SEGMENT = chunks.segment_frames(FPS)


def long_spec(seconds: int = 8, **fields: int) -> pb.JobSpec:
    job = spec(frames=seconds * FPS)
    for name, value in fields.items():
        setattr(job, name, value)
    return job


async def complete(farm: Farm, session: Session, assign: pb.Assign, data: bytes) -> JobRecord:
    """What an agent does: writes the object, reports it; the agent service acks."""
    path = local_path(assign.output_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    report = pb.Completed(lease=assign.lease, output_bytes=len(data))
    (record,) = await farm.complete(session.agent_id, [report])
    farm.settled(session, assign.lease, accepted=True)
    drain(session)
    return record


async def test_a_forced_split_runs_as_chunks_then_one_assembly(
    lease_farm: Farm, clock: FakeClock
) -> None:
    farm = lease_farm
    job = await farm.submit(long_spec(chunks=3))
    assert job.state == JobState.LEASED and job.chunks == 3 and job.lease_owner is None
    a = farm._sessions.register("agent-a", slots=2)
    b = farm._sessions.register("agent-b", slots=2)
    assert await dispatch_once(farm) == 3
    got = sorted(assigns(a) + assigns(b), key=lambda x: x.chunk_index)
    assert [(x.chunk_index, x.first_frame, x.end_frame) for x in got] == [
        (0, 0, SEGMENT),
        (1, SEGMENT, 3 * SEGMENT),
        (2, 3 * SEGMENT, 80),
    ]
    assert [x.output_url for x in got] == [
        chunks.chunk_url(job.output_url, job.id, i) for i in range(3)
    ]
    assert all(x.content_key == job.content_key and not x.chunk_urls for x in got)
    # The job is listed once, running, and its progress is its chunks'.
    assert [r.id for r in await farm._store.list_jobs([], 10)] == [job.id]
    owner = {x.lease.job_id: (await get(farm, x.lease.job_id)).lease_owner for x in got}
    session = {"agent-a": a, "agent-b": b}
    holder = session[owner[got[0].lease.job_id] or ""]
    watcher = farm.events.subscribe(job.id)
    report = pb.Progress(lease=got[0].lease, frames_done=7)
    assert await farm.progress(holder.agent_id, report)
    assert (await get(farm, job.id)).frames_done == 7
    # A watcher of the job hears its chunks' progress as the job's.
    update = watcher.get_nowait().job
    assert (update.id, update.frames_done, update.chunks) == (job.id, 7, 3)

    for assign in got:
        await complete(farm, session[owner[assign.lease.job_id] or ""], assign, b"chunk")
    parent = await get(farm, job.id)
    assert parent.state == JobState.QUEUED and parent.chunks_done == 3
    assert parent.frames_done == 80

    # The assembly is leased to an agent like any job, naming the chunks in order.
    assert await dispatch_once(farm) == 1
    (assembly,) = assigns(a) + assigns(b)
    assert assembly.lease.job_id == job.id
    assert list(assembly.chunk_urls) == [x.output_url for x in got]
    assert assembly.first_frame == assembly.end_frame == 0
    assembler = session[(await get(farm, job.id)).lease_owner or ""]
    done = await complete(farm, assembler, assembly, b"whole")
    assert done.state == JobState.SUCCEEDED and done.output_bytes == 5


async def test_chunks_one_never_splits_and_short_videos_stay_whole(lease_farm: Farm) -> None:
    farm = lease_farm
    farm._sessions.register("agent-a", slots=8)
    whole = await farm.submit(long_spec(chunks=1))
    assert whole.chunks == 0 and whole.state == JobState.QUEUED
    # Automatic: one chunk per free slot, no chunk under two segments.
    auto = await farm.submit(long_spec(seconds=12))
    assert auto.chunks == 3
    short = await farm.submit(long_spec(seconds=6, priority=1))
    assert short.chunks == 0
    by_frames = await farm.submit(long_spec(seconds=9, chunk_frames=SEGMENT * 2))
    assert by_frames.chunks == 3  # 5 segments in runs of 2
    # Free slots are counted less the work queued for them: 8 slots, 1 + 3 + 1 + 3 queued.
    assert await farm.spare_slots() == 0
    later = await farm.submit(long_spec(seconds=12, priority=2))
    assert later.chunks == 0


async def test_an_identical_job_in_flight_is_not_split(lease_farm: Farm) -> None:
    farm = lease_farm
    first = await farm.submit(long_spec(chunks=1))
    second = await farm.submit(long_spec(chunks=2))
    assert second.output_url == first.output_url and second.chunks == 0


async def test_a_lost_chunk_runs_again_alone(lease_farm: Farm, clock: FakeClock) -> None:
    farm = lease_farm
    job = await farm.submit(long_spec(chunks=2))
    a = farm._sessions.register("agent-a", slots=1)
    b = farm._sessions.register("agent-b", slots=1)
    assert await dispatch_once(farm) == 2
    (kept,), (lost,) = assigns(a), assigns(b)
    await complete(farm, a, kept, b"one")
    clock.advance(TTL + 1)  # agent-b went silent
    await reap_once(farm)
    drain(b)
    clock.advance(10)  # past the retry backoff
    assert await dispatch_once(farm) == 1
    (again,) = assigns(a)
    assert again.lease.job_id == lost.lease.job_id and again.attempt == 2
    assert again.first_frame == lost.first_frame
    assert (await get(farm, kept.lease.job_id)).attempt == 1
    await complete(farm, a, again, b"two")
    assert (await get(farm, job.id)).state == JobState.QUEUED  # the assembly's turn


async def test_a_chunk_failing_for_good_fails_the_job(lease_farm: Farm) -> None:
    farm = lease_farm
    job = await farm.submit(long_spec(chunks=3, max_attempts=1))
    a = farm._sessions.register("agent-a", slots=3)
    assert await dispatch_once(farm) == 3
    first, failing, running = sorted(assigns(a), key=lambda x: x.chunk_index)
    await complete(farm, a, first, b"done")
    failed = pb.Failed(lease=failing.lease, error_class="TEMPLATE_SCRIPT_ERROR", message="boom")
    assert await farm.fail("agent-a", failed) is not None
    parent = await get(farm, job.id)
    assert parent.state == JobState.FAILED and parent.error_class == "TEMPLATE_SCRIPT_ERROR"
    assert parent.error_message == "chunk 1: boom"
    assert (await get(farm, running.lease.job_id)).state == JobState.CANCELLED
    cancelled = [m.cancel.lease.job_id for m in drain(a) if m.WhichOneof("message") == "cancel"]
    assert cancelled == [running.lease.job_id]
    await _background(farm)
    assert not local_path(first.output_url).exists()
    assert await dispatch_once(farm) == 0


async def test_cancel_ends_chunks_and_removes_their_objects(lease_farm: Farm) -> None:
    farm = lease_farm
    job = await farm.submit(long_spec(chunks=2))
    a = farm._sessions.register("agent-a", slots=1)
    assert await dispatch_once(farm) == 1
    (first,) = assigns(a)
    await complete(farm, a, first, b"done")
    assert await dispatch_once(farm) == 1
    (second,) = assigns(a)
    # Cancelling a chunk's id cancels its job.
    cancelled = await farm.cancel(second.lease.job_id)
    assert cancelled is not None and cancelled.id == job.id
    assert cancelled.state == JobState.CANCELLED
    assert [m.cancel.lease for m in drain(a)] == [second.lease]
    states = [c.state for c in await farm._store.chunks_of(job.id)]
    assert states == [JobState.SUCCEEDED, JobState.CANCELLED]
    await _background(farm)
    assert not local_path(first.output_url).exists()
    again = await farm.cancel(job.id)
    assert again is not None and again.state == JobState.CANCELLED


async def _background(farm: Farm) -> None:
    """Until the farm's background work (removing chunk objects) is done."""
    await asyncio.gather(*farm._background)


def test_submit_and_render_force_a_split() -> None:
    template = str(TEMPLATES / "moving_box.html")
    for command in ("submit", "render"):
        args = build_parser().parse_args(
            [command, template, "--out", "out", "--duration", "12", "--chunks", "3"]
        )
        assert spec_from_args(args, "out").chunks == 3
    args = build_parser().parse_args(
        ["submit", template, "--frames", "300", "--chunk-frames", "90"]
    )
    spec = spec_from_args(args, "out")
    assert (spec.chunks, spec.chunk_frames) == (0, 90)


def test_status_shows_a_split_jobs_chunks() -> None:
    running = pb.Job(id="j", state=pb.JOB_STATE_LEASED, frames_total=80, chunks=4, chunks_done=1)
    (_, row) = status_rows([running], 0.0)
    assert row[6] == "1/4 chunks"


async def test_a_chunk_finished_after_its_job_ended_is_removed(lease_farm: Farm) -> None:
    farm = lease_farm
    job = await farm.submit(long_spec(chunks=2))
    a = farm._sessions.register("agent-a", slots=2)
    assert await dispatch_once(farm) == 2
    late, _ = assigns(a)
    await farm.cancel(job.id)
    await _background(farm)
    # The agent finished writing before it heard of the cancel: its report is refused and
    # the object it wrote goes.
    path = local_path(late.output_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"late")
    report = pb.Completed(lease=late.lease, output_bytes=4)
    assert await farm.complete("agent-a", [report]) == []
    await _background(farm)
    assert not path.exists()


async def test_only_a_job_that_may_split_counts_spare_slots() -> None:
    """Spare slots are counted over the queue: a submit that cannot split on its own (too
    short, forced, never split, not MP4) does not ask."""
    asked: list[int] = []

    async def spare() -> int:
        asked.append(1)
        return 4

    def job(frames: int, **options: Any) -> pb.JobSpec:
        return template_job(TEMPLATES / "moving_box.html", fps=30, frames=frames, **options)

    for quiet in (job(90), job(360, chunks=3), job(360, chunks=1), job(360, format="webm")):
        output = jobspec.validate(quiet)
        ranges = await plan(quiet, output, spare)
        assert len(ranges) in (0, 3) and asked == []
    long = job(360)
    ranges = await plan(long, jobspec.validate(long), spare)
    assert asked == [1] and len(ranges) == chunks.auto_chunks(360, 30, 4) > 1
