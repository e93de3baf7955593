"""Readable names for finished outputs (JobSpec.output_name): the coordinator copies each
content-addressed output to its name server-side (an S3 CopyObject, a hard link on disk), for
renders and cache hits alike, so a rerun that renders nothing still produces the named files."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from framefleet import outputs
from framefleet.coordinator import metrics
from framefleet.coordinator.store import JobRecord, JobState
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.coordinator")
COPIES_AT_ONCE = 8


def destination_of(record: JobRecord) -> str:
    """The destination URL prefix (ending in "/") a job's outputs go under."""
    # The URL ends in output_key's three parts ("ab/cd/KEY.mp4"; the format's suffix).
    return record.output_url.rsplit("/", 3)[0] + "/"


def named_url(record: JobRecord) -> str:
    """Where a job's output is named (its spec holds the expanded name), or ""."""
    name = pb.JobSpec.FromString(record.spec).output_name
    return destination_of(record) + name if name else ""


async def name_outputs(records: Iterable[JobRecord]) -> None:
    """Copies the succeeded ones among ``records`` to their names; a copy that fails is logged
    and counted (the job still succeeded: its content-addressed output is there)."""
    limit = asyncio.Semaphore(COPIES_AT_ONCE)

    async def name(record: JobRecord, target: str) -> None:
        async with limit:
            try:
                await outputs.copy(record.output_url, target)
            except Exception:
                metrics.NAMING_FAILURES.inc()
                log.exception("naming an output failed", extra={"job_id": record.id, "url": target})

    await asyncio.gather(
        *(
            name(record, target)
            for record in records
            if record.state == JobState.SUCCEEDED and (target := named_url(record))
        )
    )
