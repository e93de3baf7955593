"""Background services under the supervisor: a failing round is retried with backoff, repeated
failures make the coordinator not ready (gRPC health NOT_SERVING, the /readyz reason), and it
recovers by itself once the store answers again."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc.aio as aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framefleet.coordinator import server
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.store import JobStore, open_store
from framefleet.coordinator.supervisor import Supervisor
from framefleet.core.backoff import Backoff
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc
from tests.test_leases import spec

FAST = Backoff(base=0.01, cap=0.05)
WAIT = 20.0


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Polls a condition (health is only observable by asking)."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_a_failing_service_is_restarted_and_reported() -> None:
    changes: list[bool] = []
    rounds: list[int] = []

    async def listener(healthy: bool) -> None:
        changes.append(healthy)

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) <= 3:
            raise ConnectionError("store down")

    async def pause() -> None:
        await asyncio.sleep(0)

    supervisor = Supervisor(FAST, unready_after=2, listener=listener)
    supervisor.start("flaky", step, pause)
    try:

        async def recovered() -> bool:
            return len(rounds) >= 5

        await until(recovered, "rounds after recovery")
        assert changes == [False, True]
        assert supervisor.problem() is None
    finally:
        await supervisor.stop()
    assert supervisor.problem() == "background service flaky stopped"


async def test_a_failure_below_the_threshold_keeps_it_ready() -> None:
    changes: list[bool] = []
    failed = asyncio.Event()

    async def listener(healthy: bool) -> None:
        changes.append(healthy)

    steps_after = 0
    recovered = asyncio.Event()

    async def step() -> None:
        nonlocal steps_after
        if not failed.is_set():
            failed.set()
            raise ConnectionError("one blip")
        steps_after += 1
        if steps_after == 20:
            recovered.set()

    supervisor = Supervisor(FAST, unready_after=2, listener=listener)
    supervisor.start("blip", step, lambda: asyncio.sleep(0.01))
    try:
        # Twenty good steps after the blip: long past where a second failure would count.
        async with asyncio.timeout(10):
            await recovered.wait()
        assert changes == [] and supervisor.problem() is None
    finally:
        await supervisor.stop()


class FlakyStore:
    """The real store, except that the background services' reads fail while ``broken``."""

    BREAKS = {"claim", "expired", "count_by_state", "ended_batches", "get"}

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self.broken = False
        self.refused: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name not in self.BREAKS:
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.broken:
                self.refused[name] += 1
                raise ConnectionError(f"store unreachable ({name})")
            return await method(*args, **kwargs)

        return call


async def test_the_coordinator_recovers_from_a_store_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky: list[FlakyStore] = []

    async def open_flaky(url: str, migrate: bool) -> FlakyStore:
        flaky.append(FlakyStore(await open_store(url, migrate)))
        return flaky[0]

    monkeypatch.setattr("framefleet.coordinator.server.open_store", open_flaky)
    config = CoordinatorConfig(
        listen="127.0.0.1:0",
        store_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        default_destination=str(tmp_path / "out"),
        restart_backoff=FAST,
        unready_after=2,
    )
    async with (
        server.running_coordinator(config) as coordinator,
        aio.insecure_channel(coordinator.address) as channel,
    ):
        health: Any = health_pb2_grpc.HealthStub(channel)

        async def status() -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
            return int(reply.status)

        # An agent with a free slot, connected while the store is fine.
        agent = pb_grpc.AgentServiceStub(channel).Connect()
        await agent.write(pb.ConnectRequest(hello=pb.Hello(agent_id="agent-a", slots=1)))
        welcome = await agent.read()
        assert welcome.WhichOneof("message") == "welcome"
        assert await status() == health_pb2.HealthCheckResponse.SERVING

        (store,) = flaky
        store.broken = True

        async def not_serving() -> bool:
            return await status() == health_pb2.HealthCheckResponse.NOT_SERVING

        await until(not_serving, "health NOT_SERVING")
        reason = await coordinator.ready()
        assert reason is not None and "store unreachable" in reason
        # Work submitted meanwhile waits: nothing can be claimed.
        job = await coordinator.farm.submit(spec())
        claims = store.refused["claim"]

        async def dispatcher_tried_again() -> bool:
            return store.refused["claim"] >= claims + 2

        await until(dispatcher_tried_again, "the dispatcher to try the broken store again")
        assert coordinator.farm._sessions.get("agent-a") is not None

        store.broken = False

        async def serving() -> bool:
            return await status() == health_pb2.HealthCheckResponse.SERVING

        await until(serving, "health SERVING again")
        assert await coordinator.ready() is None
        # The dispatcher is alive again: the job reaches the agent.
        async with asyncio.timeout(WAIT):
            message = await agent.read()
        messages = (
            message.bundle.messages if message.WhichOneof("message") == "bundle" else [message]
        )
        assigned = [m.assign.lease.job_id for m in messages if m.WhichOneof("message") == "assign"]
        assert assigned == [job.id]
        agent.cancel()
