"""The job table's interface. Every store implements it and passes tests/store_conformance.py.

All times are Unix seconds passed in by the caller, so lease logic is tested without sleeping.
A lease is (owner, fencing_token, expires_at); the token grows with every grant and every
cancel, and each call that acts on a lease names its owner and its token in the same
conditional write, so a stale holder, or another agent that learnt the token, changes nothing.
Tokens are not guessable: the high 32 bits count grants (so tokens only grow, as the proto
promises), the low 32 bits are random.

Stores hold no policy: whether a job gets another attempt, and when, is decided by
framefleet/coordinator/retry_policy.py and handed to ``settle`` as a ``Transition``.
"""

from __future__ import annotations

import math
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
    spec: bytes  # serialized framefleet.v1.JobSpec, without its source when source_key is set
    content_key: str
    output_url: str
    frames_total: int
    priority: int
    max_attempts: int
    created_at: float
    # The source (template) is stored once, under this key, for every job that uses it.
    source_key: str = ""
    batch_id: str | None = None
    row_key: str | None = None
    # Position within its batch: claims take rank 0 of every batch before rank 1 of any, so
    # batches interleave and a single job (rank 0) never waits behind a long batch.
    fair_rank: int = 0
    # W3C trace context of the submit (JSON of the propagation carrier), so every later span
    # of the job joins the client's trace.
    trace_context: str = ""
    # The client token's name that submitted it; only that tenant (or an admin) sees it.
    tenant: str = ""
    # The client's request id (idempotent submit): one job alone per (tenant, request_id).
    request_id: str = ""
    # A chunk of a split job: its parent, its place, and its frames [first_frame, end_frame).
    parent_id: str | None = None
    chunk_index: int = 0
    first_frame: int = 0
    end_frame: int = 0
    # A split job (a parent): how many chunks it has. It is inserted leased to nobody (held)
    # with its chunks, and queued as the assembly of their outputs when the last succeeds.
    chunks: int = 0


@dataclass(frozen=True)
class Lease:
    """A lease as its holder names it."""

    job_id: str
    owner: str
    token: int


@dataclass(frozen=True)
class Transition:
    """What a lease that ended without success becomes: the retry policy's decision, as data."""

    state: JobState  # QUEUED (another attempt, from available_at on) or FAILED (for good)
    available_at: float
    error_class: str | None = None  # None keeps the previous error
    error_message: str | None = None
    # False: the attempt is given back (the job was not at fault).
    spends_attempt: bool = True
    # Counted in the job's interruptions (a draining agent handed it back).
    interruption: bool = False


@dataclass(frozen=True)
class Done:
    """An agent's report that a lease's render is complete."""

    job_id: str
    token: int
    # The output is where the coordinator said (the job's output_url): an agent cannot
    # report another place.
    output_bytes: int


@dataclass(frozen=True)
class NewBatch:
    id: str
    name: str
    created_at: float
    tenant: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class BatchRecord:
    id: str
    name: str
    created_at: float
    total: int
    counts: dict[JobState, int]
    cache_hits: int
    frames_done: int
    frames_total: int
    finished_at: float | None = None
    digest: str | None = None  # JSON, written once when every row has ended
    manifest_url: str | None = None
    tenant: str = ""


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
    source_key: str = ""
    batch_id: str | None = None
    row_key: str | None = None
    trace_context: str = ""
    # The current attempt's S3 multipart upload, as the agent reported it.
    upload_id: str | None = None
    interruptions: int = 0
    tenant: str = ""
    request_id: str = ""
    parent_id: str | None = None
    chunk_index: int = 0
    first_frame: int = 0
    end_frame: int = 0
    chunks: int = 0
    chunks_done: int = 0

    @property
    def held(self) -> bool:
        """A split job whose chunks run: leased to nobody, no lease to renew or expire."""
        return self.chunks > 0 and self.state == JobState.LEASED and self.lease_owner is None


