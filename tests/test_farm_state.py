"""The coordinator keeps nothing per job once the job has ended: jobs run through two Farms on
one store (two coordinators on one table), agents driven through AgentService's fake streams
(no gRPC, a real SQLite store, a fake clock), every way an attempt ends taken (completed, failed
and retried, lease expired, the agent restarted without its job, chunks leased by one
coordinator and completed on the other). Afterwards no container reachable from either Farm
names a job: a per-job map that misses an exit grows for the coordinator's whole life."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from framefleet.coordinator.agent_service import AgentService
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.dispatcher import dispatch_once
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.lease_reaper import reap_once
from framefleet.coordinator.store import JobState, open_store
from framefleet.core.errors import ErrorClass
from framefleet.v1 import framefleet_pb2 as pb
from tests.test_agent_service import T0, Stream
from tests.test_leases import FakeClock, spec

TTL = 20.0
RETRY_BASE = 2.0


COORDINATOR = "framefleet.coordinator."
SKIP = {"_store", "config", "clock"}  # the store holds every job, by design


def job_ids_held(farm: Farm, ids: set[str]) -> list[str]:
    """Where (as an attribute path) the Farm's own objects still hold one of ``ids``: in
    the containers of every coordinator object reachable from it (store and config aside)."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [("farm", farm)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            if obj in ids:
                found.append(path)
        elif isinstance(obj, dict | weakref.WeakKeyDictionary | weakref.WeakValueDictionary):
            for key, value in list(obj.items()):
                stack += [(f"{path}[{key!r}] (key)", key), (f"{path}[{key!r}]", value)]
        elif isinstance(obj, list | tuple | set | frozenset | deque | weakref.WeakSet):
            stack += [(f"{path}[]", item) for item in list(obj)]
        elif type(obj).__module__.startswith(COORDINATOR) and hasattr(obj, "__dict__"):
            stack += [(f"{path}.{k}", v) for k, v in vars(obj).items() if k not in SKIP]
    return found


class Coordinator:
    """A Farm and its agent service; agents connect through fake streams."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.service = AgentService(farm)
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, agent_id: str, slots: int, leases: Any = ()) -> Stream:
        stream = Stream()
        stream.say(hello=pb.Hello(agent_id=agent_id, slots=slots, leases=list(leases)))
        context: Any = stream
        self.tasks.append(asyncio.create_task(self.service.Connect(stream.requests(), context)))
        await stream.next("welcome")
        await stream.handled()  # the Hello's leases reconciled
        return stream

    async def close(self, stream: Stream) -> None:
        """The agent's stream ends (killed: no word about its jobs)."""
        stream.sent.put_nowait(None)
        await asyncio.gather(*self.tasks)  # unregistered
        self.tasks.clear()


@pytest.fixture
async def coordinators(tmp_path: Path) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    clock = FakeClock(T0)
    config = CoordinatorConfig(
        default_destination=str(tmp_path / "out"),
        clock=clock,
        lease_ttl=TTL,
        retry_base=RETRY_BASE,
        # Leases unreported for two heartbeats count as lost in transit: not in this test.
        heartbeat_interval=TTL,
    )
    pair = Coordinator(Farm(store, config)), Coordinator(Farm(store, config))
    try:
        yield pair
    finally:
        for c in pair:
            for task in c.tasks:
                task.cancel()
            await asyncio.gather(*c.tasks, return_exceptions=True)
        await store.close()


def long_spec(variant: int) -> pb.JobSpec:
    """Eight seconds in two chunks, before any plain job."""
    job = spec(frames=80, priority=9, variant=10 + variant)
    job.chunks = 2
    return job


async def complete(stream: Stream, assign: pb.Assign) -> None:
    stream.say(completed=pb.Completed(lease=assign.lease, output_bytes=1))
    assert (await stream.next("ack")).accepted


async def run_all(coordinator: Coordinator, stream: Stream) -> None:
    """Dispatches and completes on ``stream`` until nothing more is claimable."""
    while granted := await dispatch_once(coordinator.farm):
        for assign in [await stream.next("assign") for _ in range(granted)]:
            await complete(stream, assign)


async def test_no_job_is_remembered_after_it_ended(
    coordinators: tuple[Coordinator, Coordinator],
) -> None:
    a, b = coordinators
    clock = a.farm.clock
    assert isinstance(clock, FakeClock)
    plain = [(await a.farm.submit(spec(frames=10, variant=n))).id for n in range(3)]

    # Agent x takes the plain jobs on coordinator A: fails one (retryable), goes silent on
    # another (its lease expires) and restarts without the third.
    x = await a.connect("x", slots=3)
    assert await dispatch_once(a.farm) == 3
    failed, silent, lost = [(await x.next("assign")).lease for _ in range(3)]
    x.say(failed=pb.Failed(lease=failed, error_class=ErrorClass.BROWSER_CRASHED))
    assert (await x.next("ack")).accepted
    clock.advance(TTL - 5)
    x.say(heartbeat=pb.Heartbeat(leases=[lost]))  # renews that one alone
    await x.handled()
    clock.advance(6)
    assert await reap_once(a.farm) == 1
    assert (await x.next("cancel")).lease == silent
    await a.close(x)
    x = await a.connect("x", slots=3)  # restarted: the third is lost with it
    await a.close(x)
    queued = await a.farm._store.list_jobs([JobState.QUEUED], 10)
    assert {r.id for r in queued} == set(plain)

    # Agent y takes the chunks of two split jobs on A, reports progress, and moves to
    # coordinator B with them (its stream to A ends), where it completes them and the
    # assemblies.
    split = [(await a.farm.submit(long_spec(n))).id for n in range(2)]
    chunk_ids = {c.id for job_id in split for c in await a.farm._store.chunks_of(job_id)}
    y = await a.connect("y", slots=4)
    assert await dispatch_once(a.farm) == 4
    chunks = [await y.next("assign") for _ in range(4)]
    assert {c.lease.job_id for c in chunks} == chunk_ids
    y.say(progress=pb.Progress(lease=chunks[0].lease, frames_done=5))
    await y.handled()
    await a.close(y)
    y = await b.connect("y", slots=4, leases=[c.lease for c in chunks])
    for assign in chunks:
        await complete(y, assign)
    await run_all(b, y)
    await b.close(y)

    # The plain jobs' retries, once their backoff has passed, on A.
    clock.advance(10 * RETRY_BASE)
    x = await a.connect("x", slots=3)
    await run_all(a, x)
    await a.close(x)
    records = await a.farm._store.list_jobs([], 20)
    assert {r.id: r.state for r in records} == dict.fromkeys([*plain, *split], JobState.SUCCEEDED)

    ids = {*plain, *split, *chunk_ids}
    assert job_ids_held(a.farm, ids) == []
    assert job_ids_held(b.farm, ids) == []
