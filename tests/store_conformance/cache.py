"""The result cache and sources: finished outputs, identical jobs in flight, templates once."""

from __future__ import annotations

from framefleet.coordinator.store import JobState, JobStore
from tests.store_conformance.helpers import (
    T0,
    TTL,
    complete_one,
    must_claim,
    must_get,
    new_job,
    release,
)


class CacheTests:
    async def test_cached_insert_is_a_finished_cache_hit(self, store: JobStore) -> None:
        assert await store.find_output("file:///out/x.mp4") is None
        await store.insert(new_job("first", output="x"))
        assert await store.find_output("file:///out/x.mp4") is None, "not finished yet"
        lease = await must_claim(store, "agent", T0)
        await complete_one(store, "first", lease.fencing_token, 99, T0 + 1)
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

        await complete_one(store, "a", lease.fencing_token, 5, T0 + 4)
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

    async def test_find_outputs(self, store: JobStore) -> None:
        await store.insert(new_job("a"))
        await store.insert(new_job("b"))
        lease = await must_claim(store, "agent", T0)
        await complete_one(store, lease.id, lease.fencing_token, 11, T0 + 1)
        found = await store.find_outputs(["file:///out/a.mp4", "file:///out/b.mp4", "nope"])
        assert found == {"file:///out/a.mp4": 11}

    async def test_sources_are_stored_once_per_key(self, store: JobStore) -> None:
        assert await store.get_source("k") is None
        await store.put_source("k", b"template one")
        await store.put_source("k", b"template one")
        assert await store.get_source("k") == b"template one"
