"""Jobs and batches as a caller may see them, for the gRPC services and the console: the one
place tenant visibility is applied. Records belong to the tenant (token name) that submitted
them; another tenant's reads as absent, exactly as one that does not exist, so ids cannot be
probed."""

from __future__ import annotations

from typing import Protocol, TypeVar

from framefleet.coordinator.store import BatchRecord, JobRecord, JobState
from framefleet.coordinator.store.areas import Batches, Claims
from framefleet.coordinator.tokens import Principal


class _Owned(Protocol):
    @property
    def tenant(self) -> str: ...


R = TypeVar("R", bound=_Owned)


def _seen(caller: Principal, record: R | None) -> R | None:
    """The record if the caller may see it; else as if it did not exist."""
    return record if record is not None and caller.sees(record.tenant) else None


def _scope(caller: Principal, tenant: str | None) -> str | None:
    """Whose records a listing holds: the caller's own, or for an admin every tenant's (only
    ``tenant``'s when given)."""
    return tenant if caller.scope is None else caller.scope


class Queries:
    def __init__(self, jobs: Claims, batches: Batches) -> None:
        self._jobs = jobs
        self._batches = batches

    async def job(self, caller: Principal, job_id: str) -> JobRecord | None:
        return _seen(caller, await self._jobs.get(job_id))

    async def batch(self, caller: Principal, batch_id: str) -> BatchRecord | None:
        return _seen(caller, await self._batches.get_batch(batch_id))

    async def jobs(
        self,
        caller: Principal,
        states: list[JobState],
        limit: int,
        tenant: str | None = None,
        before: str = "",
    ) -> list[JobRecord]:
        """Jobs newest first (see ``Claims.list_jobs``) of the caller's scope."""
        return await self._jobs.list_jobs(states, limit, _scope(caller, tenant), before=before)

    async def batch_jobs(self, caller: Principal, batch_id: str) -> list[JobRecord]:
        """A batch's rows, in submission order; none when the caller may not see it."""
        if await self.batch(caller, batch_id) is None:
            return []
        return await self._batches.batch_jobs(batch_id)

    async def recent_batches(
        self, caller: Principal, limit: int, tenant: str | None = None
    ) -> list[str]:
        """The ids of the newest batches of the caller's scope, newest first."""
        return await self._batches.recent_batches(limit, _scope(caller, tenant))

    async def counts(self, caller: Principal) -> dict[JobState, int]:
        """Jobs by state over every tenant: for admins only (others get none)."""
        return await self._jobs.count_by_state() if caller.scope is None else {}
