"""The agent-facing gRPC service: one bidirectional stream per agent.

The agent opens with Hello (its slots and the leases it still holds); the coordinator answers
Welcome (heartbeat cadence, lease TTL, session epoch), reconciles the leases, and from then on
pushes Assign messages as slots free up. Every agent message about a job names its fencing
token; a stale one is refused and the agent is told to drop that job.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio as aio

from framefleet.coordinator import metrics
from framefleet.coordinator.auth import AGENT_CERTIFICATE_REQUIRED, agent_name
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.sessions import Session
from framefleet.core.outbox import take_ready
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc

Context = aio.ServicerContext[Any, Any]
log = logging.getLogger("framefleet.coordinator")


def _bundle(messages: list[pb.ConnectResponse]) -> pb.ConnectResponse:
    return pb.ConnectResponse(bundle=pb.ResponseBundle(messages=messages))


class AgentService(pb_grpc.AgentServiceServicer):  # type: ignore[misc]
    def __init__(self, farm: Farm) -> None:
        self.farm = farm

    async def Connect(
        self,
        request_iterator: AsyncIterator[pb.ConnectRequest],
        context: Context,
    ) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "hello":
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "the first message must be a Hello"
            )
        hello = first.hello
        agent_id = await self._identity(hello.agent_id, context)
        config = self.farm.config
        slots = min(max(1, hello.slots), config.max_slots_per_agent)
        session = await self.farm.connect(agent_id, slots)
        session.labels, session.last_seen = dict(hello.labels), self.farm.clock()
        welcome = pb.Welcome(
            heartbeat_interval_ms=int(config.heartbeat_interval * 1000),
            lease_ttl_ms=int(config.lease_ttl * 1000),
            session_epoch=session.epoch,
        )
        writer: asyncio.Task[None] | None = None
        metrics.AGENTS.inc()
        try:
            # Written alone, before the writer starts: an Assign the dispatcher queues the
            # moment the session registers would otherwise share its bundle, and an agent
            # drops a stream whose first message is not a Welcome (with the lease).
            await context.write(pb.ConnectResponse(welcome=welcome))
            log.info(
                "agent connected",
                extra={"agent_id": agent_id, "slots": session.slots, "epoch": session.epoch},
            )
            writer = asyncio.create_task(self._write(session, context))
            await self.farm.reconcile(session, hello.leases)
            self.farm.wake()
            async for message in requests:
                try:
                    await self._handle(session, message)
                except Exception:
                    log.exception("bad agent message", extra={"agent_id": session.agent_id})
        except asyncio.CancelledError:
            if session.replaced:  # tell the old stream's agent, rather than leave it hanging
                await context.abort(
                    grpc.StatusCode.ABORTED, "a newer stream of this agent replaced this one"
                )
            raise
        finally:
            metrics.AGENTS.dec()
            if writer is not None:
                writer.cancel()
            self.farm.disconnect(session)
            log.info("agent disconnected", extra={"agent_id": session.agent_id})

    async def _identity(self, claimed: str, context: Context) -> str:
        """The agent's id: with --agent-ca, the common name of the client certificate the TLS
        handshake verified (a Hello may repeat it, never change it); else what Hello says."""
        if self.farm.config.agent_ca is None:
            if not claimed:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Hello needs an agent_id")
            return claimed
        name = agent_name(context)
        if name is None:  # refused by auth.Gate already, before the Hello was read
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, AGENT_CERTIFICATE_REQUIRED)
            raise AssertionError("unreachable")
        if claimed and claimed != name:
            log.warning("agent claimed another id", extra={"agent_id": name, "claimed": claimed})
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this certificate is agent {name!r}, not {claimed!r}",
            )
        return name

    async def _write(self, session: Session, context: Context) -> None:
        while True:
            await context.write(await take_ready(session.outbox, _bundle))

    async def _handle(self, session: Session, message: pb.ConnectRequest) -> None:
        session.last_seen = self.farm.clock()
        self.farm.heard_from(session)
        kind = message.WhichOneof("message")
        if kind == "bundle":
            # In order; each run of consecutive Completed messages is one store call.
            for is_completed, run in itertools.groupby(
                message.bundle.messages, key=lambda m: m.WhichOneof("message") == "completed"
            ):
                if is_completed:
                    await self._complete(session, [m.completed for m in run])
                else:
                    for inner in run:
                        await self._handle(session, inner)
        elif kind == "heartbeat":
            await self._heartbeat(session, message.heartbeat)
        elif kind == "progress":
            progress = message.progress
            if not await self.farm.progress(session.agent_id, progress):
                lease = progress.lease
                self.farm.drop(session, lease.job_id, lease.fencing_token)
        elif kind == "completed":
            await self._complete(session, [message.completed])
        elif kind == "failed":
            lease = message.failed.lease
            accepted = await self.farm.fail(session.agent_id, message.failed) is not None
            self.farm.settled(session, lease, accepted)
        elif kind == "released":
            lease = message.released.lease
            released = await self.farm.release(
                session.agent_id, lease.job_id, lease.fencing_token, interrupted=True
            )
            accepted = released is not None
            self.farm.settled(session, lease, accepted)
        else:
            log.warning("unexpected agent message %s", kind, extra={"agent_id": session.agent_id})

    async def _complete(self, session: Session, reports: list[pb.Completed]) -> None:
        accepted = {r.id for r in await self.farm.complete(session.agent_id, reports)}
        for report in reports:
            self.farm.settled(session, report.lease, report.lease.job_id in accepted)

    async def _heartbeat(self, session: Session, heartbeat: pb.Heartbeat) -> None:
        session.draining = heartbeat.draining
        reported = {lease.job_id: lease.fencing_token for lease in heartbeat.leases}
        renewed = await self.farm.renew(session.agent_id, list(reported.items()))
        for job_id, token in reported.items():
            if job_id not in renewed:
                self.farm.drop(session, job_id, token)
        # Leases we granted that the agent does not report, given time for the Assign to
        # arrive, were lost on the way: requeue them now rather than after the TTL.
        grace = 2 * self.farm.config.heartbeat_interval
        for job_id, token in self.farm.lost_in_transit(session, reported, grace):
            await self.farm.release(session.agent_id, job_id, token)
