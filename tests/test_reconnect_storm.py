"""Many agents reconnecting at once (their coordinator lost): the dispatcher's claims must not
queue behind their lease reconciliations for the store's connections, and no reconnecting
agent gets work before the leases its Hello reported are counted. A real SQLite store behind
a model of PostgreSQL's pool (8 connections, waiters served in turn, as asyncpg's), whose
lease reads wait at a gate the test opens; a fake clock; AgentService through fake streams."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from framefleet.coordinator.agent_service import AgentService
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.dispatcher import dispatch_once
from framefleet.coordinator.farm import RECONCILES, Farm
from framefleet.coordinator.store import open_store
from framefleet.v1 import framefleet_pb2 as pb
from tests.test_agent_service import T0, WAIT, Stream
from tests.test_leases import FakeClock, spec

POOL = 8  # PostgresStore.open's max_size
AGENTS = 40


class PooledStore:
    """Each store call holds one of POOL connections; ``leases_of`` holds its one until the
    gate opens (a slow store under a reconnect storm)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._free: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(POOL):
            self._free.put_nowait(None)
        self.gate = asyncio.Event()
        self.gate.set()
        self.reading = 0  # lease reads holding a connection now
        self.most_reading = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not inspect.iscoroutinefunction(method):
            return method
        return self._pooled(name, method)

    def _pooled(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._free.get()
            try:
                if name == "leases_of":
                    self.reading += 1
                    self.most_reading = max(self.most_reading, self.reading)
                    try:
                        await self.gate.wait()
                    finally:
                        self.reading -= 1
                return await method(*args, **kwargs)
            finally:
                self._free.put_nowait(None)

        return call


@pytest.fixture
async def pooled(tmp_path: Path) -> AsyncIterator[tuple[Farm, PooledStore]]:
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    config = CoordinatorConfig(default_destination=str(tmp_path), clock=FakeClock(T0))
    slow = PooledStore(store)
    try:
        yield Farm(slow, config), slow
    finally:
        await store.close()


@pytest.fixture
async def hello(pooled: tuple[Farm, PooledStore]) -> AsyncIterator[Any]:
    """Opens an agent's stream; returns once its Welcome arrived (its reconciliation may
    still be waiting)."""
    service = AgentService(pooled[0])
    tasks: list[asyncio.Task[None]] = []

    async def open_stream(agent_id: str, slots: int = 1, leases: Any = ()) -> Stream:
        stream = Stream()
        stream.say(hello=pb.Hello(agent_id=agent_id, slots=slots, leases=list(leases)))
        context: Any = stream
        tasks.append(asyncio.create_task(service.Connect(stream.requests(), context)))
        await stream.next("welcome")
        return stream

    yield open_stream
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_claims_do_not_wait_behind_a_reconnect_storm(
    pooled: tuple[Farm, PooledStore], hello: Any
) -> None:
    farm, store = pooled
    job = await farm.submit(spec())
    ready = farm._sessions.register("agent-ready", slots=1)  # connected before the storm
    store.gate.clear()
    storm = [await hello(f"agent-{n}") for n in range(AGENTS)]

    # Every reconnecting agent's reconciliation is waiting on the store; the dispatcher still
    # gets a connection for its claim, and gives the job to the agent that can take it.
    async with asyncio.timeout(WAIT):
        assert await dispatch_once(farm) == 1
    assert [m.assign.lease.job_id for m in [ready.outbox.get_nowait()]] == [job.id]
    assert store.most_reading <= RECONCILES < POOL

    store.gate.set()
    for stream in storm:
        await stream.handled()  # reconciled, in turn
    assert len(farm.agents()) == AGENTS + 1


async def test_a_reconnecting_agent_gets_no_work_before_its_leases_are_counted(
    pooled: tuple[Farm, PooledStore], hello: Any
) -> None:
    farm, store = pooled
    for variant in range(3):
        await farm.submit(spec(variant=variant))
    first = await hello("agent-a", slots=2)
    await first.handled()
    assert await dispatch_once(farm) == 2
    held = [(await first.next("assign")).lease for _ in range(2)]

    # The agent's process lives on; its stream does not. It reconnects with both jobs.
    store.gate.clear()
    again = await hello("agent-a", slots=2, leases=held)
    assert await dispatch_once(farm) == 0, "work for slots the agent's own leases fill"
    store.gate.set()
    await again.handled()
    session = farm._sessions.get("agent-a")
    assert session is not None
    assert farm.held(session) == {lease.job_id: lease.fencing_token for lease in held}
    assert farm.free_slots(session) == 0 and await dispatch_once(farm) == 0
