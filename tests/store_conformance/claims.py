"""Claims: order, availability, priority and fairness, concurrency; insert, get and list."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from framefleet.coordinator.store import JobState, JobStore
from tests.store_conformance.helpers import T0, TTL, must_claim, must_get, new_job


class ClaimTests:
    async def test_insert_returns_a_queued_record(self, store: JobStore) -> None:
        job = new_job("a", created_at=T0 + 5, priority=7, max_attempts=4, frames_total=12)
        record = await store.insert(job)
        assert record.id == "a"
        assert record.state == JobState.QUEUED
        assert record.spec == b"spec of a"
        assert record.content_key == "key-a"
        assert record.output_url == "file:///out/a.mp4"
        assert record.frames_total == 12
        assert record.priority == 7
        assert record.max_attempts == 4
        assert record.created_at == T0 + 5
        assert record.available_at == T0 + 5
        assert record.attempt == 0
        assert record.lease_owner is None
        assert record.fencing_token == 0
        assert record.lease_expires_at is None
        assert record.frames_done == 0
        assert record.error_class is None
        assert record.finished_at is None
        assert await store.get("a") == record

    async def test_get_unknown_job_is_none(self, store: JobStore) -> None:
        assert await store.get("nope") is None

    async def test_list_is_newest_first_with_state_filter_and_limit(self, store: JobStore) -> None:
        for i in range(5):
            await store.insert(new_job(f"j{i}", created_at=T0 + i))
        # j0 is the oldest, so it is claimed first.
        leased = await must_claim(store, "agent", T0 + 10)
        assert leased.id == "j0"

        everything = await store.list_jobs([], 100)
        assert [r.id for r in everything] == ["j4", "j3", "j2", "j1", "j0"]
        assert [r.id for r in await store.list_jobs([], 2)] == ["j4", "j3"]
        assert [r.id for r in await store.list_jobs([JobState.QUEUED], 100)] == [
            "j4",
            "j3",
            "j2",
            "j1",
        ]
        assert [r.id for r in await store.list_jobs([JobState.LEASED], 100)] == ["j0"]
        both = await store.list_jobs([JobState.LEASED, JobState.QUEUED], 3)
        assert [r.id for r in both] == ["j4", "j3", "j2"]
        assert await store.list_jobs([JobState.SUCCEEDED], 100) == []

    async def test_claim_takes_highest_priority_then_oldest(self, store: JobStore) -> None:
        await store.insert(new_job("low-old", created_at=T0, priority=0))
        await store.insert(new_job("high-old", created_at=T0 + 1, priority=5))
        await store.insert(new_job("high-new", created_at=T0 + 2, priority=5))
        await store.insert(new_job("low-new", created_at=T0 + 3, priority=0))
        await store.insert(new_job("negative", created_at=T0 + 4, priority=-1))
        order = [(await must_claim(store, "agent", T0 + 10)).id for _ in range(5)]
        assert order == ["high-old", "high-new", "low-old", "low-new", "negative"]
        assert await store.claim("agent", T0 + 10, TTL, 1) == []

    async def test_claim_only_takes_available_jobs(self, store: JobStore) -> None:
        await store.insert(new_job("first", created_at=T0 + 100))
        await store.insert(new_job("second", created_at=T0 + 101, priority=9))
        # Neither is available yet.
        assert await store.claim("agent", T0 + 99, TTL, 1) == []
        # A job may be claimed from its available_at on, and not a moment before.
        first = await must_claim(store, "agent", T0 + 100)
        assert first.id == "first"
        assert await store.claim("agent", T0 + 100.5, TTL, 1) == []
        second = await must_claim(store, "agent", T0 + 101)
        assert second.id == "second"

    async def test_claim_sets_the_lease(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        record = await must_claim(store, "agent-1", T0 + 3, ttl=15)
        assert record.id == "a"
        assert record.state == JobState.LEASED
        assert record.lease_owner == "agent-1"
        assert record.lease_expires_at == T0 + 18
        assert record.attempt == 1
        assert record.fencing_token > 0
        assert record.started_at == T0 + 3
        assert await must_get(store, "a") == record

    async def test_claim_returns_none_when_nothing_is_queued(self, store: JobStore) -> None:
        assert await store.claim("agent", T0, TTL, 1) == []
        await store.insert(new_job("a"))
        await must_claim(store, "agent", T0)
        # The only job is leased: nothing left for anyone.
        assert await store.claim("other", T0 + 1, TTL, 1) == []

    async def test_concurrent_claims_never_share_a_job(self, store: JobStore) -> None:
        for i in range(20):
            await store.insert(new_job(f"j{i:02}", created_at=T0 + i))
        agents = [f"agent-{n}" for n in range(50)]
        results = await asyncio.gather(*(store.claim(a, T0 + 100, TTL, 1) for a in agents))
        granted = {agent: r[0] for agent, r in zip(agents, results, strict=True) if r}
        assert all(len(r) <= 1 for r in results)
        assert len(granted) == 20
        assert len({r.id for r in granted.values()}) == 20
        for agent, record in granted.items():
            stored = await must_get(store, record.id)
            assert stored.state == JobState.LEASED
            assert stored.lease_owner == agent
            assert stored.fencing_token == record.fencing_token
            assert stored.attempt == 1
        assert await store.list_jobs([JobState.QUEUED], 100) == []

    async def test_claim_takes_several_in_order_without_duplicates(self, store: JobStore) -> None:
        for n in range(5):
            await store.insert(new_job(f"j{n}", created_at=T0 + n))
        await store.insert(new_job("twin", created_at=T0 + 10, output="j0"))
        claimed = await store.claim("agent", T0 + 20, TTL, 4)
        assert sorted(r.id for r in claimed) == ["j0", "j1", "j2", "j3"]
        assert {r.lease_owner for r in claimed} == {"agent"}
        # j0's twin waits for j0; only j4 is left to claim.
        assert [r.id for r in await store.claim("agent", T0 + 20, TTL, 10)] == ["j4"]

    async def test_priority_beats_fairness(self, store: JobStore) -> None:
        await store.insert(new_job("low", created_at=T0))
        await store.insert(new_job("high", created_at=T0 + 1, priority=5))
        assert (await must_claim(store, "agent", T0 + 2)).id == "high"

    async def test_count_by_state_and_trace_context(self, store: JobStore) -> None:
        assert await store.count_by_state() == {}
        traced = replace(new_job("a"), trace_context='{"traceparent": "00-ab-cd-01"}')
        await store.insert(traced)
        await store.insert(new_job("b"))
        await must_claim(store, "agent", T0)
        assert await store.count_by_state() == {JobState.QUEUED: 1, JobState.LEASED: 1}
        assert (await must_get(store, "a")).trace_context == '{"traceparent": "00-ab-cd-01"}'
