"""Queries applies tenant visibility once for gRPC and the console: another tenant's job or batch
reads as absent, listings keep to the caller's tenant, and only an admin picks a tenant or sees
every tenant's counts."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framefleet.coordinator.queries import Queries
from framefleet.coordinator.store import JobState, JobStore, NewBatch, open_store
from framefleet.coordinator.tokens import Principal, Role
from tests.store_conformance import T0, new_job

ACME, BOLT = Principal("acme", Role.READ), Principal("bolt", Role.SUBMIT)
ADMIN = Principal("root", Role.ADMIN)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    opened = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    try:
        await opened.insert(dataclasses.replace(new_job("a1"), tenant="acme"))
        await opened.insert(dataclasses.replace(new_job("b1"), tenant="bolt"))
        rows = [
            dataclasses.replace(new_job(f"row-{n}"), tenant="acme", batch_id="batch-a")
            for n in range(2)
        ]
        await opened.insert_batch(NewBatch("batch-a", "rows", T0, "acme"), rows, {})
        yield opened
    finally:
        await opened.close()


async def test_another_tenants_records_read_as_absent(store: JobStore) -> None:
    queries = Queries(store, store)
    assert (await queries.job(ACME, "a1")) is not None
    assert await queries.job(BOLT, "a1") is None  # exists, but not bolt's: as if it did not
    assert await queries.job(ACME, "missing") is None
    assert (await queries.job(ADMIN, "b1")) is not None
    batch = await queries.batch(ACME, "batch-a")
    assert batch is not None and batch.total == 2
    assert await queries.batch(BOLT, "batch-a") is None
    assert [r.id for r in await queries.batch_jobs(ACME, "batch-a")] == ["row-0", "row-1"]
    assert await queries.batch_jobs(BOLT, "batch-a") == []


async def test_listings_keep_to_the_callers_tenant(store: JobStore) -> None:
    queries = Queries(store, store)
    assert {r.id for r in await queries.jobs(BOLT, [], 10)} == {"b1"}
    # A tenant cannot widen its scope by naming another tenant; an admin can narrow its own.
    assert {r.id for r in await queries.jobs(BOLT, [], 10, tenant="acme")} == {"b1"}
    assert {r.id for r in await queries.jobs(ADMIN, [], 10, tenant="acme")} == {
        "a1",
        "row-0",
        "row-1",
    }
    assert len(await queries.jobs(ADMIN, [JobState.QUEUED], 10)) == 4
    assert await queries.recent_batches(BOLT, 10) == []
    assert await queries.recent_batches(ACME, 10) == ["batch-a"]
    assert await queries.recent_batches(ADMIN, 10, tenant="bolt") == []
    assert await queries.counts(ACME) == {}
    assert (await queries.counts(ADMIN))[JobState.QUEUED] == 4
