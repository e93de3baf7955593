"""Wires the coordinator together: store, gRPC services (with health and reflection),
dispatcher and lease reaper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc.aio as aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coordinator.agent_service import AgentService
from coordinator.batch_finisher import run_batch_finisher
from coordinator.config import CoordinatorConfig
from coordinator.dispatcher import run_dispatcher
from coordinator.farm import Farm
from coordinator.job_service import JobService
from coordinator.lease_reaper import run_reaper
from coordinator.metrics import sample_store
from coordinator.store import open_store
from framefleet.core.channel import GRPC_OPTIONS
from framefleet.v1 import framefleet_pb2 as pb
from framefleet.v1 import framefleet_pb2_grpc as pb_grpc

log = logging.getLogger("framefleet.coordinator")


READY_TIMEOUT = 2.0  # seconds the store may take to answer a readiness probe


@dataclass
class RunningCoordinator:
    farm: Farm
    server: aio.Server
    address: str
    background: list[asyncio.Task[None]]

    async def ready(self) -> str | None:
        """None when the store answers and every background service runs, else why not."""
        for task in self.background:
            if task.done():
                return f"background service {task.get_name()} stopped"
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.farm.store.get("")
        except Exception as e:
            return f"store unreachable: {e!r}"
        return None


@contextlib.asynccontextmanager
async def running_coordinator(config: CoordinatorConfig) -> AsyncIterator[RunningCoordinator]:
    """Starts a coordinator and stops it on exit; ``address`` is the bound host:port."""
    store = await open_store(config.store_url)
    # After a restart, agents get one TTL to reconnect and renew before leases expire.
    await store.extend_leases(config.clock() + config.lease_ttl)
    farm = Farm(store, config)
    server = aio.server(options=GRPC_OPTIONS)
    pb_grpc.add_JobServiceServicer_to_server(JobService(farm), server)
    pb_grpc.add_AgentServiceServicer_to_server(AgentService(farm), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [
        pb.DESCRIPTOR.services_by_name[name].full_name for name in ("JobService", "AgentService")
    ]
    reflection.enable_server_reflection(
        [*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    host, _, _ = config.listen.rpartition(":")
    port = server.add_insecure_port(config.listen)
    for name in ["", *services]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    background = (run_dispatcher, run_reaper, run_batch_finisher)
    tasks = [asyncio.create_task(s(farm), name=s.__name__) for s in background]
    tasks.append(asyncio.create_task(sample_store(store), name="sample_store"))
    address = f"{host}:{port}"
    log.info("coordinator listening", extra={"address": address, "store": config.store_url})
    try:
        yield RunningCoordinator(farm, server, address, tasks)
    finally:
        for task in tasks:
            task.cancel()
        await server.stop(grace=1.0)
        await store.close()
