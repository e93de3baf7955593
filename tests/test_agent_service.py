"""The lease book on its own, and AgentService driven through fake streams (no gRPC, a real
SQLite store, a fake clock): what an agent sees for what it says."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from framefleet.coordinator.agent_service import AgentService
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.dispatcher import dispatch_once
from framefleet.coordinator.farm import STALE, Farm
from framefleet.coordinator.lease_book import LeaseBook
from framefleet.coordinator.sessions import Session
from framefleet.coordinator.store import JobState, open_store
from framefleet.core.errors import ErrorClass
from framefleet.v1 import framefleet_pb2 as pb
from tests.test_leases import FakeClock, spec

T0 = 1_700_000_000.0
WAIT = 10.0

# --- the lease book ------------------------------------------------------------------------


def outbox(session: Session) -> list[str]:
    kinds = []
    while not session.outbox.empty():
        kinds.append(session.outbox.get_nowait().WhichOneof("message") or "")
    return kinds


def test_the_book_counts_slots_and_settles_only_the_current_token() -> None:
    clock = FakeClock(T0)
    book = LeaseBook(clock)
    session = Session("agent-a", slots=2, epoch=1)
    book.grant(session, "j1", 7)
    book.grant(session, "j2", 8)
    assert book.free_slots(session) == 0
    assert book.held(session) == {"j1": 7, "j2": 8}

    book.settle(session, pb.LeaseRef(job_id="j1", fencing_token=6), accepted=False)
    assert book.held(session) == {"j1": 7, "j2": 8}, "a stale token frees nothing"
    assert book.woken
    book.settle(session, pb.LeaseRef(job_id="j1", fencing_token=7), accepted=True)
    assert book.held(session) == {"j2": 8} and book.free_slots(session) == 1
    book.cancel(session, "j2", 8, "cancelled by a client")
    assert book.held(session) == {} and outbox(session) == ["ack", "ack", "cancel"]

    session.draining = True
    assert book.free_slots(session) == 0
    session.draining = False
    book.mark_silent(session)
    assert book.free_slots(session) == 0
    asyncio.run(book.wait_for_work(0))  # takes the signal
    assert not book.woken
    book.heard_from(session)
    assert book.free_slots(session) == 2 and book.woken


def test_leases_lost_in_transit_are_the_old_unreported_ones() -> None:
    clock = FakeClock(T0)
    book = LeaseBook(clock)
    session = Session("agent-a", slots=3, epoch=1)
    book.grant(session, "old-reported", 1)
    book.grant(session, "old-missing", 2)
    clock.advance(10)
    book.grant(session, "new-missing", 3)
    lost = book.lost_in_transit(session, {"old-reported"}, grace=5)
    assert lost == [("old-missing", 2)]
    assert book.held(session) == {"old-reported": 1, "new-missing": 3}


def test_a_closed_session_leaves_the_book() -> None:
    book = LeaseBook(FakeClock(T0))
    session = Session("agent-a", slots=1, epoch=1)
    book.grant(session, "j", 1)
    book.mark_silent(session)
    del session
    gc.collect()
    assert len(book._held) == 0 and len(book._silent) == 0


# --- AgentService through a fake stream ----------------------------------------------------


class Stream:
    """One agent's side of Connect: what it sends, and what the coordinator writes to it."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[pb.ConnectRequest | None] = asyncio.Queue()
        self.received: asyncio.Queue[pb.ConnectResponse] = asyncio.Queue()

    def say(self, **message: Any) -> None:
        self.sent.put_nowait(pb.ConnectRequest(**message))

    async def requests(self) -> AsyncIterator[pb.ConnectRequest]:
        while (message := await self.sent.get()) is not None:
            yield message

    # The ServicerContext the service uses.
    async def write(self, response: pb.ConnectResponse) -> None:
        bundled = response.WhichOneof("message") == "bundle"
        for message in response.bundle.messages if bundled else [response]:
            self.received.put_nowait(message)

    async def abort(self, code: object, details: str) -> None:
        raise RuntimeError(f"aborted: {details}")

    async def handled(self) -> None:
        """Until the coordinator has handled everything said so far: it answers in order, and
        a progress report on a lease nobody holds is answered with a Cancel."""
        marker = pb.LeaseRef(job_id="marker", fencing_token=1)
        self.say(progress=pb.Progress(lease=marker))
        while (await self.next("cancel")).lease != marker:
            pass

    async def next(self, kind: str) -> Any:
        async with asyncio.timeout(WAIT):
            message = await self.received.get()
        assert message.WhichOneof("message") == kind, message
        return getattr(message, kind)


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[Farm]:
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    config = CoordinatorConfig(
        default_destination=str(tmp_path), clock=FakeClock(T0), heartbeat_interval=1
    )
    try:
        yield Farm(store, config)
    finally:
        await store.close()


