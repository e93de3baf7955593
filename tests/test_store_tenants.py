"""Jobs and batches keep the tenant that submitted them, on both stores, and listing can be
scoped to one tenant; a store made before tenants gains the column by its migration."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from framefleet.coordinator.store import JobState, JobStore, NewBatch
from framefleet.coordinator.store.migrations import migrations
from framefleet.coordinator.store.open import open_store
from framefleet.coordinator.store.postgres import PostgresStore
from framefleet.coordinator.store.sqlite import statements
from tests.postgres_server import PostgresServer
from tests.store_conformance import T0, new_job


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        opened: JobStore = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        opened = await PostgresStore.open(await postgres.create_database())
    try:
        yield opened
    finally:
        await opened.close()


async def test_jobs_and_batches_keep_their_tenant(store: JobStore) -> None:
    await store.insert(dataclasses.replace(new_job("a1"), tenant="acme"))
    await store.insert(dataclasses.replace(new_job("b1"), tenant="bolt"))
    batch_rows = [
        dataclasses.replace(new_job(f"a-row-{n}"), tenant="acme", batch_id="batch-a")
        for n in range(3)
    ]
    await store.insert_batch(NewBatch("batch-a", "rows", T0, "acme"), batch_rows, {})

    record = await store.get("b1")
    assert record is not None and record.tenant == "bolt"
    batch = await store.get_batch("batch-a")
    assert batch is not None and batch.tenant == "acme" and batch.total == 3

    acme = {r.id for r in await store.list_jobs([], 100, "acme")}
    assert acme == {"a1", "a-row-0", "a-row-1", "a-row-2"}
    assert {r.id for r in await store.list_jobs([JobState.QUEUED], 100, "bolt")} == {"b1"}
    assert await store.list_jobs([JobState.SUCCEEDED], 100, "bolt") == []
    assert len(await store.list_jobs([], 100)) == 5  # no scope: every tenant's (admin)
    assert await store.list_jobs([], 100, "nobody") == []


async def test_a_store_made_before_tenants_gains_the_column(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    async with aiosqlite.connect(path) as db:
        # The schema before tenants (migration 0001), with a batch of its own.
        for statement in statements(migrations("sqlite")[0].sql):
            await db.execute(statement)
        await db.execute("INSERT INTO batches (id, name, created_at) VALUES ('before', 'x', 1)")
        await db.commit()
    store = await open_store(f"sqlite:///{path}", migrate=True)
    try:
        before = await store.get_batch("before")
        assert before is not None and before.tenant == ""
        await store.insert_batch(NewBatch("old", "rows", T0), [new_job("r")], {})
        batch = await store.get_batch("old")
        assert batch is not None and batch.tenant == ""
    finally:
        await store.close()


async def test_request_ids_pages_and_unfinished_counts(store: JobStore) -> None:
    for n in range(5):
        await store.insert(
            dataclasses.replace(
                new_job(f"j{n}", created_at=T0 + n), tenant="acme", request_id=f"req-{n}"
            )
        )
    await store.insert(dataclasses.replace(new_job("other"), tenant="bolt", request_id="req-0"))
    found = await store.find_request("acme", "req-3")
    assert found is not None and found.id == "j3"
    other = await store.find_request("bolt", "req-0")
    assert other is not None and other.id == "other"
    assert await store.find_request("acme", "req-9") is None
    await store.insert_batch(NewBatch("b", "rows", T0, "acme", "req-b"), [new_job("r")], {})
    assert await store.find_batch_request("acme", "req-b") == "b"
    assert await store.find_batch_request("bolt", "req-b") is None

    first = await store.list_jobs([], 2, "acme")
    second = await store.list_jobs([], 2, "acme", before=first[-1].id)
    rest = await store.list_jobs([], 10, "acme", before=second[-1].id)
    assert [r.id for r in first + second + rest] == ["j4", "j3", "j2", "j1", "j0"]

    assert await store.count_unfinished("acme") == 5
    await store.cancel("j0", T0 + 10)
    assert await store.count_unfinished("acme") == 4
