"""Batches: one template, many rows of parameters. Submitting, cancelling, progress, and the
digest and manifest written when every row has ended."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from framefleet.coordinator.convert import timestamp
from framefleet.coordinator.named_outputs import named_url
from framefleet.coordinator.store import BatchRecord, JobRecord, JobState, NewBatch, NewJob
from framefleet.coordinator.webhooks import webhook_url
from framefleet.core import jobspec, sources, telemetry
from framefleet.core.errors import ErrorClass, FramefleetError, to_wire
from framefleet.v1 import framefleet_pb2 as pb

if TYPE_CHECKING:  # the Farm runs the batch finisher, which uses this module's digest
    from framefleet.coordinator.farm import Farm

MAX_ROWS = 100_000
# Rows stored per write while a batch streams in.
ROWS_PER_WRITE = 2000
# Rows cancelled or retried per transaction: short enough that other calls barely wait.
ROWS_PER_STEP = 2000


MAX_ROW_KEY = 128


def row_key(row: pb.BatchRow) -> str:
    """The row's own key, or a hash of its parameters: stable across resubmits. A key may
    name a file or an object one day (manifests, readable names), so it is one plain path
    segment: no separators, no control characters, not '.' or '..'."""
    if row.row_key:
        key = row.row_key
        if (
            len(key) > MAX_ROW_KEY
            or key in (".", "..")
            or any(c in "/\\" or not c.isprintable() for c in key)
        ):
            raise FramefleetError(
                ErrorClass.INVALID_JOB,
                f"row key {key[:40]!r}: at most {MAX_ROW_KEY} printable characters,"
                " no '/' or '\\', not '.' or '..'",
            )
        return key
    blob = json.dumps(jobspec.params_dict(row.params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


async def submit_batch(
    farm: Farm, header: pb.BatchHeader, rows: AsyncIterator[pb.BatchRow], tenant: str = ""
) -> BatchRecord:
    """Validates the shared spec once, then turns every row into a job. Rows whose output
    already exists are cache hits, so a resubmit renders only what is missing."""
    # Placeholders in a shared VideoJSON document are filled per row, so they may wait.
    output = jobspec.validate(header.spec, variants=True)
    destination = farm.destination(header.spec)
    webhook_url(header.spec, farm.config.allowed_webhooks)
    source = await farm.keep_source(header.spec)
    if header.request_id and (record := await farm.batch_request(tenant, header.request_id)):
        return record  # a retried submit: the rows were stored the first time
    batch = NewBatch(uuid.uuid4().hex, header.name, farm.clock(), tenant, header.request_id)
    shared = sources.without_source(header.spec)  # rows differ only in their params
    trace_context = telemetry.to_text(telemetry.inject())
    keys: set[str] = set()
    names: dict[str, str] = {}
    chunk: list[NewJob] = []
    written = 0

    async def write() -> None:
        """Stores a chunk, hidden until the batch opens: memory holds one chunk, not the batch."""
        nonlocal chunk, written
        await farm.check_quota(tenant, len(chunk))
        await farm.add_rows(chunk, header.spec.force)  # found outputs: stored as cache hits
        written += len(chunk)
        chunk = []

    try:
        async for row in rows:
            key = row_key(row)
            if key in keys:
                raise FramefleetError(ErrorClass.INVALID_JOB, f"row key {key!r} appears twice")
            if written + len(chunk) >= MAX_ROWS:
                raise FramefleetError(
                    ErrorClass.INVALID_JOB, f"a batch holds at most {MAX_ROWS} rows"
                )
            keys.add(key)
            jobspec.check_params(row.params)
            spec = pb.JobSpec()
            spec.CopyFrom(shared)
            for name, value in row.params.fields.items():  # the row's values win
                spec.params.fields[name].CopyFrom(value)
            job = farm.new_job(
                spec,
                output,
                source,
                destination,
                batch_name=header.name,
                batch_id=batch.id,
                row_key=key,
                fair_rank=written + len(chunk),
                trace_context=trace_context,
                tenant=tenant,
            )
            if header.spec.output_name:
                name = pb.JobSpec.FromString(job.spec).output_name
                if (other := names.setdefault(name, key)) != key:
                    raise FramefleetError(
                        ErrorClass.INVALID_JOB,
                        f"rows {other!r} and {key!r} are both named {name!r}",
                    )
            chunk.append(job)
            if len(chunk) == ROWS_PER_WRITE:
                await write()
        if chunk:
            await write()
        if not written:
            raise FramefleetError(ErrorClass.INVALID_JOB, "the batch has no rows")
        await farm.open_batch(batch)
    except BaseException:
        await farm.discard_rows(batch.id)  # nothing of a refused batch stays
        raise
    farm.wake()
    record = await farm.batch(batch.id)
    assert record is not None
    return record


async def retry_failed_rows(farm: Farm, batch_id: str) -> int:
    """The failed rows of a batch run again, in the same batch (the console's button), a
    bounded step at a time."""
    total = 0
    while True:
        count = await farm.retry_failed_rows(batch_id, ROWS_PER_STEP)
        total += count
        if count < ROWS_PER_STEP:
            return total
        await asyncio.sleep(0)  # other calls go between steps


async def cancel_batch(farm: Farm, batch_id: str) -> BatchRecord | None:
    """Cancels every row not ended, a bounded transaction of ROWS_PER_STEP rows at a time, so
    a 100,000-row batch neither holds the store nor the coordinator's memory: the holders of
    leased rows are told to drop them, watchers of a row see it end, and one log line per step
    stands for its rows' outcomes."""
    while True:
        if await farm.cancel_rows(batch_id, ROWS_PER_STEP) < ROWS_PER_STEP:
            return await farm.batch(batch_id)
        await asyncio.sleep(0)


def batch_message(record: BatchRecord, now: float) -> pb.Batch:
    counts = record.counts
    batch = pb.Batch(
        id=record.id,
        name=record.name,
        total=record.total,
        queued=counts.get(JobState.QUEUED, 0),
        running=counts.get(JobState.LEASED, 0),
        succeeded=counts.get(JobState.SUCCEEDED, 0),
        failed=counts.get(JobState.FAILED, 0),
        cancelled=counts.get(JobState.CANCELLED, 0),
        cache_hits=record.cache_hits,
        frames_done=record.frames_done,
        frames_total=record.frames_total,
        created_at=timestamp(record.created_at),
        finished_at=timestamp(record.finished_at),
        manifest_url=record.manifest_url or "",
    )
    elapsed = now - record.created_at
    remaining = record.frames_total - record.frames_done
    if record.finished_at is None and record.frames_done and elapsed > 0 and remaining > 0:
        batch.eta_seconds = remaining / (record.frames_done / elapsed)
    if record.digest:
        batch.digest.CopyFrom(_digest_message(json.loads(record.digest)))
    return batch


def _digest_message(digest: dict[str, Any]) -> pb.BatchDigest:
    return pb.BatchDigest(
        wall_seconds=digest["wall_seconds"],
        render_p50_seconds=digest["render_p50_seconds"],
        render_p95_seconds=digest["render_p95_seconds"],
        failures=[
            pb.FailureGroup(**group, error=to_wire(group["error_class"]))
            for group in digest["failures"]
        ],
        summary=digest["summary"],
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def digest(batch: BatchRecord, jobs: list[JobRecord], now: float) -> dict[str, Any]:
    """Counts, wall time, render-time percentiles and failures grouped by error class."""
    finished = [j.finished_at for j in jobs if j.finished_at is not None]
    wall = (max(finished) if finished else now) - batch.created_at
    rendered = [
        j.finished_at - j.started_at
        for j in jobs
        if j.state == JobState.SUCCEEDED and not j.cache_hit and j.started_at and j.finished_at
    ]
    groups: dict[str, dict[str, Any]] = {}
    for job in jobs:
        if job.state == JobState.FAILED:
            error_class = job.error_class or ErrorClass.INTERNAL
            group = groups.setdefault(
                error_class,
                {
                    "error_class": error_class,
                    "count": 0,
                    "example_message": job.error_message or "",
                    "example_row_key": job.row_key or "",
                },
            )
            group["count"] += 1
    failures = sorted(groups.values(), key=lambda g: (-g["count"], g["error_class"]))
    succeeded = sum(1 for j in jobs if j.state == JobState.SUCCEEDED)
    cache_hits = sum(1 for j in jobs if j.cache_hit)
    cancelled = sum(1 for j in jobs if j.state == JobState.CANCELLED)
    summary = f"{succeeded} rendered in {_duration(wall)}"
    if cache_hits:
        summary += f" ({cache_hits} already done)"
    failed = sum(g["count"] for g in failures)
    summary += f", {failed} failed"
    if failures:
        summary += ": " + ", ".join(f"{g['count']} {g['error_class']}" for g in failures)
    if cancelled:
        summary += f", {cancelled} cancelled"
    return {
        "wall_seconds": wall,
        "render_p50_seconds": _percentile(rendered, 0.5),
        "render_p95_seconds": _percentile(rendered, 0.95),
        "failures": failures,
        "summary": summary,
    }


def manifest(batch: BatchRecord, jobs: list[JobRecord], summary: dict[str, Any]) -> bytes:
    """Row key -> output, written next to the outputs."""
    rows = {
        job.row_key or job.id: {
            "job_id": job.id,
            "state": job.state.value,
            "output_url": job.output_url if job.state == JobState.SUCCEEDED else None,
            "named_url": (named_url(job) or None) if job.state == JobState.SUCCEEDED else None,
            "error_class": job.error_class if job.state == JobState.FAILED else None,
            "cache_hit": job.cache_hit,
        }
        for job in jobs
    }
    document = {
        "batch_id": batch.id,
        "name": batch.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at)),
        "digest": summary,
        "rows": rows,
    }
    return json.dumps(document, indent=2).encode()
