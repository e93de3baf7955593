"""A job requeued with a backoff is dispatched when the backoff ends, not on the dispatcher's
next tick: the lease book wakes the dispatcher at the job's available_at. A Farm on a real
SQLite store with the real clock and its dispatcher running; the tick is made far longer than
the test may wait, so only that wake can dispatch the retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framefleet.coordinator import dispatcher
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.lease_book import LeaseBook
from framefleet.coordinator.store import open_store
from framefleet.core.errors import ErrorClass
from framefleet.v1 import framefleet_pb2 as pb
from tests.test_leases import spec

RETRY_BASE = 0.3
WAIT = 10.0  # far below the tick below, far above the backoff


async def test_a_timed_wake_comes_then_and_not_before() -> None:
    book = LeaseBook(time.time)
    due = time.time() + 0.2
    book.wake_at(due)
    assert not book.woken
    await book.wait_for_work(WAIT)
    assert time.time() >= due
    book.wake_at(time.time() - 1)  # already due: at once
    assert book.woken


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Farm]:
    monkeypatch.setattr(dispatcher, "TICK_SECONDS", 60 * WAIT)
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    config = CoordinatorConfig(default_destination=str(tmp_path), retry_base=RETRY_BASE)
    farm = Farm(store, config)

    async def dispatch_forever() -> None:
        while True:
            await dispatcher.wait_for_work(farm)
            await dispatcher.dispatch_once(farm)

    task = asyncio.create_task(dispatch_forever())
    try:
        yield farm
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_a_retry_is_dispatched_when_its_backoff_ends(running: Farm) -> None:
    farm = running
    session = farm._sessions.register("agent-a", slots=1)
    job = await farm.submit(spec())
    async with asyncio.timeout(WAIT):
        first = (await session.outbox.get()).assign
    assert first.lease.job_id == job.id
    failed = pb.Failed(lease=first.lease, error_class=ErrorClass.BROWSER_CRASHED)
    retried = await farm.fail(session.agent_id, failed)
    assert retried is not None and retried.available_at > time.time()
    farm.settled(session, first.lease, accepted=True)  # as the agent service does
    assert (await session.outbox.get()).WhichOneof("message") == "ack"
    async with asyncio.timeout(WAIT):
        second = (await session.outbox.get()).assign
    assert (second.lease.job_id, second.attempt) == (job.id, 2)
    assert time.time() >= retried.available_at
