"""The embedded SQLite store against the conformance suite, plus what only a file store has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framefleet.coordinator.store import JobState, JobStore
from framefleet.coordinator.store.open import open_store
from tests.store_conformance import (
    T0,
    TTL,
    StoreConformance,
    complete_one,
    expire,
    must_claim,
    new_job,
)


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[JobStore]:
        store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
        try:
            yield store
        finally:
            await store.close()


async def test_jobs_and_leases_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    store = await open_store(f"sqlite:///{path}", migrate=True)
    try:
        await store.insert(new_job("leased"))
        await store.insert(new_job("done"))
        await store.insert(new_job("queued"))
        lease = await must_claim(store, "agent", T0)
        assert lease.id == "leased"
        done = await must_claim(store, "agent", T0)
        assert done.id == "done"
        completed = await complete_one(store, "done", done.fencing_token, 7, T0 + 1)
        assert completed is not None
        before = {r.id: r for r in await store.list_jobs([], 10)}
    finally:
        await store.close()

    reopened = await open_store(f"sqlite:///{path}", migrate=False)
    try:
        after = {r.id: r for r in await reopened.list_jobs([], 10)}
        assert after == before
        assert after["leased"].state == JobState.LEASED
        assert after["done"].state == JobState.SUCCEEDED
        # The lease is still fenced by its token after the restart, and tokens keep growing.
        assert await reopened.renew("agent", [("leased", lease.fencing_token)], T0 + 5, TTL) == {
            "leased"
        }
        assert (await expire(reopened, T0 + TTL + 6, T0 + TTL + 6))[0].id == "leased"
        again = await must_claim(reopened, "other", T0 + TTL + 6)
        assert again.id == "leased"  # the oldest queued job
        assert again.fencing_token > lease.fencing_token
        assert again.attempt == 2
    finally:
        await reopened.close()
