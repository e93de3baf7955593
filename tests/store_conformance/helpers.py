"""What every area of the conformance suite uses: a job, a fixed clock, and lease helpers."""

from __future__ import annotations

from framefleet.coordinator.store import (
    Done,
    JobRecord,
    JobState,
    JobStore,
    Lease,
    NewJob,
    Transition,
)

T0 = 1_700_000_000.0
TTL = 20.0


def new_job(
    job_id: str,
    *,
    created_at: float = T0,
    priority: int = 0,
    max_attempts: int = 3,
    frames_total: int = 10,
    output: str | None = None,
) -> NewJob:
    return NewJob(
        id=job_id,
        spec=f"spec of {job_id}".encode(),
        content_key=f"key-{output or job_id}",
        output_url=f"file:///out/{output or job_id}.mp4",
        frames_total=frames_total,
        priority=priority,
        max_attempts=max_attempts,
        created_at=created_at,
    )


async def must_get(store: JobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None, f"job {job_id} is missing"
    return record


async def holder(store: JobStore, job_id: str) -> str:
    """Who holds the job's lease now ("nobody" if no one): the helpers below act as the holder,
    so the tests that use them are about the token; the owner has tests of its own."""
    record = await store.get(job_id)
    return (record.lease_owner if record else None) or "nobody"


async def complete_one(
    store: JobStore, job_id: str, token: int, output_bytes: int, now: float
) -> JobRecord | None:
    """Reports one success; the record if it was accepted."""
    done = [Done(job_id, token, output_bytes)]
    records = await store.complete(await holder(store, job_id), done, now)
    assert len(records) <= 1
    return records[0] if records else None


async def progress(
    store: JobStore, job_id: str, token: int, frames_done: int, upload_id: str = ""
) -> bool:
    lease = Lease(job_id, await holder(store, job_id), token)
    return await store.progress(lease, frames_done, upload_id)


async def fail(
    store: JobStore,
    job_id: str,
    token: int,
    error_class: str,
    message: str,
    retry_at: float | None,
    now: float,
) -> JobRecord | None:
    """A failure the policy retries at retry_at, or (None) fails for good."""
    state = JobState.FAILED if retry_at is None else JobState.QUEUED
    transition = Transition(state, now if retry_at is None else retry_at, error_class, message)
    return await store.settle(Lease(job_id, await holder(store, job_id), token), transition, now)


async def release(store: JobStore, job_id: str, token: int, now: float) -> JobRecord | None:
    """A hand-back: requeued at once, the attempt given back."""
    transition = Transition(JobState.QUEUED, now, spends_attempt=False)
    return await store.settle(Lease(job_id, await holder(store, job_id), token), transition, now)


async def expire(store: JobStore, now: float, retry_at: float) -> list[JobRecord]:
    """What the reaper does, with a policy that retries every expired lease at retry_at."""
    settled = []
    for record in await store.expired(now, 100):
        assert record.lease_owner is not None
        lease = Lease(record.id, record.lease_owner, record.fencing_token)
        transition = Transition(JobState.QUEUED, retry_at, "LEASE_EXPIRED", "lease expired")
        after = await store.settle(lease, transition, now, expired_by=now)
        if after is not None:
            settled.append(after)
    return settled


async def must_claim(store: JobStore, agent_id: str, now: float, ttl: float = TTL) -> JobRecord:
    records = await store.claim(agent_id, now, ttl, 1)
    assert records, f"{agent_id} claimed nothing at {now}"
    (record,) = records
    return record
