"""The agent's stream link, against fake streams: Hello and Welcome, heartbeats at the
coordinator's cadence, reconnects with backoff, and results resent on a new stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc.aio as aio
import pytest

from framefleet.agent.link import StreamLink
from framefleet.core.backoff import Backoff
from framefleet.v1 import framefleet_pb2 as pb

FAST = Backoff(base=0.01, cap=0.02)
WAIT = 10.0  # seconds: generous, the machine is shared


class FakeStream:
    def __init__(self) -> None:
        self.written: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        self.incoming: asyncio.Queue[object] = asyncio.Queue()
        self.cancelled = False

    async def write(self, request: pb.ConnectRequest) -> None:
        for message in request.bundle.messages if request.HasField("bundle") else [request]:
            self.written.put_nowait(message)

    async def read(self) -> object:
        return await self.incoming.get()

    def cancel(self) -> bool:
        self.cancelled = True
        self.incoming.put_nowait(aio.EOF)
        return True

    async def next_written(self) -> pb.ConnectRequest:
        return await asyncio.wait_for(self.written.get(), WAIT)

    async def next_of(self, kind: str) -> pb.ConnectRequest:
        while True:
            message = await self.next_written()
            if message.WhichOneof("message") == kind:
                return message

    def welcome(self, interval_ms: int = 20, epoch: int = 1) -> None:
        welcome = pb.Welcome(heartbeat_interval_ms=interval_ms, session_epoch=epoch)
        self.incoming.put_nowait(pb.ConnectResponse(welcome=welcome))

    def end(self) -> None:
        self.incoming.put_nowait(aio.EOF)


class FakeCoordinator:
    """Hands out one new FakeStream per Connect; ``down`` makes connecting fail."""

    def __init__(self) -> None:
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()
        self.down = 0  # connections to refuse before accepting again

    def Connect(self) -> FakeStream:
        stream = FakeStream()
        self.streams.put_nowait(stream)
        return stream

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[FakeCoordinator]:
        if self.down:
            self.down -= 1
            raise ConnectionRefusedError("coordinator down")
        yield self

    async def next_stream(self) -> FakeStream:
        return await asyncio.wait_for(self.streams.get(), WAIT)


class FakePeer:
    def __init__(self) -> None:
        self.draining = False
        self.held: list[pb.LeaseRef] = []
        self.results: list[pb.ConnectRequest] = []
        self.handled: asyncio.Queue[pb.ConnectResponse] = asyncio.Queue()
        self.streams_opened = 0

    def leases(self) -> list[pb.LeaseRef]:
        return list(self.held)

    def unacknowledged(self) -> list[pb.ConnectRequest]:
        return list(self.results)

    def stream_opened(self) -> None:
        self.streams_opened += 1

    def handle(self, message: pb.ConnectResponse) -> None:
        self.handled.put_nowait(message)


@pytest.fixture
async def link() -> AsyncIterator[tuple[StreamLink, FakeCoordinator, FakePeer]]:
    coordinator, peer = FakeCoordinator(), FakePeer()
    hello = pb.Hello(agent_id="agent-1", slots=2, labels={"zone": "a"})
    link = StreamLink(coordinator.connect, hello, peer, backoff=FAST)
    task = asyncio.create_task(link.run())
    try:
        yield link, coordinator, peer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


LEASE = pb.LeaseRef(job_id="job-1", fencing_token=7)


async def test_hello_welcome_and_heartbeats_listing_the_leases(
    link: tuple[StreamLink, FakeCoordinator, FakePeer],
) -> None:
    stream_link, coordinator, peer = link
    first = await coordinator.next_stream()
    assert not (await first.next_written()).hello.leases
    peer.held = [LEASE]
    first.end()  # before a Welcome: refused, so the link connects again
    stream = await coordinator.next_stream()
    hello = (await stream.next_written()).hello
    assert (hello.agent_id, hello.slots, dict(hello.labels)) == ("agent-1", 2, {"zone": "a"})
    assert list(hello.leases) == [LEASE]
    assert not stream_link.connected.is_set()
    stream.welcome(interval_ms=20)
    await asyncio.wait_for(stream_link.connected.wait(), WAIT)
    beat = (await stream.next_of("heartbeat")).heartbeat
    assert list(beat.leases) == [LEASE] and not beat.draining
    peer.held, peer.draining = [], True
    while (beat := (await stream.next_of("heartbeat")).heartbeat).leases:
        pass  # one sent before the change may still be queued
    assert beat.draining


async def test_messages_go_to_the_peer_and_sends_reach_the_stream(
    link: tuple[StreamLink, FakeCoordinator, FakePeer],
) -> None:
    stream_link, coordinator, peer = link
    stream = await coordinator.next_stream()
    stream.welcome(interval_ms=60_000)
    await asyncio.wait_for(stream_link.connected.wait(), WAIT)
    cancel = pb.ConnectResponse(cancel=pb.Cancel(lease=LEASE, reason="client"))
    stream.incoming.put_nowait(cancel)
    assert await asyncio.wait_for(peer.handled.get(), WAIT) == cancel
    progress = pb.ConnectRequest(progress=pb.Progress(lease=LEASE, frames_done=3))
    stream_link.send(progress)
    assert await stream.next_of("progress") == progress


async def test_a_dropped_stream_reconnects_and_resends_unacknowledged_results(
    link: tuple[StreamLink, FakeCoordinator, FakePeer],
) -> None:
    stream_link, coordinator, peer = link
    first = await coordinator.next_stream()
    first.welcome(interval_ms=60_000)
    await asyncio.wait_for(stream_link.connected.wait(), WAIT)
    first.end()
    done = pb.ConnectRequest(completed=pb.Completed(lease=LEASE, output_url="file:///x.mp4"))
    peer.held, peer.results = [LEASE], [done]
    second = await coordinator.next_stream()
    assert first.cancelled
    assert list((await second.next_written()).hello.leases) == [LEASE]
    second.welcome(epoch=2, interval_ms=60_000)
    assert await second.next_written() == done
    assert stream_link.streams == 2
    assert peer.streams_opened == 2, (
        "the peer hears of each new stream (its source ledger restarts)"
    )


async def test_sends_while_disconnected_are_dropped(
    link: tuple[StreamLink, FakeCoordinator, FakePeer],
) -> None:
    stream_link, coordinator, _ = link
    first = await coordinator.next_stream()
    stream_link.send(pb.ConnectRequest(progress=pb.Progress(lease=LEASE, frames_done=1)))
    first.welcome(interval_ms=60_000)
    await asyncio.wait_for(stream_link.connected.wait(), WAIT)
    marker = pb.ConnectRequest(progress=pb.Progress(lease=LEASE, frames_done=2))
    stream_link.send(marker)
    # The first thing after the Hello is the marker: the early progress was not queued.
    assert (await first.next_written()).HasField("hello")
    assert await first.next_written() == marker


async def test_refused_streams_and_an_unreachable_coordinator_are_retried(
    link: tuple[StreamLink, FakeCoordinator, FakePeer],
) -> None:
    stream_link, coordinator, peer = link
    coordinator.down = 2  # the next two connection attempts fail
    refused = await coordinator.next_stream()
    await refused.next_of("hello")
    # Anything but a Welcome: the link gives up on this stream and tries again later.
    refused.incoming.put_nowait(pb.ConnectResponse(ack=pb.Ack(lease=LEASE)))
    accepted = await coordinator.next_stream()
    assert refused.cancelled and coordinator.down == 0
    await accepted.next_of("hello")
    accepted.welcome(interval_ms=60_000)
    await asyncio.wait_for(stream_link.connected.wait(), WAIT)
    assert stream_link.streams == 1
    assert peer.handled.empty()  # the refusal's message was not handed to the peer


def test_a_welcome_cannot_make_heartbeats_spin_or_stop() -> None:
    from framefleet.agent.link import HEARTBEAT_MAX, HEARTBEAT_MIN, heartbeat_interval

    assert heartbeat_interval(pb.Welcome(heartbeat_interval_ms=0)) == HEARTBEAT_MIN
    assert heartbeat_interval(pb.Welcome(heartbeat_interval_ms=2**32 - 1)) == HEARTBEAT_MAX
    assert heartbeat_interval(pb.Welcome(heartbeat_interval_ms=5000)) == 5.0