@pytest.fixture
async def connect(farm: Farm) -> AsyncIterator[Any]:
    service = AgentService(farm)
    tasks: list[asyncio.Task[None]] = []

    async def open_stream(agent_id: str, slots: int = 1, leases: Any = ()) -> Stream:
        stream = Stream()
        stream.say(hello=pb.Hello(agent_id=agent_id, slots=slots, leases=list(leases)))
        context: Any = stream
        tasks.append(asyncio.create_task(service.Connect(stream.requests(), context)))
        welcome = await stream.next("welcome")
        assert welcome.lease_ttl_ms == int(farm.config.lease_ttl * 1000)
        return stream

    yield open_stream
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_welcome_goes_out_alone_with_work_queued_at_once(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work queued for a session the moment it registers (the dispatcher was woken) must not
    share the Welcome's write: an agent drops a stream whose first message is not a Welcome,
    and the lease with it."""
    register = farm._sessions.register

    def register_and_queue(agent_id: str, slots: int) -> Session:
        session = register(agent_id, slots)
        session.send(pb.ConnectResponse(ack=pb.Ack()))  # as a dispatcher would, meanwhile
        return session

    monkeypatch.setattr(farm._sessions, "register", register_and_queue)
    stream, raw = Stream(), []
    deliver = stream.write

    async def write(response: pb.ConnectResponse) -> None:
        raw.append(response.WhichOneof("message"))
        await deliver(response)

    stream.write = write  # type: ignore[method-assign]
    stream.say(hello=pb.Hello(agent_id="agent-a", slots=1))
    context: Any = stream
    task = asyncio.create_task(AgentService(farm).Connect(stream.requests(), context))
    try:
        await stream.next("welcome")
        await stream.next("ack")
        assert raw[0] == "welcome", raw
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_agent_gets_work_and_its_result_is_acknowledged(farm: Farm, connect: Any) -> None:
    stream = await connect("agent-a")
    job = await farm.submit(spec())
    assert await dispatch_once(farm) == 1
    assign = await stream.next("assign")
    assert assign.lease.job_id == job.id

    stream.say(progress=pb.Progress(lease=assign.lease, frames_done=2))
    stream.say(completed=pb.Completed(lease=assign.lease, output_url="x", output_bytes=9))
    ack = await stream.next("ack")
    assert (ack.lease, ack.accepted) == (assign.lease, True)
    record = await farm._store.get(job.id)
    assert record is not None and record.state == JobState.SUCCEEDED
    session = farm._sessions.get("agent-a")
    assert session is not None and farm.free_slots(session) == 1


async def test_another_agents_result_is_refused_even_with_the_token(
    farm: Farm, connect: Any
) -> None:
    holder = await connect("agent-a")
    thief = await connect("agent-b")
    job = await farm.submit(spec())
    assert await dispatch_once(farm) == 1
    (assign, stream) = (
        (await holder.next("assign"), thief)
        if (s := farm._sessions.get("agent-a")) and farm.held(s)
        else (await thief.next("assign"), holder)
    )
    forged = pb.Completed(lease=assign.lease, output_url="file:///forged.mp4", output_bytes=1)
    stream.say(completed=forged)
    ack = await stream.next("ack")
    assert ack.accepted is False
    stream.say(failed=pb.Failed(lease=assign.lease, error_class=ErrorClass.INTERNAL))
    assert (await stream.next("ack")).accepted is False
    record = await farm._store.get(job.id)
    assert record is not None and record.state == JobState.LEASED
    assert record.output_url != "file:///forged.mp4"


async def test_a_reconnecting_agent_is_reconciled(farm: Farm, connect: Any) -> None:
    first = await connect("agent-a", slots=2)
    kept, lost = await farm.submit(spec(variant=1)), await farm.submit(spec(variant=2))
    assert await dispatch_once(farm) == 2
    leases = {a.lease.job_id: a.lease for a in [await first.next("assign") for _ in range(2)]}

    # The agent restarts holding only one of its jobs, and names a lease it never had.
    stale = pb.LeaseRef(job_id="nope", fencing_token=1)
    again = await connect("agent-a", slots=2, leases=[leases[kept.id], stale])
    cancel = await again.next("cancel")
    assert (cancel.lease, cancel.reason) == (stale, STALE)
    await again.handled()
    session = farm._sessions.get("agent-a")
    assert session is not None and farm.held(session) == {kept.id: leases[kept.id].fencing_token}
    record = await farm._store.get(lost.id)
    assert record is not None
    assert (record.state, record.error_class) == (JobState.QUEUED, ErrorClass.AGENT_LOST)


async def test_an_assignment_lost_in_transit_is_requeued(farm: Farm, connect: Any) -> None:
    stream = await connect("agent-a")
    job = await farm.submit(spec())
    assert await dispatch_once(farm) == 1
    await stream.next("assign")
    clock = farm.config.clock
    assert isinstance(clock, FakeClock)
    clock.advance(3)  # past two heartbeat intervals
    stream.say(heartbeat=pb.Heartbeat(leases=[]))  # the agent never got it
    await stream.handled()
    record = await farm._store.get(job.id)
    assert record is not None and record.state == JobState.QUEUED
    assert record.attempt == 0, "the attempt is given back"


async def test_the_console_shows_an_agent_that_went_away_until_it_returns(
    farm: Farm, connect: Any
) -> None:
    from framefleet.coordinator.console.views import Query, snapshot
    from framefleet.coordinator.tokens import OPEN

    async def agents() -> dict[str, bool]:
        view = await snapshot(farm, Query(), OPEN)
        return {a["id"]: a["connected"] for a in view["agents"]}

    first = await connect("agent-a")
    await connect("agent-b")
    assert await agents() == {"agent-a": True, "agent-b": True}
    session = farm._sessions.get("agent-a")
    assert session is not None and session.handler is not None
    first.sent.put_nowait(None)  # agent-a's stream ends (a crash, a network cut)
    await asyncio.wait([session.handler], timeout=WAIT)
    assert await agents() == {"agent-a": False, "agent-b": True}
    await connect("agent-a")
    assert await agents() == {"agent-a": True, "agent-b": True}
