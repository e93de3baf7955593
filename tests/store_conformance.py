"""The one conformance suite every job store passes (the shape of river's riverdrivertest).

A store's test module subclasses ``StoreConformance`` as ``TestXxxStore`` and provides an async
``store`` fixture that yields an empty, open store. Only the ``JobStore`` interface is used
here, so the same tests run against SQLite and PostgreSQL. Every time is passed in: no sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

from coordinator.store import (
    Done,
    JobRecord,
    JobState,
    JobStore,
    Lease,
    NewBatch,
    NewJob,
    Transition,
)

T0 = 1_700_000_000.0
TTL = 20.0


def new_job(
    job_id: str,
    *,
    created_at: float = T0,
    priority: int = 0,
    max_attempts: int = 3,
    frames_total: int = 10,
    output: str | None = None,
) -> NewJob:
    return NewJob(
        id=job_id,
        spec=f"spec of {job_id}".encode(),
        content_key=f"key-{output or job_id}",
        output_url=f"file:///out/{output or job_id}.mp4",
        frames_total=frames_total,
        priority=priority,
        max_attempts=max_attempts,
        created_at=created_at,
    )


async def must_get(store: JobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None, f"job {job_id} is missing"
    return record


async def holder(store: JobStore, job_id: str) -> str:
    """Who holds the job's lease now ("nobody" if no one): the helpers below act as the holder,
    so the tests that use them are about the token; the owner has tests of its own."""
    record = await store.get(job_id)
    return (record.lease_owner if record else None) or "nobody"


async def complete_one(
    store: JobStore, job_id: str, token: int, output_url: str, output_bytes: int, now: float
) -> JobRecord | None:
    """Reports one success; the record if it was accepted."""
    done = [Done(job_id, token, output_url, output_bytes)]
    records = await store.complete(await holder(store, job_id), done, now)
    assert len(records) <= 1
    return records[0] if records else None


async def progress(
    store: JobStore, job_id: str, token: int, frames_done: int, upload_id: str = ""
) -> bool:
    lease = Lease(job_id, await holder(store, job_id), token)
    return await store.progress(lease, frames_done, upload_id)


async def fail(
    store: JobStore,
    job_id: str,
    token: int,
    error_class: str,
    message: str,
    retry_at: float | None,
    now: float,
) -> JobRecord | None:
    """A failure the policy retries at retry_at, or (None) fails for good."""
    state = JobState.FAILED if retry_at is None else JobState.QUEUED
    transition = Transition(state, now if retry_at is None else retry_at, error_class, message)
    return await store.settle(Lease(job_id, await holder(store, job_id), token), transition, now)


async def release(store: JobStore, job_id: str, token: int, now: float) -> JobRecord | None:
    """A hand-back: requeued at once, the attempt given back."""
    transition = Transition(JobState.QUEUED, now, spends_attempt=False)
    return await store.settle(Lease(job_id, await holder(store, job_id), token), transition, now)


async def expire(store: JobStore, now: float, retry_at: float) -> list[JobRecord]:
    """What the reaper does, with a policy that retries every expired lease at retry_at."""
    settled = []
    for record in await store.expired(now, 100):
        assert record.lease_owner is not None
        lease = Lease(record.id, record.lease_owner, record.fencing_token)
        transition = Transition(JobState.QUEUED, retry_at, "LEASE_EXPIRED", "lease expired")
        after = await store.settle(lease, transition, now, expired_by=now)
        if after is not None:
            settled.append(after)
    return settled


async def must_claim(store: JobStore, agent_id: str, now: float, ttl: float = TTL) -> JobRecord:
    records = await store.claim(agent_id, now, ttl, 1)
    assert records, f"{agent_id} claimed nothing at {now}"
    (record,) = records
    return record


class StoreConformance:
    """Not collected on its own (no Test prefix); subclasses supply the ``store`` fixture."""

    # --- insert / get / list ---------------------------------------------------------------

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

    # --- claim -----------------------------------------------------------------------------

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

    async def test_fencing_token_grows_with_every_grant(self, store: JobStore) -> None:
        await store.insert(new_job("a", max_attempts=5))
        first = await must_claim(store, "agent-1", T0)
        expired = await expire(store, T0 + TTL + 1, T0 + TTL + 1)
        assert [r.id for r in expired] == ["a"]
        second = await must_claim(store, "agent-2", T0 + TTL + 1)
        assert second.fencing_token > first.fencing_token
        assert second.attempt == 2
        released = await release(store, "a", second.fencing_token, T0 + TTL + 2)
        assert released is not None
        third = await must_claim(store, "agent-3", T0 + TTL + 2)
        assert third.fencing_token > second.fencing_token

    # --- renew -----------------------------------------------------------------------------

    async def test_renew_extends_only_the_leases_the_agent_holds(self, store: JobStore) -> None:
        for job_id in ("a", "b", "c", "d"):
            await store.insert(new_job(job_id))
        a = await must_claim(store, "agent-1", T0)
        b = await must_claim(store, "agent-1", T0)
        c = await must_claim(store, "agent-2", T0)
        d = await must_claim(store, "agent-1", T0)
        done = await complete_one(store, "d", d.fencing_token, "file:///d.mp4", 1, T0 + 1)
        assert done is not None

        renewed = await store.renew(
            "agent-1",
            [
                ("a", a.fencing_token),  # held: renewed
                ("b", b.fencing_token + 1),  # wrong token
                ("c", c.fencing_token),  # another agent's lease
                ("d", d.fencing_token),  # finished
                ("missing", 1),  # no such job
            ],
            T0 + 10,
            TTL,
        )
        assert renewed == {"a"}
        assert (await must_get(store, "a")).lease_expires_at == T0 + 10 + TTL
        assert (await must_get(store, "b")).lease_expires_at == T0 + TTL
        assert (await must_get(store, "c")).lease_expires_at == T0 + TTL
        assert (await must_get(store, "d")).state == JobState.SUCCEEDED

    async def test_renewed_lease_does_not_expire(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        a = await must_claim(store, "agent", T0)
        assert await store.renew("agent", [("a", a.fencing_token)], T0 + 15, TTL) == {"a"}
        assert await expire(store, T0 + TTL + 1, T0 + TTL + 1) == []
        assert (await must_get(store, "a")).state == JobState.LEASED

    # --- stale tokens ----------------------------------------------------------------------

    async def test_stale_token_changes_nothing(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "agent", T0)
        for stale in (lease.fencing_token - 1, lease.fencing_token + 1):
            assert await progress(store, "a", stale, 5) is False
            assert await complete_one(store, "a", stale, "file:///x.mp4", 9, T0 + 1) is None
            assert await fail(store, "a", stale, "INTERNAL", "boom", T0 + 2, T0 + 1) is None
            assert await fail(store, "a", stale, "INTERNAL", "boom", None, T0 + 1) is None
            assert await release(store, "a", stale, T0 + 1) is None
        assert await must_get(store, "a") == lease
        # Unknown jobs are refused the same way.
        assert await progress(store, "missing", 1, 5) is False
        assert await complete_one(store, "missing", 1, "file:///x.mp4", 9, T0 + 1) is None
        assert await fail(store, "missing", 1, "INTERNAL", "boom", None, T0 + 1) is None
        assert await release(store, "missing", 1, T0 + 1) is None

    async def test_zombie_cannot_overwrite_the_agent_that_took_over(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        zombie = await must_claim(store, "zombie", T0)
        await expire(store, T0 + TTL + 1, T0 + TTL + 1)
        winner = await must_claim(store, "winner", T0 + TTL + 1)
        assert (
            await complete_one(store, "a", zombie.fencing_token, "file:///z.mp4", 1, T0 + 30)
            is None
        )
        assert await progress(store, "a", zombie.fencing_token, 9) is False
        assert await store.renew("zombie", [("a", zombie.fencing_token)], T0 + 30, TTL) == set()
        assert await must_get(store, "a") == winner
        done = await complete_one(store, "a", winner.fencing_token, "file:///w.mp4", 2, T0 + 31)
        assert done is not None
        assert done.output_url == "file:///w.mp4"
        assert done.lease_owner == "winner"

    # --- progress / complete ---------------------------------------------------------------

    async def test_progress_records_frames_done(self, store: JobStore) -> None:
        await store.insert(new_job("a", frames_total=10))
        lease = await must_claim(store, "agent", T0)
        assert await progress(store, "a", lease.fencing_token, 4) is True
        assert (await must_get(store, "a")).frames_done == 4

    async def test_complete_records_the_output_once(self, store: JobStore) -> None:
        await store.insert(new_job("a", frames_total=10))
        lease = await must_claim(store, "agent", T0)
        assert await progress(store, "a", lease.fencing_token, 3)
        done = await complete_one(store, "a", lease.fencing_token, "s3://b/a.mp4", 12345, T0 + 7)
        assert done is not None
        assert done.state == JobState.SUCCEEDED
        assert done.output_url == "s3://b/a.mp4"
        assert done.output_bytes == 12345
        assert done.finished_at == T0 + 7
        assert done.frames_done == 10
        assert done.lease_expires_at is None
        assert await must_get(store, "a") == done
        # At most once: the same token again, or any later call, changes nothing.
        again = await complete_one(store, "a", lease.fencing_token, "s3://b/other.mp4", 1, T0 + 8)
        assert again is None
        assert await fail(store, "a", lease.fencing_token, "INTERNAL", "x", None, T0 + 8) is None
        assert await release(store, "a", lease.fencing_token, T0 + 8) is None
        assert await progress(store, "a", lease.fencing_token, 1) is False
        assert await expire(store, T0 + 1000, T0 + 1000) == []
        assert await must_get(store, "a") == done
        assert await store.claim("agent", T0 + 1000, TTL, 1) == []

    async def test_concurrent_completes_with_one_token_succeed_once(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "agent", T0)
        results = await asyncio.gather(
            *(
                complete_one(store, "a", lease.fencing_token, f"file:///{i}.mp4", i, T0 + 1)
                for i in range(10)
            )
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert await must_get(store, "a") == winners[0]

    # --- fail ------------------------------------------------------------------------------

    async def test_retryable_failure_with_attempts_left_requeues_at_retry_at(
        self, store: JobStore
    ) -> None:
        await store.insert(new_job("a", max_attempts=3))
        lease = await must_claim(store, "agent", T0)
        failed = await fail(
            store, "a", lease.fencing_token, "BROWSER_CRASHED", "chromium died", T0 + 50, T0 + 5
        )
        assert failed is not None
        assert failed.state == JobState.QUEUED
        assert failed.available_at == T0 + 50
        assert failed.error_class == "BROWSER_CRASHED"
        assert failed.error_message == "chromium died"
        assert failed.attempt == 1
        assert failed.finished_at is None
        assert failed.lease_expires_at is None
        assert await store.leases_of("agent") == []
        # Not before retry_at.
        assert await store.claim("agent", T0 + 49.9, TTL, 1) == []
        retry = await must_claim(store, "agent", T0 + 50)
        assert retry.attempt == 2
        assert retry.fencing_token > lease.fencing_token

    async def test_a_failed_transition_dead_letters_the_job(self, store: JobStore) -> None:
        await store.insert(new_job("a", max_attempts=2))
        first = await must_claim(store, "agent", T0)
        assert await fail(store, "a", first.fencing_token, "ENCODE_ERROR", "x", T0 + 1, T0)
        second = await must_claim(store, "agent", T0 + 1)
        assert second.attempt == 2
        dead = await fail(
            store, "a", second.fencing_token, "CAPTURE_TIMEOUT", "too slow", None, T0 + 2
        )
        assert dead is not None
        assert dead.state == JobState.FAILED
        assert dead.error_class == "CAPTURE_TIMEOUT"
        assert dead.error_message == "too slow"
        assert dead.finished_at == T0 + 2
        assert dead.attempt == 2
        assert await must_get(store, "a") == dead
        assert await store.claim("agent", T0 + 100, TTL, 1) == []

    async def test_non_retryable_failure_fails_at_once(self, store: JobStore) -> None:
        await store.insert(new_job("a", max_attempts=5))
        lease = await must_claim(store, "agent", T0)
        dead = await fail(
            store, "a", lease.fencing_token, "TEMPLATE_SCRIPT_ERROR", "ReferenceError", None, T0 + 3
        )
        assert dead is not None
        assert dead.state == JobState.FAILED
        assert dead.error_class == "TEMPLATE_SCRIPT_ERROR"
        assert dead.finished_at == T0 + 3
        assert dead.attempt == 1
        assert await store.claim("agent", T0 + 100, TTL, 1) == []

    # --- release ---------------------------------------------------------------------------

    async def test_release_requeues_at_once_without_spending_an_attempt(
        self, store: JobStore
    ) -> None:
        await store.insert(new_job("a", max_attempts=1))
        lease = await must_claim(store, "agent", T0)
        released = await release(store, "a", lease.fencing_token, T0 + 4)
        assert released is not None
        assert released.state == JobState.QUEUED
        assert released.available_at == T0 + 4
        assert released.attempt == 0
        assert released.lease_expires_at is None
        assert await store.leases_of("agent") == []
        # With max_attempts=1 the job still gets its one real attempt.
        again = await must_claim(store, "other", T0 + 4)
        assert again.attempt == 1
        assert again.lease_owner == "other"
        assert again.fencing_token > lease.fencing_token

    # --- expire ----------------------------------------------------------------------------

    async def test_expire_only_takes_leases_past_their_expiry(self, store: JobStore) -> None:
        await store.insert(new_job("early"))
        await store.insert(new_job("late"))
        await store.insert(new_job("queued"))
        early = await must_claim(store, "agent-1", T0)
        late = await must_claim(store, "agent-2", T0 + 10)
        assert await expire(store, T0 + TTL - 0.5, T0 + TTL) == []

        expired = await expire(store, T0 + TTL + 1, T0 + TTL + 3)
        assert [r.id for r in expired] == ["early"]
        record = expired[0]
        assert record.state == JobState.QUEUED
        assert record.error_class == "LEASE_EXPIRED"
        assert record.available_at == T0 + TTL + 3
        assert record.attempt == 1
        assert record.lease_expires_at is None
        # The holder is kept so the coordinator can tell it to stop.
        assert record.lease_owner == "agent-1"
        assert record.fencing_token == early.fencing_token
        assert await must_get(store, "early") == record
        assert await must_get(store, "late") == late
        assert (await must_get(store, "queued")).state == JobState.QUEUED
        # The requeued job is older, but not claimable before retry_at.
        assert (await must_claim(store, "agent-3", T0 + TTL + 2)).id == "queued"
        assert await store.claim("agent-3", T0 + TTL + 2, TTL, 1) == []
        assert (await must_claim(store, "agent-3", T0 + TTL + 3)).id == "early"

    async def test_expire_twice_returns_each_job_once(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        await must_claim(store, "agent", T0)
        assert len(await expire(store, T0 + 100, T0 + 100)) == 1
        assert await expire(store, T0 + 200, T0 + 200) == []

    # --- cancel ----------------------------------------------------------------------------

    async def test_cancel_queued_job(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        before = await store.cancel("a", T0 + 1)
        assert before is not None
        assert before.state == JobState.QUEUED
        after = await must_get(store, "a")
        assert after.state == JobState.CANCELLED
        assert after.finished_at == T0 + 1
        assert after.fencing_token > before.fencing_token
        assert await store.claim("agent", T0 + 2, TTL, 1) == []

    async def test_cancel_leased_job_fences_its_holder(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "agent", T0)
        before = await store.cancel("a", T0 + 2)
        assert before is not None
        assert before.state == JobState.LEASED
        assert before.lease_owner == "agent"
        assert before.fencing_token == lease.fencing_token
        after = await must_get(store, "a")
        assert after.state == JobState.CANCELLED
        assert after.fencing_token > lease.fencing_token
        assert after.finished_at == T0 + 2
        # The old token can no longer act on the job.
        assert (
            await complete_one(store, "a", lease.fencing_token, "file:///a.mp4", 1, T0 + 3) is None
        )
        assert await fail(store, "a", lease.fencing_token, "INTERNAL", "x", T0 + 4, T0 + 3) is None
        assert await release(store, "a", lease.fencing_token, T0 + 3) is None
        assert await store.renew("agent", [("a", lease.fencing_token)], T0 + 3, TTL) == set()
        assert await store.leases_of("agent") == []
        assert await expire(store, T0 + 1000, T0 + 1000) == []
        assert await must_get(store, "a") == after

    async def test_cancel_finished_job_changes_nothing(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "agent", T0)
        done = await complete_one(store, "a", lease.fencing_token, "file:///a.mp4", 1, T0 + 1)
        assert done is not None
        result = await store.cancel("a", T0 + 2)
        assert result is not None
        assert result.state == JobState.SUCCEEDED
        assert await must_get(store, "a") == done

        await store.insert(new_job("b"))
        assert await store.cancel("b", T0 + 3) is not None
        cancelled = await must_get(store, "b")
        again = await store.cancel("b", T0 + 4)
        assert again is not None
        assert again.state == JobState.CANCELLED
        assert await must_get(store, "b") == cancelled

    async def test_cancel_unknown_job_is_none(self, store: JobStore) -> None:
        assert await store.cancel("nope", T0) is None

    # --- leases_of -------------------------------------------------------------------------

    async def test_leases_of_lists_an_agents_current_leases(self, store: JobStore) -> None:
        for job_id in ("a", "b", "c", "d"):
            await store.insert(new_job(job_id))
        a = await must_claim(store, "agent-1", T0)
        await must_claim(store, "agent-2", T0)
        c = await must_claim(store, "agent-1", T0)
        assert {r.id for r in await store.leases_of("agent-1")} == {"a", "c"}
        assert {r.id for r in await store.leases_of("agent-2")} == {"b"}
        assert await store.leases_of("agent-3") == []
        assert all(r.state == JobState.LEASED for r in await store.leases_of("agent-1"))

        await complete_one(store, "a", a.fencing_token, "file:///a.mp4", 1, T0 + 1)
        await release(store, "c", c.fencing_token, T0 + 1)
        assert await store.leases_of("agent-1") == []

    # --- concurrency -----------------------------------------------------------------------

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

    # --- result cache, identical jobs in flight, restart grace ----------------------------

    async def test_cached_insert_is_a_finished_cache_hit(self, store: JobStore) -> None:
        assert await store.find_output("file:///out/x.mp4") is None
        await store.insert(new_job("first", output="x"))
        assert await store.find_output("file:///out/x.mp4") is None, "not finished yet"
        lease = await must_claim(store, "agent", T0)
        await complete_one(store, "first", lease.fencing_token, "file:///out/x.mp4", 99, T0 + 1)
        found = await store.find_output("file:///out/x.mp4")
        assert found is not None and found.id == "first" and not found.cache_hit

        hit = await store.insert_cached(new_job("again", output="x", created_at=T0 + 2), 99)
        assert hit.state == JobState.SUCCEEDED
        assert hit.cache_hit
        assert hit.output_bytes == 99
        assert hit.frames_done == hit.frames_total
        assert hit.finished_at == T0 + 2
        assert await store.claim("agent", T0 + 3, TTL, 1) == []

    async def test_identical_jobs_in_flight_render_once(self, store: JobStore) -> None:
        await store.insert(new_job("a", output="same"))
        await store.insert(new_job("b", output="same", created_at=T0 + 1))
        await store.insert(new_job("other", created_at=T0 + 2))
        lease = await must_claim(store, "agent-1", T0 + 3)
        assert lease.id == "a"
        # b waits for a's output; the next claim skips it.
        assert (await must_claim(store, "agent-2", T0 + 3)).id == "other"
        assert await store.claim("agent-3", T0 + 3, TTL, 1) == []

        await complete_one(store, "a", lease.fencing_token, "file:///out/same.mp4", 5, T0 + 4)
        waiting = await store.complete_waiting({"file:///out/same.mp4": 5}, T0 + 4)
        assert [r.id for r in waiting] == ["b"]
        b = await must_get(store, "b")
        assert (b.state, b.cache_hit, b.output_bytes, b.attempt) == (JobState.SUCCEEDED, True, 5, 0)

    async def test_a_waiting_job_runs_if_the_first_render_is_requeued(
        self, store: JobStore
    ) -> None:
        await store.insert(new_job("a", output="same"))
        await store.insert(new_job("b", output="same", created_at=T0 + 1))
        lease = await must_claim(store, "agent-1", T0)
        await release(store, "a", lease.fencing_token, T0 + 1)
        # Nothing of that output is leased now: the oldest of the two goes first.
        assert (await must_claim(store, "agent-2", T0 + 1)).id == "a"

    async def test_extend_leases_gives_a_grace_window(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        await store.insert(new_job("b"))
        await must_claim(store, "agent", T0, ttl=5)
        assert await store.extend_leases(T0 + 60) == 1
        assert await expire(store, T0 + 30, T0 + 30) == []
        record = await must_get(store, "a")
        assert record.lease_expires_at == T0 + 60
        # Never shortens a lease.
        await store.extend_leases(T0 + 10)
        assert (await must_get(store, "a")).lease_expires_at == T0 + 60
        assert [r.id for r in await expire(store, T0 + 61, T0 + 61)] == ["a"]

    # --- sources, batches and fair claims --------------------------------------------------

    async def test_sources_are_stored_once_per_key(self, store: JobStore) -> None:
        assert await store.get_source("k") is None
        await store.put_source("k", b"template one")
        await store.put_source("k", b"template one")
        assert await store.get_source("k") == b"template one"

    async def test_batch_rows_interleave_with_other_work(self, store: JobStore) -> None:
        rows = [
            replace(
                new_job(f"big-{n}", created_at=T0), batch_id="big", row_key=f"r{n}", fair_rank=n
            )
            for n in range(5)
        ]
        await store.insert_batch(NewBatch("big", "nightly", T0), rows, {})
        # Submitted after the whole batch, yet ahead of its second row.
        await store.insert(new_job("urgent", created_at=T0 + 1))
        claimed = [(await must_claim(store, "agent", T0 + 2)).id for _ in range(3)]
        assert claimed == ["big-0", "urgent", "big-1"]

    async def test_priority_beats_fairness(self, store: JobStore) -> None:
        await store.insert(new_job("low", created_at=T0))
        await store.insert(new_job("high", created_at=T0 + 1, priority=5))
        assert (await must_claim(store, "agent", T0 + 2)).id == "high"

    async def test_batch_counts_finish_once_and_cancel(self, store: JobStore) -> None:
        rows = [
            replace(new_job(f"b{n}"), batch_id="b", row_key=f"row-{n}", fair_rank=n)
            for n in range(4)
        ]
        await store.insert_batch(NewBatch("b", "demo", T0), rows, {"b3": 42})
        batch = await store.get_batch("b")
        assert batch is not None
        assert (batch.id, batch.name, batch.total, batch.cache_hits) == ("b", "demo", 4, 1)
        assert batch.counts == {JobState.QUEUED: 3, JobState.SUCCEEDED: 1}
        assert (batch.frames_done, batch.frames_total) == (10, 40)
        cached = await must_get(store, "b3")
        assert (cached.row_key, cached.batch_id, cached.output_bytes) == ("row-3", "b", 42)
        assert [r.row_key for r in await store.batch_jobs("b")] == [f"row-{n}" for n in range(4)]
        assert await store.ended_batches() == []

        leased = await must_claim(store, "agent", T0 + 1)
        await complete_one(store, leased.id, leased.fencing_token, leased.output_url, 7, T0 + 2)
        running = await must_claim(store, "agent", T0 + 3)
        cancelled = await store.cancel_batch("b", T0 + 4)
        assert {r.id for r in cancelled} == {running.id, "b2"}
        assert any(r.state == JobState.LEASED and r.lease_owner == "agent" for r in cancelled)
        assert await complete_one(store, running.id, running.fencing_token, "x", 1, T0 + 5) is None

        assert await store.ended_batches() == ["b"]
        assert await store.finish_batch("b", T0 + 6, '{"ok": 1}', "file:///m.json")
        assert not await store.finish_batch("b", T0 + 7, "{}", "")
        done = await store.get_batch("b")
        assert done is not None
        assert (done.finished_at, done.digest, done.manifest_url) == (
            T0 + 6,
            '{"ok": 1}',
            "file:///m.json",
        )
        assert done.counts == {JobState.SUCCEEDED: 2, JobState.CANCELLED: 2}
        assert await store.ended_batches() == []
        assert await store.get_batch("nope") is None

    async def test_find_outputs(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        await store.insert(new_job("b"))
        lease = await must_claim(store, "agent", T0)
        await complete_one(store, lease.id, lease.fencing_token, lease.output_url, 11, T0 + 1)
        found = await store.find_outputs(["file:///out/a.mp4", "file:///out/b.mp4", "nope"])
        assert found == {"file:///out/a.mp4": 11}

    async def test_claim_takes_several_in_order_without_duplicates(self, store: JobStore) -> None:
        for n in range(5):
            await store.insert(new_job(f"j{n}", created_at=T0 + n))
        await store.insert(new_job("twin", created_at=T0 + 10, output="j0"))
        claimed = await store.claim("agent", T0 + 20, TTL, 4)
        assert sorted(r.id for r in claimed) == ["j0", "j1", "j2", "j3"]
        assert {r.lease_owner for r in claimed} == {"agent"}
        # j0's twin waits for j0; only j4 is left to claim.
        assert [r.id for r in await store.claim("agent", T0 + 20, TTL, 10)] == ["j4"]

    async def test_count_by_state_and_trace_context(self, store: JobStore) -> None:
        assert await store.count_by_state() == {}
        traced = replace(new_job("a"), trace_context='{"traceparent": "00-ab-cd-01"}')
        await store.insert(traced)
        await store.insert(new_job("b"))
        await must_claim(store, "agent", T0)
        assert await store.count_by_state() == {JobState.QUEUED: 1, JobState.LEASED: 1}
        assert (await must_get(store, "a")).trace_context == '{"traceparent": "00-ab-cd-01"}'

    async def test_complete_records_many_at_once(self, store: JobStore) -> None:
        for n in range(3):
            await store.insert(new_job(f"j{n}", created_at=T0 + n))
        leases = await store.claim("agent", T0 + 5, TTL, 3)
        tokens = {r.id: r.fencing_token for r in leases}
        done = [Done(f"j{n}", tokens[f"j{n}"], f"file:///j{n}.mp4", n + 10) for n in range(3)]
        stale = Done("j0", tokens["j0"] + 7, "file:///stale.mp4", 1)
        records = await store.complete("agent", [*done[:2], stale, done[2]], T0 + 6)
        assert sorted((r.id, r.output_url, r.output_bytes) for r in records) == [
            (f"j{n}", f"file:///j{n}.mp4", n + 10) for n in range(3)
        ]
        assert all(r.state == JobState.SUCCEEDED and r.finished_at == T0 + 6 for r in records)
        assert await store.complete("agent", done, T0 + 7) == [], "a job completes at most once"

    async def test_the_attempts_upload_id_is_kept_until_the_next_claim(
        self, store: JobStore
    ) -> None:
        await store.insert(new_job("a"))
        first = await must_claim(store, "agent", T0, ttl=5)
        assert await progress(store, "a", first.fencing_token, 3, "upload-1")
        assert await progress(store, "a", first.fencing_token, 4)  # "" keeps the id
        assert (await must_get(store, "a")).upload_id == "upload-1"
        assert not await progress(store, "a", first.fencing_token + 1, 5, "upload-x")
        (expired,) = await expire(store, T0 + 6, T0 + 6)
        assert expired.upload_id == "upload-1", "the reaper needs it to abort the upload"
        second = await must_claim(store, "agent", T0 + 7)
        assert second.upload_id is None

    async def test_a_transition_counts_what_it_says(self, store: JobStore) -> None:
        await store.insert(new_job("a", max_attempts=1))
        lease = await must_claim(store, "agent", T0)
        interrupted = Transition(JobState.QUEUED, T0 + 1, spends_attempt=False, interruption=True)
        back = await store.settle(Lease("a", "agent", lease.fencing_token), interrupted, T0 + 1)
        assert back is not None
        assert (back.state, back.interruptions, back.attempt) == (JobState.QUEUED, 1, 0)
        assert (back.error_class, back.finished_at) == (None, None)
        lease = await must_claim(store, "agent", T0 + 1)
        over = Transition(
            JobState.FAILED, T0 + 2, "INTERRUPTED", "handed back 2 times", False, True
        )
        dead = await store.settle(Lease("a", "agent", lease.fencing_token), over, T0 + 2)
        assert dead is not None
        assert (dead.state, dead.error_class, dead.interruptions, dead.attempt) == (
            JobState.FAILED,
            "INTERRUPTED",
            2,
            0,
        )
        assert dead.finished_at == T0 + 2
        assert dead.error_message == "handed back 2 times"
        assert await store.claim("agent", T0 + 100, TTL, 1) == []

    # --- owners and tokens -----------------------------------------------------------------

    async def test_another_agent_cannot_act_on_a_lease_even_with_its_token(
        self, store: JobStore
    ) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "owner", T0)
        token = lease.fencing_token
        stolen = Lease("a", "intruder", token)
        done = Done("a", token, "file:///forged.mp4", 1)
        assert await store.complete("intruder", [done], T0 + 1) == []
        assert await store.progress(stolen, 5, "forged-upload") is False
        requeue = Transition(JobState.QUEUED, T0 + 1, "INTERNAL", "forged")
        assert await store.settle(stolen, requeue, T0 + 1) is None
        assert await store.renew("intruder", [("a", token)], T0 + 1, TTL) == set()
        assert await must_get(store, "a") == lease
        # The owner still can.
        assert (await store.complete("owner", [done], T0 + 2))[0].lease_owner == "owner"

    async def test_fencing_tokens_grow_but_cannot_be_guessed(self, store: JobStore) -> None:
        await store.insert(new_job("a", max_attempts=100))
        tokens = []
        for n in range(12):
            lease = await must_claim(store, "agent", T0 + n)
            tokens.append(lease.fencing_token)
            assert await release(store, "a", lease.fencing_token, T0 + n)
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
        # The grant count is in the high bits; the low 32 bits are random, not a counter.
        assert [t >> 32 for t in tokens] == list(range(1, 13))
        low = [t & 0xFFFFFFFF for t in tokens]
        assert len(set(low)) == len(low)
        assert [b - a for a, b in itertools.pairwise(low)] != [1] * 11

    async def test_settle_for_the_reaper_spares_a_renewed_lease(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "agent", T0)
        (expired,) = await store.expired(T0 + TTL + 1, 10)
        assert expired == lease
        # The holder renews between the reaper's read and its write.
        assert await store.renew("agent", [("a", lease.fencing_token)], T0 + TTL, TTL) == {"a"}
        requeue = Transition(JobState.QUEUED, T0 + TTL + 1, "LEASE_EXPIRED", "expired")
        held = Lease("a", "agent", lease.fencing_token)
        assert await store.settle(held, requeue, T0 + TTL + 1, expired_by=T0 + TTL + 1) is None
        assert (await must_get(store, "a")).state == JobState.LEASED
        assert await store.expired(T0 + TTL + 1, 10) == []
        assert len(await store.expired(T0 + 2 * TTL + 1, 10)) == 1
