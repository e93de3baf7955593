"""The agent's stream link to the coordinator: one bidirectional stream at a time, opened with a
Hello that lists the leases held and answered by a Welcome that sets the heartbeat cadence;
heartbeats state the full set of leases held; a dropped stream is reopened after the shared
backoff. Results not yet acknowledged are sent again on every new stream.

The link knows nothing of rendering: what it reports and what it does with the coordinator's
messages belong to its Peer (the job executor)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import grpc.aio as aio

from framefleet.core.backoff import Backoff
from framefleet.core.outbox import take_ready
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.agent")

RECONNECT = Backoff(base=0.4, cap=5.0)
# What a Welcome may set the heartbeat to: not a busy loop, not silence past any lease.
HEARTBEAT_MIN, HEARTBEAT_MAX = 0.1, 60.0


def heartbeat_interval(welcome: pb.Welcome) -> float:
    """The Welcome's cadence in seconds, held within bounds (a hostile 0 would spin)."""
    return min(max(welcome.heartbeat_interval_ms / 1000, HEARTBEAT_MIN), HEARTBEAT_MAX)


class Stream(Protocol):
    """One Connect call (grpc.aio's StreamStreamCall, or a fake in tests)."""

    async def write(self, request: pb.ConnectRequest) -> None: ...

    async def read(self) -> object:
        """The next ConnectResponse, or anything else (grpc.aio.EOF) when the stream ended."""
        ...

    def cancel(self) -> bool: ...


class Coordinator(Protocol):
    """What the link needs of an AgentService stub."""

    def Connect(self) -> Stream: ...


class Peer(Protocol):
    """The side of the agent the link serves."""

    @property
    def draining(self) -> bool: ...

    def leases(self) -> list[pb.LeaseRef]:
        """Leases held now (in the Hello and in every heartbeat)."""
        ...

    def unacknowledged(self) -> list[pb.ConnectRequest]:
        """Results the coordinator has not acknowledged yet (sent again on a new stream)."""
        ...

    def stream_opened(self) -> None:
        """Called once a coordinator welcomes a new stream, before its first message."""
        ...

    def handle(self, message: pb.ConnectResponse) -> None: ...


def _bundle(messages: list[pb.ConnectRequest]) -> pb.ConnectRequest:
    return pb.ConnectRequest(bundle=pb.RequestBundle(messages=messages))


class StreamLink:
    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[Coordinator]],
        hello: pb.Hello,
        peer: Peer,
        backoff: Backoff = RECONNECT,
    ) -> None:
        """``connect`` opens a channel and yields the stub; ``hello`` names the agent (its
        leases are filled in per stream)."""
        self._connect = connect
        self._hello = hello
        self._peer = peer
        self._backoff = backoff
        self._outbox: asyncio.Queue[pb.ConnectRequest] | None = None
        self.streams = 0  # streams the coordinator welcomed, for logs and tests
        self.connected = asyncio.Event()

    def send(self, message: pb.ConnectRequest) -> None:
        """Queues a message on the open stream. Without one it is dropped: progress and
        heartbeats are soon stale, and results come back through ``Peer.unacknowledged``."""
        if self._outbox is not None:
            self._outbox.put_nowait(message)

    def heartbeat(self) -> pb.ConnectRequest:
        leases = self._peer.leases()
        return pb.ConnectRequest(
            heartbeat=pb.Heartbeat(leases=leases, draining=self._peer.draining)
        )

    async def run(self) -> None:
        """Stays connected until cancelled."""
        failures = 0
        while True:
            try:
                async with self._connect() as coordinator:
                    if await self._session(coordinator):
                        failures = 0
            except aio.AioRpcError as e:
                log.warning("coordinator stream ended", extra={"code": e.code().name})
            except Exception:
                log.exception("coordinator stream failed")
            failures += 1
            await asyncio.sleep(self._backoff.delay(failures))

    async def _session(self, coordinator: Coordinator) -> bool:
        """One stream; returns True if the coordinator welcomed us."""
        call = coordinator.Connect()
        try:
            hello = pb.Hello()
            hello.CopyFrom(self._hello)
            hello.leases.extend(self._peer.leases())
            await call.write(pb.ConnectRequest(hello=hello))
            first = await call.read()
            if (
                not isinstance(first, pb.ConnectResponse)
                or first.WhichOneof("message") != "welcome"
            ):
                return False
            welcome = first.welcome
            outbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
            for result in self._peer.unacknowledged():
                outbox.put_nowait(result)
            self._outbox = outbox
            self._peer.stream_opened()
            self.streams += 1
            self.connected.set()
            log.info("connected", extra={"epoch": welcome.session_epoch})
            helpers = [
                asyncio.create_task(self._write(call, outbox)),
                asyncio.create_task(self._beat(heartbeat_interval(welcome))),
            ]
            try:
                while True:
                    message = await call.read()
                    if not isinstance(message, pb.ConnectResponse):
                        return True
                    self._peer.handle(message)
            finally:
                self._outbox = None
                self.connected.clear()
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
        finally:
            call.cancel()

    @staticmethod
    async def _write(call: Stream, outbox: asyncio.Queue[pb.ConnectRequest]) -> None:
        while True:
            await call.write(await take_ready(outbox, _bundle))

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.send(self.heartbeat())
