"""``framefleet coordinator`` and ``framefleet agent``: the long-running services."""

from __future__ import annotations

import argparse
import os
import socket
import sys


def _serve_metrics(port: int) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=os.environ.get("FRAMEFLEET_METRICS_HOST", "0.0.0.0"))


async def cmd_coordinator(args: argparse.Namespace) -> int:
    from coordinator.config import CoordinatorConfig
    from coordinator.server import serve

    _serve_metrics(args.metrics_port)
    await serve(
        CoordinatorConfig(
            listen=args.listen,
            store_url=args.store,
            default_destination=args.out,
            lease_ttl=args.lease_ttl,
            heartbeat_interval=args.heartbeat_interval,
            retry_base=args.retry_base,
            max_interruptions=args.max_interruptions,
        )
    )
    return 0


async def cmd_agent(args: argparse.Namespace) -> int:
    from agent.capacity import measure
    from agent.render import RenderLimits
    from agent.runner import AgentConfig, run_agent

    capacity = measure(args.slots)
    agent_id = args.agent_id or f"{socket.gethostname()}-{os.getpid()}"
    _serve_metrics(args.metrics_port)
    print(f"framefleet agent {agent_id}: {capacity.describe()}", file=sys.stderr, flush=True)
    await run_agent(
        AgentConfig(
            coordinator=args.coordinator,
            agent_id=agent_id,
            slots=capacity.slots,
            limits=RenderLimits(args.ready_timeout, args.frame_timeout),
            drain_grace=args.drain_grace,
            spot_notice_url=args.spot_notice_url,
            spot_poll_interval=args.spot_poll_interval,
            page_renders=args.page_renders,
            page_heap_bytes=args.page_heap_mb * 2**20,
            page_memory_bytes=args.page_memory_mb * 2**20,
            noop=args.noop,
        )
    )
    return 0
