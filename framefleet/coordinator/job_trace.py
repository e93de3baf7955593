"""Spans for a job's life on the coordinator, joined to the trace its submit started: time
waiting in the queue, and each attempt from lease to outcome. They are recorded when the
interval ends, with its real start time, so they survive nothing but need no state either."""

from __future__ import annotations

from opentelemetry.trace import Status, StatusCode

from framefleet.coordinator.store import JobRecord
from framefleet.core import telemetry


def job_span(
    record: JobRecord, name: str, start: float | None, end: float, error: str | None = None,
    **attributes: str | int | bool,
) -> None:  # fmt: skip
    if not telemetry.active() or start is None:
        return
    parent = telemetry.extract(telemetry.from_text(record.trace_context))
    if record.parent_id is not None:  # a chunk's spans are its job's, with its place
        attributes = {**attributes, "chunk.index": record.chunk_index, "chunk.id": record.id}
    span = telemetry.tracer.start_span(
        name,
        context=parent,
        start_time=int(start * 1e9),
        attributes={
            "framefleet.job.id": record.parent_id or record.id,
            "framefleet.job.attempt": record.attempt,
            "framefleet.job.content_key": record.content_key,
            "framefleet.batch.id": record.batch_id or "",
            "framefleet.agent.id": record.lease_owner or "",
            **{f"framefleet.{key}": value for key, value in attributes.items()},
        },
    )
    if error:
        span.set_attribute("framefleet.error.class", error)
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=int(end * 1e9))
