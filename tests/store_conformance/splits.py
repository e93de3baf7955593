"""Split jobs: chunks leased like jobs, the parent held until its last chunk succeeds and then
queued as the assembly; failure and cancel end the whole family."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from framefleet.coordinator.store import JobState, JobStore, NewJob
from tests.store_conformance.helpers import (
    T0,
    TTL,
    complete_one,
    expire,
    must_claim,
    must_get,
    new_job,
    progress,
)


async def insert_split(store: JobStore, parent_id: str = "p", count: int = 3) -> list[NewJob]:
    """A 30-frame job in ``count`` chunks of 10 frames; returns the chunks."""
    parent = replace(new_job(parent_id, frames_total=10 * count), chunks=count)
    chunks = [
        replace(
            new_job(f"{parent_id}-{i}", frames_total=10, output=f"{parent_id}.chunk{i}"),
            parent_id=parent_id,
            chunk_index=i,
            first_frame=10 * i,
            end_frame=10 * (i + 1),
        )
        for i in range(count)
    ]
    record = await store.insert_split(parent, chunks)
    assert record.state == JobState.LEASED and record.held and record.chunks == count
    return chunks


class SplitTests:
    async def test_chunks_are_claimed_the_parent_is_held(self, store: JobStore) -> None:
        await insert_split(store)
        claimed = await store.claim("agent-1", T0, TTL, 10)
        assert sorted((r.id, r.first_frame, r.end_frame) for r in claimed) == [
            ("p-0", 0, 10),
            ("p-1", 10, 20),
            ("p-2", 20, 30),
        ]
        assert all(r.parent_id == "p" for r in claimed)
        # The held parent has no lease: nothing expires it, an agent never holds it.
        assert [r.id for r in await store.expired(T0 + 10 * TTL, 10)] == ["p-0", "p-1", "p-2"]
        assert await store.leases_of("agent-1") != []
        assert (await must_get(store, "p")).lease_owner is None
        # Listing and the tenant's count see the job as submitted, once.
        assert [r.id for r in await store.list_jobs([], 10)] == ["p"]
        assert await store.count_unfinished("") == 1
        assert sum((await store.count_by_state()).values()) == 1
        assert await store.queue_depth() == 0  # every chunk is leased
        assert [c.id for c in await store.chunks_of("p")] == ["p-0", "p-1", "p-2"]

    async def test_last_chunk_queues_the_assembly(self, store: JobStore) -> None:
        await insert_split(store)
        chunks = {r.id: r for r in await store.claim("agent-1", T0, TTL, 10)}
        assert await progress(store, "p-1", chunks["p-1"].fencing_token, 4)
        assert await progress(store, "p-2", chunks["p-2"].fencing_token, 3)
        parent = await must_get(store, "p")
        assert parent.frames_done == 7 and parent.chunks_done == 0
        for n, chunk_id in enumerate(["p-2", "p-0"], start=1):
            assert await complete_one(store, chunk_id, chunks[chunk_id].fencing_token, 5, T0 + n)
            parent = await must_get(store, "p")
            assert parent.state == JobState.LEASED and parent.chunks_done == n
        assert parent.frames_done == 24
        assert await store.claim("agent-2", T0 + 3, TTL, 10) == []
        assert await complete_one(store, "p-1", chunks["p-1"].fencing_token, 5, T0 + 4)
        parent = await must_get(store, "p")
        assert parent.state == JobState.QUEUED and parent.chunks_done == 3
        assert parent.frames_done == 30
        # The assembly is leased like a job, keeping the frames its chunks made.
        assembly = await must_claim(store, "agent-2", T0 + 5)
        assert assembly.id == "p" and assembly.lease_owner == "agent-2"
        assert assembly.frames_done == 30 and assembly.attempt == 1
        done = await complete_one(store, "p", assembly.fencing_token, 15, T0 + 6)
        assert done is not None and done.state == JobState.SUCCEEDED

    async def test_a_lost_chunk_lease_runs_again_alone(self, store: JobStore) -> None:
        await insert_split(store)
        assert await store.queue_depth() == 3  # the chunks wait for slots; the job does not
        first = {r.id: r for r in await store.claim("agent-1", T0, TTL, 2)}
        other = await must_claim(store, "agent-2", T0)
        assert await complete_one(store, other.id, other.fencing_token, 5, T0 + 1)
        renewed = await store.renew("agent-1", [("p-0", first["p-0"].fencing_token)], T0 + 5, TTL)
        assert renewed == {"p-0"}
        expired = await expire(store, T0 + TTL + 1, T0 + TTL + 1)
        assert [r.id for r in expired] == ["p-1"]
        again = await must_claim(store, "agent-3", T0 + TTL + 1)
        assert again.id == "p-1" and again.attempt == 2
        assert (await must_get(store, "p-0")).attempt == 1
        assert (await must_get(store, "p")).held

    async def test_ending_a_split_job_cancels_its_chunks(self, store: JobStore) -> None:
        await insert_split(store)
        chunks = {r.id: r for r in await store.claim("agent-1", T0, TTL, 2)}
        assert await complete_one(store, "p-0", chunks["p-0"].fencing_token, 5, T0 + 1)
        ended = await store.end_split("p", JobState.FAILED, T0 + 2, "TEMPLATE_ERROR", "boom")
        assert ended is not None and ended.state == JobState.FAILED
        assert (ended.error_class, ended.error_message) == ("TEMPLATE_ERROR", "boom")
        states = {c.id: c.state for c in await store.chunks_of("p")}
        assert states == {
            "p-0": JobState.SUCCEEDED,
            "p-1": JobState.CANCELLED,
            "p-2": JobState.CANCELLED,
        }
        # The running chunk's holder is fenced: nothing it reports counts.
        token = chunks["p-1"].fencing_token
        assert await store.renew("agent-1", [("p-1", token)], T0 + 3, TTL) == set()
        assert await complete_one(store, "p-1", token, 5, T0 + 3) is None
        assert await store.claim("agent-2", T0 + 3, TTL, 10) == []
        assert await store.end_split("p", JobState.CANCELLED, T0 + 4) is None
        assert (await must_get(store, "p")).state == JobState.FAILED

    async def test_in_flight_outputs(self, store: JobStore) -> None:
        await store.insert(new_job("a", output="same"))
        assert await store.in_flight("file:///out/same.mp4")
        claimed = await must_claim(store, "agent-1", T0)
        assert await store.in_flight("file:///out/same.mp4")
        assert await complete_one(store, "a", claimed.fencing_token, 5, T0 + 1)
        assert not await store.in_flight("file:///out/same.mp4")

    async def test_chunks_completing_at_once_all_count(self, store: JobStore) -> None:
        """Chunks reported by different agents at the same moment (concurrent transactions
        on PostgreSQL): every one counts, and the assembly is queued once."""
        await insert_split(store, count=6)
        claimed = [await must_claim(store, f"agent-{i}", T0) for i in range(6)]
        done = await asyncio.gather(
            *(complete_one(store, c.id, c.fencing_token, 5, T0 + 1) for c in claimed)
        )
        assert all(done)
        parent = await must_get(store, "p")
        assert (parent.state, parent.chunks_done, parent.frames_done) == (JobState.QUEUED, 6, 60)
        assert [r.id for r in await store.claim("agent-9", T0 + 2, TTL, 10)] == ["p"]

    async def test_chunk_progress_at_once_all_counts(self, store: JobStore) -> None:
        await insert_split(store, count=6)
        claimed = [await must_claim(store, f"agent-{i}", T0) for i in range(6)]
        reported = await asyncio.gather(
            *(progress(store, c.id, c.fencing_token, 7) for c in claimed)
        )
        assert all(reported)
        assert (await must_get(store, "p")).frames_done == 42
