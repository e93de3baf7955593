"""``framefleet coordinator`` and ``framefleet agent``: the long-running services."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from framefleet.commands.http import ReadyCheck
    from framefleet.coordinator.config import CoordinatorConfig

log = logging.getLogger("framefleet.coordinator")


def _certificate_name(path: Path | None) -> str:
    """The common name of a certificate: the agent id the coordinator will know it by."""
    if path is None:
        return ""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


@contextlib.asynccontextmanager
async def _http(
    address: str | None,
    ready: ReadyCheck,
    service: str,
    tls: ssl.SSLContext | None = None,
    routes: Callable[[web.Application], None] | None = None,
) -> AsyncIterator[None]:
    """Serves /healthz, /readyz and /metrics (and ``routes``) on ``address``, if one is given,
    over HTTPS with ``tls``. aiohttp is imported only then: an agent without --http starts
    without it (a quarter of a second)."""
    if not address:
        yield
        return
    from framefleet.commands.http import http_app, serving

    app = http_app(ready)
    if routes is not None:
        routes(app)
    async with serving(app, address, tls) as bound:
        # Tests read the bound address from this line (stdout for the coordinator, whose
        # first lines they read; the agent's stdout is free for the operator).
        stream = sys.stdout if service == "coordinator" else sys.stderr
        print(f"framefleet {service} http on {bound}", file=stream, flush=True)
        yield


def _roots(flags: list[str] | str) -> list[str]:
    """A repeatable URL option: its flags, or its FRAMEFLEET_ variable, space-separated."""
    return flags.split() if isinstance(flags, str) else flags


def _allowed_outputs(allowed: list[str] | str, out: str) -> list[str]:
    """--allow-output (with --out, always allowed); empty: --out alone."""
    roots = _roots(allowed)
    return [*roots, out] if roots else []


async def cmd_coordinator(args: argparse.Namespace) -> int:
    """Runs until SIGTERM or SIGINT. State lives in the store, so a stop (or a crash) loses
    nothing: agents reconnect to the next coordinator and report the leases they hold."""
    from framefleet.coordinator.config import CoordinatorConfig
    from framefleet.coordinator.server import exposure_problems
    from framefleet.coordinator.store.migrations import SchemaTooOld

    config = CoordinatorConfig(
        listen=args.listen,
        store_url=args.store,
        auto_migrate={"on": True, "off": False}.get(args.auto_migrate),
        default_destination=args.out,
        lease_ttl=args.lease_ttl,
        heartbeat_interval=args.heartbeat_interval,
        retry_base=args.retry_base,
        max_interruptions=args.max_interruptions,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tokens=args.tokens,
        agent_ca=args.agent_ca,
        agent_listen=args.agent_listen,
        max_slots_per_agent=args.max_slots_per_agent,
        max_unfinished_per_tenant=args.max_queued_per_tenant,
        allowed_outputs=_allowed_outputs(args.allow_output, args.out),
        allowed_webhooks=_roots(args.allow_webhook),
        webhook_secret=args.webhook_secret,
        pod_deletion_cost=args.pod_deletion_cost,
    )
    problems = exposure_problems(config, args.http or "")
    if problems and not args.insecure:
        print(
            f"error: {args.listen} is reachable beyond this machine, but there is "
            + ", ".join(problems)
            + ". Add them (docs/how-to/secure.md), or pass --insecure to accept anyone as client "
            "and agent.",
            file=sys.stderr,
        )
        return 2
    for problem in problems:
        log.warning(
            "INSECURE: listening beyond loopback with %s: anyone can use this farm", problem
        )
        print(
            f"WARNING: --insecure: {problem}; anyone who reaches the port owns the farm",
            file=sys.stderr,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _serve(args, config, stop)
    except SchemaTooOld as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


async def _serve(args: argparse.Namespace, config: CoordinatorConfig, stop: asyncio.Event) -> int:
    from framefleet.coordinator.console import add_console
    from framefleet.coordinator.server import running_coordinator

    loop = asyncio.get_running_loop()
    async with running_coordinator(config) as coordinator:
        if coordinator.tokens is not None:
            loop.add_signal_handler(signal.SIGHUP, coordinator.tokens.reload)

        def console(app: web.Application) -> None:  # the web console, /console/
            add_console(app, coordinator.farm, coordinator.tokens)

        # The coordinator's certificate for its --http address too (probes, scrapers),
        # reloaded with it.
        certificates = coordinator.certificates
        tls = certificates.ssl_context() if certificates is not None else None
        async with _http(args.http, coordinator.ready, "coordinator", tls, console):
            # Tests and the local mode read the bound addresses from these lines.
            print(f"framefleet coordinator listening on {coordinator.address}", flush=True)
            if coordinator.agent_address != coordinator.address:
                print(f"framefleet coordinator agents on {coordinator.agent_address}", flush=True)
            await stop.wait()
    return 0


async def cmd_agent(args: argparse.Namespace) -> int:
    # Playwright's driver first: it comes up (a Node process, about half a second) while the
    # rest of the agent imports on a thread, so the agent connects that much sooner.
    from framefleet.agent.browser import start_driver

    driver = None if args.noop else asyncio.create_task(start_driver())
    await asyncio.to_thread(importlib.import_module, "framefleet.agent.runner")
    from framefleet.agent import pinned_cpu
    from framefleet.agent.capacity import measure
    from framefleet.agent.limits import RenderLimits
    from framefleet.agent.runner import Agent, AgentConfig, run_agent
    from framefleet.agent.spot_notice import notice_url
    from framefleet.core.channel import Tls

    if not args.noop:
        pinned_cpu.pin()  # a host that cannot make the fleet's bytes stops here, saying why
    capacity = measure(args.slots)
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    agent_id = (
        args.agent_id or _certificate_name(args.tls_cert) or f"{socket.gethostname()}-{os.getpid()}"
    )
    print(f"framefleet agent {agent_id}: {capacity.describe()}", file=sys.stderr, flush=True)
    spot_notice = notice_url(args.spot_notice_url)
    # Say whether a spot notice can drain this agent: `auto` off EC2 polls nothing.
    watching = f"polling {spot_notice}" if spot_notice else f"off ({args.spot_notice_url})"
    print(
        f"framefleet agent {agent_id}: spot notice {watching}, drain grace {args.drain_grace:g} s",
        file=sys.stderr,
        flush=True,
    )
    agent = Agent(
        AgentConfig(
            coordinator=args.coordinator,
            agent_id=agent_id,
            slots=capacity.slots,
            limits=RenderLimits(args.ready_timeout, args.frame_timeout),
            drain_grace=args.drain_grace,
            spot_notice_url=spot_notice,
            spot_poll_interval=args.spot_poll_interval,
            page_renders=args.page_renders,
            page_heap_bytes=args.page_heap_mb * 2**20,
            page_memory_bytes=args.page_memory_mb * 2**20,
            chromium_sandbox=not args.no_chromium_sandbox,
            output_roots=_roots(args.output_root),
            noop=args.noop,
            tls=tls,
        ),
        driver,
    )
    async with _http(args.http, agent.ready, "agent"):
        await run_agent(agent)
    return 0
