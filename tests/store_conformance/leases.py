"""Leases: grants, renewals, owner and token checks, progress, completion, transitions,
expiry and cancel."""

from __future__ import annotations

import asyncio
import itertools

from framefleet.coordinator.store import Done, JobState, JobStore, Lease, Transition
from tests.store_conformance.helpers import (
    T0,
    TTL,
    complete_one,
    expire,
    fail,
    must_claim,
    must_get,
    new_job,
    progress,
    release,
)


class LeaseTests:
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

    async def test_renew_extends_only_the_leases_the_agent_holds(self, store: JobStore) -> None:
        for job_id in ("a", "b", "c", "d"):
            await store.insert(new_job(job_id))
        a = await must_claim(store, "agent-1", T0)
        b = await must_claim(store, "agent-1", T0)
        c = await must_claim(store, "agent-2", T0)
        d = await must_claim(store, "agent-1", T0)
        done = await complete_one(store, "d", d.fencing_token, 1, T0 + 1)
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

    async def test_renew_of_many_leases_or_none(self, store: JobStore) -> None:
        """An idle agent's heartbeat renews nothing; one agent's 450 leases (more than one
        statement's worth) are all renewed."""
        assert await store.renew("agent", [], T0 + 1, TTL) == set()
        ids = [f"j{n}" for n in range(450)]
        for job_id in ids:
            await store.insert(new_job(job_id))
        held = await store.claim("agent", T0, TTL, len(ids))
        leases = [(r.id, r.fencing_token) for r in held]
        assert await store.renew("agent", leases, T0 + 10, TTL) == set(ids)
        assert (await must_get(store, "j449")).lease_expires_at == T0 + 10 + TTL

    async def test_renewed_lease_does_not_expire(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        a = await must_claim(store, "agent", T0)
        assert await store.renew("agent", [("a", a.fencing_token)], T0 + 15, TTL) == {"a"}
        assert await expire(store, T0 + TTL + 1, T0 + TTL + 1) == []
        assert (await must_get(store, "a")).state == JobState.LEASED

    async def test_stale_token_changes_nothing(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "agent", T0)
        for stale in (lease.fencing_token - 1, lease.fencing_token + 1):
            assert await progress(store, "a", stale, 5) is False
            assert await complete_one(store, "a", stale, 9, T0 + 1) is None
            assert await fail(store, "a", stale, "INTERNAL", "boom", T0 + 2, T0 + 1) is None
            assert await fail(store, "a", stale, "INTERNAL", "boom", None, T0 + 1) is None
            assert await release(store, "a", stale, T0 + 1) is None
        assert await must_get(store, "a") == lease
        # Unknown jobs are refused the same way.
        assert await progress(store, "missing", 1, 5) is False
        assert await complete_one(store, "missing", 1, 9, T0 + 1) is None
        assert await fail(store, "missing", 1, "INTERNAL", "boom", None, T0 + 1) is None
        assert await release(store, "missing", 1, T0 + 1) is None

    async def test_zombie_cannot_overwrite_the_agent_that_took_over(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        zombie = await must_claim(store, "zombie", T0)
        await expire(store, T0 + TTL + 1, T0 + TTL + 1)
        winner = await must_claim(store, "winner", T0 + TTL + 1)
        assert await complete_one(store, "a", zombie.fencing_token, 1, T0 + 30) is None
        assert await progress(store, "a", zombie.fencing_token, 9) is False
        assert await store.renew("zombie", [("a", zombie.fencing_token)], T0 + 30, TTL) == set()
        assert await must_get(store, "a") == winner
        done = await complete_one(store, "a", winner.fencing_token, 2, T0 + 31)
        assert done is not None
        assert done.output_url == "file:///out/a.mp4"
        assert done.lease_owner == "winner"

    async def test_progress_records_frames_done(self, store: JobStore) -> None:
        await store.insert(new_job("a", frames_total=10))
        lease = await must_claim(store, "agent", T0)
        assert await progress(store, "a", lease.fencing_token, 4) is True
        assert (await must_get(store, "a")).frames_done == 4

    async def test_complete_records_the_output_once(self, store: JobStore) -> None:
        await store.insert(new_job("a", frames_total=10))
        lease = await must_claim(store, "agent", T0)
        assert await progress(store, "a", lease.fencing_token, 3)
        done = await complete_one(store, "a", lease.fencing_token, 12345, T0 + 7)
        assert done is not None
        assert done.state == JobState.SUCCEEDED
        assert done.output_url == "file:///out/a.mp4"  # the job's, not the agent's
        assert done.output_bytes == 12345
        assert done.finished_at == T0 + 7
        assert done.frames_done == 10
        assert done.lease_expires_at is None
        assert await must_get(store, "a") == done
        # At most once: the same token again, or any later call, changes nothing.
        again = await complete_one(store, "a", lease.fencing_token, 1, T0 + 8)
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
            *(complete_one(store, "a", lease.fencing_token, i, T0 + 1) for i in range(10))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert await must_get(store, "a") == winners[0]

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
        assert await complete_one(store, "a", lease.fencing_token, 1, T0 + 3) is None
        assert await fail(store, "a", lease.fencing_token, "INTERNAL", "x", T0 + 4, T0 + 3) is None
        assert await release(store, "a", lease.fencing_token, T0 + 3) is None
        assert await store.renew("agent", [("a", lease.fencing_token)], T0 + 3, TTL) == set()
        assert await store.leases_of("agent") == []
        assert await expire(store, T0 + 1000, T0 + 1000) == []
        assert await must_get(store, "a") == after

    async def test_cancel_finished_job_changes_nothing(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "agent", T0)
        done = await complete_one(store, "a", lease.fencing_token, 1, T0 + 1)
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

        await complete_one(store, "a", a.fencing_token, 1, T0 + 1)
        await release(store, "c", c.fencing_token, T0 + 1)
        assert await store.leases_of("agent-1") == []

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

    async def test_complete_records_many_at_once(self, store: JobStore) -> None:
        for n in range(3):
            await store.insert(new_job(f"j{n}", created_at=T0 + n))
        leases = await store.claim("agent", T0 + 5, TTL, 3)
        tokens = {r.id: r.fencing_token for r in leases}
        done = [Done(f"j{n}", tokens[f"j{n}"], n + 10) for n in range(3)]
        stale = Done("j0", tokens["j0"] + 7, 1)
        records = await store.complete("agent", [*done[:2], stale, done[2]], T0 + 6)
        # The output is where the coordinator said (new_job's), not anywhere an agent says.
        assert sorted((r.id, r.output_url, r.output_bytes) for r in records) == [
            (f"j{n}", f"file:///out/j{n}.mp4", n + 10) for n in range(3)
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

    async def test_another_agent_cannot_act_on_a_lease_even_with_its_token(
        self, store: JobStore
    ) -> None:
        await store.insert(new_job("a"))
        lease = await must_claim(store, "owner", T0)
        token = lease.fencing_token
        stolen = Lease("a", "intruder", token)
        done = Done("a", token, 1)
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