class JobStore(Protocol):
    async def close(self) -> None: ...

    async def insert(self, job: NewJob) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def count_by_state(self) -> dict[JobState, int]:
        """How many jobs (not chunks) are in each state (for metrics)."""
        ...

    async def queue_depth(self) -> int:
        """Queued work for slots: jobs and chunks (for metrics and autoscaling)."""
        ...

    async def list_jobs(
        self, states: list[JobState], limit: int, tenant: str | None = None, before: str = ""
    ) -> list[JobRecord]:
        """Jobs as clients submitted them (no chunks), newest first; empty states means every
        state; ``tenant``: only that tenant's;
        ``before``: only jobs submitted before that job (the previous page's last)."""
        ...

    async def find_request(self, tenant: str, request_id: str) -> JobRecord | None:
        """The job (submitted alone) that this tenant's request id made, if any."""
        ...

    async def find_batch_request(self, tenant: str, request_id: str) -> str | None:
        """The id of the batch that this tenant's request id made, if any."""
        ...

    async def count_unfinished(self, tenant: str) -> int:
        """The tenant's jobs that are queued or leased (chunks are not counted)."""
        ...

    async def insert_split(self, parent: NewJob, chunks: list[NewJob]) -> JobRecord:
        """Inserts a split job, held while its chunks (queued) run, in one transaction."""
        ...

    async def chunks_of(self, parent_id: str) -> list[JobRecord]:
        """A split job's chunks, in order."""
        ...

    async def end_split(
        self,
        parent_id: str,
        state: JobState,
        now: float,
        error_class: str | None = None,
        error_message: str | None = None,
    ) -> JobRecord | None:
        """Ends a split job that has not ended (FAILED with that error, or CANCELLED) and
        cancels its unfinished chunks, fencing every lease, in one transaction; returns the
        job as it is after, or None when it had ended already."""
        ...

    async def in_flight(self, output_url: str) -> bool:
        """Whether a queued or running job is rendering output_url."""
        ...

    async def insert_cached(self, job: NewJob, output_bytes: int) -> JobRecord:
        """Inserts a job that is already done: its output exists (a result-cache hit)."""
        ...

    async def find_output(self, output_url: str) -> JobRecord | None:
        """A succeeded job that wrote output_url, if any."""
        ...

    async def find_outputs(self, output_urls: list[str]) -> dict[str, int]:
        """Of these outputs, the ones a succeeded job wrote, with their sizes."""
        ...

    async def put_source(self, key: str, source: bytes) -> None:
        """Stores a job source (a JobSpec holding only the source) once per key."""
        ...

    async def get_source(self, key: str) -> bytes | None: ...

    async def insert_batch(
        self, batch: NewBatch, jobs: list[NewJob], cached: dict[str, int]
    ) -> None:
        """Inserts a batch and its rows in one transaction; rows whose id is in ``cached`` are
        inserted as finished cache hits with that output size."""
        ...

    async def insert_rows(self, jobs: list[NewJob], cached: dict[str, int]) -> None:
        """Inserts one chunk of a batch that is still arriving, hidden from claims (rows in
        ``cached`` as finished cache hits). The batch itself does not exist yet."""
        ...

    async def open_batch(self, batch: NewBatch) -> None:
        """Creates the batch whose rows insert_rows stored, and makes them claimable, at once."""
        ...

    async def discard_rows(self, batch_id: str) -> None:
        """Deletes the rows of a batch that never opened (its stream failed midway)."""
        ...

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        """The batch with its rows counted by state."""
        ...

    async def recent_batches(self, limit: int, tenant: str | None = None) -> list[str]:
        """The ids of the newest batches (of ``tenant`` only, unless None), newest first."""
        ...

    async def batch_jobs(self, batch_id: str) -> list[JobRecord]:
        """Every row of a batch, in submission order."""
        ...

    async def ended_batches(self) -> list[str]:
        """Batches not yet marked finished whose rows have all ended."""
        ...

    async def finish_batch(
        self, batch_id: str, finished_at: float, digest: str, manifest_url: str
    ) -> bool:
        """Marks a batch finished, once: False if it already was (another coordinator)."""
        ...

    async def retry_failed_rows(self, batch_id: str, now: float, limit: int) -> int:
        """Queues up to ``limit`` of a batch's failed rows again with fresh attempts, in one
        transaction, and reopens the batch (its digest and manifest are made again when they
        end); returns how many (fewer than ``limit``: none are left)."""
        ...

    async def cancel_batch(
        self, batch_id: str, now: float, limit: int
    ) -> tuple[list[str], list[JobRecord]]:
        """Cancels up to ``limit`` rows that have not ended, oldest first, in one transaction:
        returns their ids (fewer than ``limit``: none are left) and, as they were before, the
        ones that were leased (their holders are told to drop them)."""
        ...

    async def claim(self, agent_id: str, now: float, ttl: float, limit: int) -> list[JobRecord]:
        """Leases up to ``limit`` available queued jobs to agent_id: highest priority first,
        then lowest fair rank (batches interleave), then oldest. A job whose output_url is
        being rendered already (or is claimed alongside) waits: identical jobs render once."""
        ...

    async def renew(
        self, agent_id: str, leases: list[tuple[str, int]], now: float, ttl: float
    ) -> set[str]:
        """Extends the named leases that agent_id still holds; returns the renewed job ids."""
        ...

    async def leases_of(self, agent_id: str) -> list[JobRecord]:
        """Jobs currently leased to agent_id."""
        ...

    async def progress(
        self, lease: Lease, frames_done: int, upload_id: str = "", frames_total: int = 0
    ) -> bool:
        """Records frames done (and the attempt's upload id, once known) on a current lease;
        ``frames_total`` fills in a total unknown at submit (a composition's own length); a
        chunk's parent gets the sum of its chunks' frames done."""
        ...

    async def complete(self, owner: str, done: list[Done], now: float) -> list[JobRecord]:
        """Records the successes whose leases ``owner`` holds with those tokens (one statement
        for all); any other success is left out of the result and changes nothing. Chunks
        count towards their parent, which is queued for assembly when its last chunk succeeds
        (in the same transaction)."""
        ...

    async def complete_waiting(self, outputs: dict[str, int], now: float) -> list[JobRecord]:
        """Completes, as cache hits, the queued jobs that wait for these outputs (output URL
        -> size in bytes)."""
        ...

    async def settle(
        self, lease: Lease, transition: Transition, now: float, expired_by: float = math.inf
    ) -> JobRecord | None:
        """Applies the policy's transition if the lease is still held by its owner with its
        token (and, with ``expired_by``, expired before then); None when it is not."""
        ...

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        """Up to ``limit`` leases past their expiry, soonest expired first."""
        ...

    async def extend_leases(self, until: float) -> int:
        """Pushes every lease's expiry to at least ``until`` (a restarted coordinator's grace
        window for agents to reconnect); returns how many leases there are."""
        ...

    async def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """Cancels a job that has not finished; bumps the token so its holder is fenced.
        Returns the record as it was before, or None when there is no such job."""
        ...
