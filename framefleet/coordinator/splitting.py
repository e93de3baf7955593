"""Split jobs on the coordinator: whether a job is split, its chunk rows, and removing the
chunk objects of a split job that ended without assembly. The rule a split follows (whole
segments, MP4 only) is framefleet.core.chunks'; the lease machinery is the store's."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

from framefleet import outputs
from framefleet.coordinator.store import JobRecord, NewJob
from framefleet.core import chunks, jobspec
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.coordinator")


async def plan(
    spec: pb.JobSpec, output: jobspec.Output, spare_slots: Callable[[], Awaitable[int]]
) -> list[tuple[int, int]]:
    """The frame ranges a job submitted alone is split into ([] or one range: not split).
    ``chunks``/``chunk_frames`` force a split (chunks=1 forbids one); otherwise one chunk per
    spare slot of the connected agents, if the video is long enough. ``spare_slots`` (a count
    over the queue) is asked only then."""
    if spec.chunks == 1 or not chunks.splittable(output.format):
        return []
    if spec.chunks or spec.chunk_frames:
        count = spec.chunks
    elif chunks.auto_chunks(output.frames, output.fps, chunks.MAX_CHUNKS) < 2:
        return []  # too short to split, however many slots are spare
    else:
        count = chunks.auto_chunks(output.frames, output.fps, await spare_slots())
    return chunks.plan(output.frames, output.fps, count, spec.chunk_frames)


def split(job: NewJob, ranges: list[tuple[int, int]]) -> tuple[NewJob, list[NewJob]]:
    """The parent row (held while its chunks run) and one row per frame range: the parent's
    spec, source, trace and tenant, its own output beside the parent's."""
    parent = replace(job, chunks=len(ranges))
    rows = [
        replace(
            job,
            id=uuid.uuid4().hex,
            output_url=chunks.chunk_url(job.output_url, job.id, index),
            frames_total=end - first,
            request_id="",
            parent_id=job.id,
            chunk_index=index,
            first_frame=first,
            end_frame=end,
        )
        for index, (first, end) in enumerate(ranges)
    ]
    return parent, rows


def chunk_urls(record: JobRecord) -> list[str]:
    """Where a split job's chunks are written, in order."""
    return [chunks.chunk_url(record.output_url, record.id, i) for i in range(record.chunks)]


async def delete_chunks(record: JobRecord) -> None:
    """Removes a split job's chunk objects (those that exist); a failure is logged, not
    raised: the job has ended either way."""

    async def delete(url: str) -> None:
        try:
            await outputs.delete(url)
        except Exception:
            log.exception("deleting a chunk failed", extra={"job_id": record.id, "url": url})

    await asyncio.gather(*(delete(url) for url in chunk_urls(record)))
