"""Wires the coordinator together: store, gRPC services (with health and reflection),
dispatcher and lease reaper."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc.aio as aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from framefleet.coordinator import batch_finisher, metrics
from framefleet.coordinator.agent_service import AgentService
from framefleet.coordinator.auth import Authenticator, Gate
from framefleet.coordinator.config import CoordinatorConfig
from framefleet.coordinator.deletion_cost import (
    INTERVAL_SECONDS,
    DeletionCosts,
    KubeApi,
    busy_slots,
)
from framefleet.coordinator.dispatcher import dispatch_once, wait_for_work
from framefleet.coordinator.farm import Farm
from framefleet.coordinator.job_service import JobService
from framefleet.coordinator.lease_reaper import reap_once
from framefleet.coordinator.server_tls import CertificateFiles
from framefleet.coordinator.store import open_store
from framefleet.coordinator.supervisor import Supervisor
from framefleet.coordinator.tokens import TokenFile
from framefleet.coordinator.webhooks import Webhooks
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
    supervisor: Supervisor
    # Where agents connect with their certificates (--agent-listen); else ``address``.
    agent_address: str
    tokens: TokenFile | None
    # --tls-cert/--tls-key (and --agent-ca), followed as they change; None without TLS.
    certificates: CertificateFiles | None = None

    async def ready(self) -> str | None:
        """None when the store answers and every background service runs, else why not."""
        problem = self.supervisor.problem()
        if problem is not None:
            return problem
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.farm.check_store()
        except Exception as e:
            return f"store unreachable: {e!r}"
        return None


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or an empty host: it may be reachable from elsewhere


def exposure_problems(config: CoordinatorConfig, *others: str) -> list[str]:
    """What makes this coordinator unsafe to expose beyond loopback (empty: nothing);
    ``others``: more addresses it listens on (its --http)."""
    problems = []
    if config.tls_cert is None:
        problems.append("no TLS (--tls-cert, --tls-key)")
    if config.tokens is None:
        problems.append("no client tokens (--tokens)")
    if config.agent_ca is None:
        problems.append("no agent certificates (--agent-ca, --agent-listen)")
    addresses = (config.listen, config.agent_listen, *others)
    exposed = [a for a in addresses if a and not is_loopback(a)]
    return problems if exposed else []


def _check(config: CoordinatorConfig) -> None:
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if config.agent_ca is not None and not (config.agent_listen and config.tls_cert):
        raise ValueError("--agent-ca needs --agent-listen and --tls-cert/--tls-key")


def _add_ports(
    server: aio.Server, config: CoordinatorConfig
) -> tuple[int, int, CertificateFiles | None]:
    """Binds --listen (TLS when configured) and --agent-listen (mutual TLS: only agents with a
    certificate from --agent-ca complete the handshake). Returns both ports (the second is 0
    without an agent port) and the certificate files both follow."""
    if config.tls_cert is None or config.tls_key is None:
        return server.add_insecure_port(config.listen), 0, None
    files = CertificateFiles(config.tls_cert, config.tls_key, config.agent_ca)
    port = server.add_secure_port(config.listen, files.grpc_credentials())
    if config.agent_ca is None:
        return port, 0, files
    agents = files.grpc_credentials(require_client_auth=True)
    return port, server.add_secure_port(config.agent_listen, agents), files


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


CERTIFICATE_CHECK_SECONDS = 5.0  # between checks of the TLS files (handshakes check too)


def start_services(
    farm: Farm, supervisor: Supervisor, certificates: CertificateFiles | None = None
) -> None:
    """The background services, each a round of work and what it waits for in between."""

    async def every(seconds: float) -> None:
        await asyncio.sleep(seconds)

    supervisor.start("dispatcher", lambda: dispatch_once(farm), lambda: wait_for_work(farm))
    supervisor.start(
        "lease_reaper", lambda: reap_once(farm), lambda: every(farm.config.reap_interval)
    )
    supervisor.start(
        "batch_finisher",
        farm.finish_batches,
        lambda: every(batch_finisher.INTERVAL_SECONDS),
    )
    supervisor.start(
        "store_sampler",
        farm.sample_store,
        lambda: every(metrics.SAMPLE_SECONDS),
    )
    if certificates is not None:
        supervisor.start(
            "certificate_reload",
            lambda: asyncio.to_thread(certificates.refresh),
            lambda: every(CERTIFICATE_CHECK_SECONDS),
        )


@contextlib.asynccontextmanager
async def running_coordinator(config: CoordinatorConfig) -> AsyncIterator[RunningCoordinator]:
    """Starts a coordinator and stops it on exit; ``address`` is the bound host:port."""
    _check(config)
    tokens = TokenFile(config.tokens) if config.tokens is not None else None
    webhooks = Webhooks(config.webhook_secret)
    costs = DeletionCosts(KubeApi.in_cluster()) if config.pod_deletion_cost else None
    auth = Authenticator(tokens)
    store = await open_store(config.store_url, config.migrates)
    # After a restart, agents get one TTL to reconnect and renew before leases expire.
    await store.extend_leases(config.clock() + config.lease_ttl)
    farm = Farm(store, config)
    farm.webhooks = webhooks
    gate = Gate(auth, agent_certificates=config.agent_ca is not None)
    server = aio.server(options=GRPC_OPTIONS, interceptors=[gate])
    pb_grpc.add_JobServiceServicer_to_server(JobService(farm, auth), server)
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
    port, agent_port, certificates = _add_ports(server, config)

    async def serving(healthy: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if healthy else NOT_SERVING
        for name in ["", *services]:
            await health_servicer.set(name, status)

    await serving(True)
    await server.start()
    supervisor = Supervisor(config.restart_backoff, config.unready_after, serving)
    start_services(farm, supervisor, certificates)
    if costs is not None:
        supervisor.start(
            "pod_deletion_cost",
            lambda: costs.update(busy_slots(farm)),
            lambda: asyncio.sleep(INTERVAL_SECONDS),
        )
    address = f"{host}:{port}"
    agent_address = (
        f"{config.agent_listen.rpartition(':')[0]}:{agent_port}" if agent_port else address
    )
    log.info(
        "coordinator listening",
        extra={
            "address": address,
            "agent_address": agent_address,
            "tls": config.tls_cert is not None,
            "tokens": tokens is not None,
            "store": config.store_url,
        },
    )
    try:
        yield RunningCoordinator(
            farm, server, address, supervisor, agent_address, tokens, certificates
        )
    finally:
        await supervisor.stop()
        await server.stop(grace=1.0)
        await webhooks.stop()
        if costs is not None:
            await costs.close()
        await store.close()
