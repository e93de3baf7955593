"""The job store by area, each a small protocol, as the conformance suite is split
(tests/store_conformance/): a caller types against the narrowest area it uses, and ``JobStore``
is their union, which ``sql.SqlStore`` (SQLite and PostgreSQL) implements."""

from __future__ import annotations

import math
from typing import Protocol

from framefleet.coordinator.store.base import (
    BatchRecord,
    Done,
    JobRecord,
    JobState,
    Lease,
    NewBatch,
    NewJob,
    Transition,
)


class Claims(Protocol):
    """Jobs as clients submitted them, and handing queued ones out as leases."""

    async def insert(self, job: NewJob) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def list_jobs(
        self, states: list[JobState], limit: int, tenant: str | None = None, before: str = ""
    ) -> list[JobRecord]:
        """Jobs as clients submitted them (no chunks), newest first; empty states means every
        state; ``tenant``: only that tenant's;
        ``before``: only jobs submitted before that job (the previous page's last)."""
        ...

    async def count_by_state(self) -> dict[JobState, int]:
        """How many jobs (not chunks) are in each state (for metrics)."""
        ...

    async def queue_depth(self) -> int:
        """Queued work for slots: jobs and chunks (for metrics and autoscaling)."""
        ...

    async def claim(self, agent_id: str, now: float, ttl: float, limit: int) -> list[JobRecord]:
        """Leases up to ``limit`` available queued jobs to agent_id: highest priority first,
        then lowest fair rank (batches interleave), then oldest. A job whose output_url is
        being rendered already (or is claimed alongside) waits: identical jobs render once."""
        ...


class Leases(Protocol):
    """A lease's life after its grant: renewed, reported on, completed, settled, expired or
    cancelled. Every write names the owner and token it acts on."""

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


class Batches(Protocol):
    """Batches: rows stored as they stream in, opened at once, counted, cancelled or retried a
    bounded step at a time, finished once."""

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


class Splits(Protocol):
    """Split jobs: a held parent, its chunks, and ending the family together; whether an
    identical job is in flight (then a job waits for its output rather than splitting)."""

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


class Cache(Protocol):
    """The result cache and stored sources: outputs already written, identical jobs that waited
    for one render, a source stored once per key."""

    async def insert_cached(self, job: NewJob, output_bytes: int) -> JobRecord:
        """Inserts a job that is already done: its output exists (a result-cache hit)."""
        ...

    async def find_output(self, output_url: str) -> JobRecord | None:
        """A succeeded job that wrote output_url, if any."""
        ...

    async def find_outputs(self, output_urls: list[str]) -> dict[str, int]:
        """Of these outputs, the ones a succeeded job wrote, with their sizes."""
        ...

    async def complete_waiting(self, outputs: dict[str, int], now: float) -> list[JobRecord]:
        """Completes, as cache hits, the queued jobs that wait for these outputs (output URL
        -> size in bytes)."""
        ...

    async def put_source(self, key: str, source: bytes) -> None:
        """Stores a job source (a JobSpec holding only the source) once per key."""
        ...

    async def get_source(self, key: str) -> bytes | None: ...


class Requests(Protocol):
    """What a submit is checked against before it is admitted: the job or batch a retried
    request made already, and the tenant's unfinished work."""

    async def find_request(self, tenant: str, request_id: str) -> JobRecord | None:
        """The job (submitted alone) that this tenant's request id made, if any."""
        ...

    async def find_batch_request(self, tenant: str, request_id: str) -> str | None:
        """The id of the batch that this tenant's request id made, if any."""
        ...

    async def count_unfinished(self, tenant: str) -> int:
        """The tenant's jobs that are queued or leased (chunks are not counted)."""
        ...


class JobStore(Claims, Leases, Batches, Splits, Cache, Requests, Protocol):
    """Every area: what the Farm holds, and what each database's store implements."""

    async def close(self) -> None: ...
