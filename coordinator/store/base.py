"""The job table's interface. Every store implements it and passes tests/store_conformance.py.

All times are Unix seconds passed in by the caller, so lease logic is tested without sleeping.
A lease is (owner, fencing_token, expires_at); the token grows with every grant and every
cancel, and each call that acts on a lease names its token, so a stale holder changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class JobState(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class NewJob:
    id: str
    spec: bytes  # serialized framefleet.v1.JobSpec
    content_key: str
    output_url: str
    frames_total: int
    priority: int
    max_attempts: int
    created_at: float


@dataclass(frozen=True)
class JobRecord:
    id: str
    state: JobState
    spec: bytes
    content_key: str
    output_url: str
    frames_total: int
    priority: int
    max_attempts: int
    created_at: float
    available_at: float
    attempt: int = 0
    lease_owner: str | None = None
    fencing_token: int = 0
    lease_expires_at: float | None = None
    frames_done: int = 0
    output_bytes: int = 0
    error_class: str | None = None
    error_message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cache_hit: bool = False


class JobStore(Protocol):
    async def close(self) -> None: ...

    async def insert(self, job: NewJob) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def list_jobs(self, states: list[JobState], limit: int) -> list[JobRecord]:
        """Newest first; empty states means every state."""
        ...

    async def insert_cached(self, job: NewJob, output_bytes: int) -> JobRecord:
        """Inserts a job that is already done: its output exists (a result-cache hit)."""
        ...

    async def find_output(self, output_url: str) -> JobRecord | None:
        """A succeeded job that wrote output_url, if any."""
        ...

    async def claim(self, agent_id: str, now: float, ttl: float) -> JobRecord | None:
        """Leases the next available queued job (highest priority, then oldest) to agent_id.
        A job whose output_url is being rendered under another lease waits: identical jobs in
        flight render once."""
        ...

    async def renew(
        self, agent_id: str, leases: list[tuple[str, int]], now: float, ttl: float
    ) -> set[str]:
        """Extends the named leases that agent_id still holds; returns the renewed job ids."""
        ...

    async def leases_of(self, agent_id: str) -> list[JobRecord]:
        """Jobs currently leased to agent_id."""
        ...

    async def progress(self, job_id: str, token: int, frames_done: int) -> bool: ...

    async def complete(
        self, job_id: str, token: int, output_url: str, output_bytes: int, now: float
    ) -> JobRecord | None:
        """Records success if the lease is current; None when the token is stale."""
        ...

    async def fail(
        self,
        job_id: str,
        token: int,
        error_class: str,
        message: str,
        retry_at: float | None,
        now: float,
    ) -> JobRecord | None:
        """Requeues at retry_at if given and attempts remain, else fails the job for good.
        None when the token is stale."""
        ...

    async def complete_waiting(
        self, output_url: str, output_bytes: int, now: float
    ) -> list[JobRecord]:
        """Completes, as cache hits, the queued jobs that wait for output_url."""
        ...

    async def release(self, job_id: str, token: int, now: float) -> JobRecord | None:
        """The holder gives the lease back unfinished: requeued at once, attempt not spent."""
        ...

    async def expire(self, now: float, retry_at: float) -> list[JobRecord]:
        """Leases past their expiry go back to the queue (or fail when out of attempts)."""
        ...

    async def extend_leases(self, until: float) -> int:
        """Pushes every lease's expiry to at least ``until`` (a restarted coordinator's grace
        window for agents to reconnect); returns how many leases there are."""
        ...

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancels a job that has not finished; bumps the token so its holder is fenced.
        Returns the record as it was before, or None when there is no such job."""
        ...
