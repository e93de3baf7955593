"""The job table's records; the interface, by area, is ``areas.py``. Every store passes
tests/store_conformance/.

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

from dataclasses import dataclass
from enum import StrEnum


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
