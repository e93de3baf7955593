"""Store records to wire messages."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from framefleet.coordinator.named_outputs import named_url
from framefleet.coordinator.store import JobRecord, JobState
from framefleet.core.errors import to_wire
from framefleet.v1 import framefleet_pb2 as pb

WIRE_STATE = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.LEASED: pb.JOB_STATE_LEASED,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}
STORE_STATE = {wire: state for state, wire in WIRE_STATE.items()}


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def job_message(record: JobRecord, with_spec: bool = True) -> pb.Job:
    job = pb.Job(
        id=record.id,
        state=WIRE_STATE[record.state],
        attempt=record.attempt,
        content_key=record.content_key,
        output_url=record.output_url if record.state == JobState.SUCCEEDED else "",
        error_class=record.error_class or "",
        error=to_wire(record.error_class),
        error_message=record.error_message or "",
        frames_done=record.frames_done,
        frames_total=record.frames_total,
        agent_id=record.lease_owner or "",
        output_bytes=record.output_bytes,
        created_at=timestamp(record.created_at),
        started_at=timestamp(record.started_at),
        finished_at=timestamp(record.finished_at),
        cache_hit=record.cache_hit,
        batch_id=record.batch_id or "",
        row_key=record.row_key or "",
        interruptions=record.interruptions,
        chunks=record.chunks,
        chunks_done=record.chunks_done,
    )
    if with_spec:
        job.spec.ParseFromString(record.spec)
    if record.state == JobState.SUCCEEDED:
        job.named_url = named_url(record)
    return job
