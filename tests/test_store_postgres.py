"""The PostgreSQL store against the conformance suite, on a real server the tests start, plus
what only a shared database has: several coordinators claiming from one table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from framefleet.coordinator.store import JobStore
from framefleet.coordinator.store.postgres import PostgresStore
from tests.postgres_server import PostgresServer
from tests.store_conformance import T0, TTL, StoreConformance, new_job


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    async def store(self, postgres: PostgresServer) -> AsyncIterator[JobStore]:
        store = await PostgresStore.open(await postgres.create_database())
        try:
            yield store
        finally:
            await store.close()


async def test_two_coordinators_never_grant_one_job_twice(postgres: PostgresServer) -> None:
    url = await postgres.create_database()
    first, second = await asyncio.gather(PostgresStore.open(url), PostgresStore.open(url))
    try:
        for n in range(40):
            await first.insert(new_job(f"j{n}", created_at=T0 + n))

        async def drain(store: PostgresStore, agent: str) -> list[str]:
            claimed: list[str] = []
            while records := await store.claim(agent, T0 + 100, TTL, 3):
                claimed.extend(r.id for r in records)
            return claimed

        results = await asyncio.gather(
            *(
                drain(store, f"{name}-{n}")
                for name, store in (("a", first), ("b", second))
                for n in range(4)
            )
        )
        claimed = [job for result in results for job in result]
        assert sorted(claimed) == sorted(f"j{n}" for n in range(40))
        assert len(set(claimed)) == len(claimed), "a job was granted twice"
        assert sum(1 for r in results if r) > 1, "one claimer took everything"
    finally:
        await first.close()
        await second.close()


async def test_claims_have_a_connection_of_their_own(postgres: PostgresServer) -> None:
    """Every pooled connection busy (hundreds of agents reconnecting at once): a claim still
    runs at once, on the connection kept for claims."""
    store = await PostgresStore.open(await postgres.create_database())
    held = []
    try:
        await store.insert(new_job("j", created_at=T0))
        held = [await store._pool.acquire() for _ in range(store._pool.get_max_size())]
        async with asyncio.timeout(10):
            claimed = await store.claim("agent", T0 + 1, TTL, 1)
        assert [r.id for r in claimed] == ["j"]
    finally:
        for connection in held:
            await store._pool.release(connection)
        await store.close()
