"""Batches: rows inserted together, counted, finished once, cancelled together."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from framefleet.coordinator.store import JobRecord, JobState, JobStore, NewBatch
from tests.store_conformance.helpers import (
    T0,
    TTL,
    complete_one,
    fail,
    must_claim,
    must_get,
    new_job,
)


class BatchTests:
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

    async def test_streamed_rows_stay_hidden_until_the_batch_opens(self, store: JobStore) -> None:
        rows = [replace(new_job(f"s{n}"), batch_id="s", row_key=f"r{n}") for n in range(3)]
        await store.insert_rows(rows[:2], {})
        await store.insert_rows(rows[2:], {"s2": 9})  # a cache hit, stored finished
        assert await store.claim("agent", T0 + 1, TTL, 10) == []
        assert await store.get_batch("s") is None
        await store.open_batch(NewBatch("s", "streamed", T0))
        batch = await store.get_batch("s")
        assert batch is not None and batch.total == 3 and batch.cache_hits == 1
        claimed = await store.claim("agent", T0 + 1, TTL, 10)
        assert sorted(r.id for r in claimed) == ["s0", "s1"]
        # Discarding rows of a batch that opened changes nothing; of one that never did, all go.
        await store.discard_rows("s")
        assert len(await store.batch_jobs("s")) == 3
        await store.insert_rows([replace(new_job("t0"), batch_id="t", row_key="r0")], {})
        await store.discard_rows("t")
        assert await store.get("t0") is None

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
        await complete_one(store, leased.id, leased.fencing_token, 7, T0 + 2)
        running = await must_claim(store, "agent", T0 + 3)
        cancelled, fenced = await store.cancel_batch("b", T0 + 4, 100)
        assert set(cancelled) == {running.id, "b2"}
        assert [(r.id, r.state, r.lease_owner) for r in fenced] == [
            (running.id, JobState.LEASED, "agent")
        ]
        assert await complete_one(store, running.id, running.fencing_token, 1, T0 + 5) is None

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

    async def test_cancel_batch_reports_every_lease_it_takes(self, store: JobStore) -> None:
        """Read and write are one transaction: a claim racing the cancel either lands before
        it (and its lease is reported, so the holder can be told) or gets nothing."""
        rows = [replace(new_job(f"r{n}"), batch_id="b", fair_rank=n) for n in range(30)]
        await store.insert_batch(NewBatch("b", "race", T0), rows, {})
        claims = [store.claim(f"agent-{n}", T0 + 1, TTL, 1) for n in range(20)]
        # The cancel starts in the middle of the claims.
        first = [asyncio.ensure_future(claim) for claim in claims[:10]]
        cancel = asyncio.ensure_future(store.cancel_batch("b", T0 + 1, 100))
        rest = [asyncio.ensure_future(claim) for claim in claims[10:]]
        granted: list[list[JobRecord]] = await asyncio.gather(*first, *rest)
        ids, before = await cancel
        reported = {r.id: r for r in before}
        assert set(ids) == {f"r{n}" for n in range(30)}
        assert all(r.state == JobState.LEASED for r in before)
        for lease in (record for result in granted for record in result):
            was = reported[lease.id]
            assert (was.state, was.lease_owner, was.fencing_token) == (
                JobState.LEASED,
                lease.lease_owner,
                lease.fencing_token,
            )
        assert all(r.state == JobState.CANCELLED for r in await store.batch_jobs("b"))

    async def test_cancel_goes_a_bounded_step_at_a_time(self, store: JobStore) -> None:
        rows = [replace(new_job(f"s{n}"), batch_id="s", fair_rank=n) for n in range(25)]
        await store.insert_batch(NewBatch("s", "steps", T0), rows, {})
        first, _ = await store.cancel_batch("s", T0 + 1, 10)
        assert len(set(first)) == 10  # no more than the step
        states = [(await must_get(store, f"s{n}")).state for n in range(25)]
        assert states.count(JobState.CANCELLED) == 10 and states.count(JobState.QUEUED) == 15
        second, _ = await store.cancel_batch("s", T0 + 1, 10)
        third, _ = await store.cancel_batch("s", T0 + 1, 10)
        assert (len(second), len(third)) == (10, 5)
        assert {*first, *second, *third} == {f"s{n}" for n in range(25)}
        assert await store.cancel_batch("s", T0 + 1, 10) == ([], [])

    async def test_retry_failed_rows_reopens_the_batch(self, store: JobStore) -> None:
        rows = [
            replace(new_job(f"f{n}"), batch_id="f", row_key=f"r{n}", fair_rank=n) for n in range(2)
        ]
        await store.insert_batch(NewBatch("f", "retry", T0), rows, {})
        bad = await must_claim(store, "agent", T0 + 1)
        await fail(store, bad.id, bad.fencing_token, "CAPTURE_TIMEOUT", "slow", None, T0 + 2)
        good = await must_claim(store, "agent", T0 + 3)
        await complete_one(store, good.id, good.fencing_token, 9, T0 + 4)
        assert await store.finish_batch("f", T0 + 5, "{}", "file:///m.json")

        assert await store.retry_failed_rows("f", T0 + 6, 1) == 1
        again = await must_get(store, bad.id)
        assert (again.state, again.attempt, again.error_class, again.finished_at) == (
            JobState.QUEUED,
            0,
            None,
            None,
        )
        assert (await must_get(store, good.id)).state == JobState.SUCCEEDED
        reopened = await store.get_batch("f")
        assert reopened is not None and reopened.finished_at is None and not reopened.digest
        claimed = await must_claim(store, "agent", T0 + 7)
        assert (claimed.id, claimed.attempt) == (bad.id, 1)
        assert await store.retry_failed_rows("f", T0 + 8, 1) == 0  # nothing failed now

    async def test_recent_batches_newest_first_per_tenant(self, store: JobStore) -> None:
        for n, tenant in enumerate(["acme", "globex", "acme"]):
            batch = NewBatch(f"batch-{n}", f"run {n}", T0 + n, tenant=tenant)
            await store.insert_batch(batch, [replace(new_job(f"job-{n}"), batch_id=batch.id)], {})
        # Many jobs after the batches do not hide them (the console lists batches from here).
        for n in range(30):
            await store.insert(new_job(f"single-{n}", created_at=T0 + 10 + n))
        assert await store.recent_batches(10) == ["batch-2", "batch-1", "batch-0"]
        assert await store.recent_batches(1) == ["batch-2"]
        assert await store.recent_batches(10, "acme") == ["batch-2", "batch-0"]
        assert await store.recent_batches(10, "initech") == []
