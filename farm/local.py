"""``framefleet render``: an embedded coordinator on SQLite and local agent processes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from framefleet.cli import fill_duration, finish, finish_batch, follow, follow_batch, spec_from_args
from framefleet.client import AsyncClient
from framefleet.core.variants import read_rows
from framefleet.v1 import framefleet_pb2 as pb


def _agent_command(coordinator: str, agent_id: str, slots: int | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "framefleet",
        "--log-level",
        "WARNING",
        "agent",
        "--coordinator",
        coordinator,
        "--agent-id",
        agent_id,
    ]
    return command + (["--slots", str(slots)] if slots else [])


@contextlib.asynccontextmanager
async def local_farm(out_dir: Path, agents: int, slots: int | None) -> AsyncIterator[AsyncClient]:
    """An embedded coordinator on SQLite and local agents as separate processes, stopped
    (drained) on exit. The job table stays in OUT/.framefleet/, so a rerun into the same
    directory finds what is already rendered and renders only what is missing."""
    from coordinator.config import CoordinatorConfig
    from coordinator.server import running_coordinator

    state = out_dir / ".framefleet"
    state.mkdir(parents=True, exist_ok=True)
    config = CoordinatorConfig(
        listen="127.0.0.1:0",
        store_url=f"sqlite:///{state}/jobs.db",
        default_destination=str(out_dir),
        lease_ttl=10.0,
        heartbeat_interval=2.0,
    )
    async with running_coordinator(config) as coordinator:
        host = socket.gethostname()
        processes = [
            await asyncio.create_subprocess_exec(
                *_agent_command(coordinator.address, f"{host}-local-{i}", slots)
            )
            for i in range(agents)
        ]
        try:
            async with AsyncClient(coordinator.address) as client:
                # Work an interrupted earlier run left behind is not this run's to finish.
                leftovers = await client.list([pb.JOB_STATE_QUEUED, pb.JOB_STATE_LEASED], 10_000)
                for job in leftovers:
                    await client.cancel(job.id)
                yield client
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                await process.wait()


async def cmd_render(args: argparse.Namespace) -> int:
    """All in one: an embedded coordinator on SQLite, local agents as separate processes."""
    out_dir: Path = args.out  # resolved by the parser
    fill_duration(args)
    spec = spec_from_args(args, out_dir.as_uri())
    rows = read_rows(args.variants, args.row_key) if args.variants else None
    async with local_farm(out_dir, args.agents, args.slots) as client:
        if rows is not None:
            batch = await client.submit_batch(spec, rows, Path(args.variants).stem)
            return finish_batch(await follow_batch(client, batch, not args.json), args.json)
        final = await follow(client, await client.submit(spec), not args.json)
    return finish(final, args.json)
