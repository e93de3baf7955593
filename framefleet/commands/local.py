"""``framefleet render``: an embedded coordinator on SQLite and local agent processes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from framefleet import outputs
from framefleet.cli import fill_duration, finish, finish_batch, follow, follow_batch, spec_from_args
from framefleet.client import AsyncClient
from framefleet.core.channel import TLS_CA_ENV, TOKEN_ENV
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.variants import read_rows
from framefleet.outputs.local import local_path
from framefleet.v1 import framefleet_pb2 as pb

if TYPE_CHECKING:
    from framefleet.coordinator.farm import Farm

# How long `render` waits for its agents to connect before it submits (they start Chromium).
AGENTS_CONNECT_SECONDS = 30.0


def _agent_command(
    coordinator: str, agent_id: str, slots: int | None, destination: str
) -> list[str]:
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
        # Stopped by this process, not by a spot notice: exit soon on Ctrl-C.
        "--drain-grace",
        "2",
        "--spot-notice-url",
        "off",
        # It writes this run's destination and nothing else.
        "--output-root",
        destination,
    ]
    return command + (["--slots", str(slots)] if slots else [])


@contextlib.asynccontextmanager
async def local_farm(
    destination: str, agents: int, slots: int | None
) -> AsyncIterator[AsyncClient]:
    """An embedded coordinator on SQLite and local agents as separate processes, stopped
    (drained) on exit. The job table stays in OUT/.framefleet/, so a rerun into the same
    directory finds what is already rendered and renders only what is missing."""
    from framefleet.coordinator.config import CoordinatorConfig
    from framefleet.coordinator.server import running_coordinator

    state = state_dir(destination)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with _held_port() as port:
        address = f"127.0.0.1:{port}"
        # The agents start first: importing and launching Chromium takes them longer than the
        # coordinator takes to listen, so they connect at once instead of after it.
        host = socket.gethostname()
        processes = [
            _start_agent(address, f"{host}-local-{i}", slots, destination, logs / f"agent-{i}.log")
            for i in range(agents)
        ]
        config = CoordinatorConfig(
            listen=address,
            store_url=f"sqlite:///{state}/jobs.db",
            default_destination=destination,
            lease_ttl=10.0,
            heartbeat_interval=2.0,
        )
        started = False
        try:
            async with running_coordinator(config) as coordinator:
                started = True
                try:
                    async with (
                        _unless_all_exit(processes),
                        AsyncClient(address, tls=None, token="") as client,
                    ):
                        # Work an interrupted earlier run left behind is not this run's.
                        leftovers = await client.list(
                            [pb.JOB_STATE_QUEUED, pb.JOB_STATE_LEASED], 10_000
                        )
                        for job in leftovers:
                            await client.cancel(job.id)
                        await _connected(coordinator.farm, agents)
                        yield client
                finally:
                    await _stop(processes, logs)  # they drain while the coordinator listens
        finally:
            if not started:
                await _stop(processes, logs)


@contextlib.contextmanager
def _held_port() -> Iterator[int]:
    """A loopback port held (bound, not listening, SO_REUSEPORT as gRPC binds) until the
    coordinator listens on it too, so the agents can be told the address before it starts
    and nothing else takes the port meanwhile."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def _start_agent(
    address: str, agent_id: str, slots: int | None, destination: str, log: Path
) -> subprocess.Popen[bytes]:
    # subprocess.Popen (vfork) rather than the event loop's spawn (fork): a fork while gRPC
    # threads run makes gRPC print a warning. An agent logs to a file, so nothing it prints
    # lands in the progress bar. Private and plaintext on loopback: a TLS CA or token meant
    # for a remote farm must not leak into the embedded one.
    env = {k: v for k, v in os.environ.items() if k not in (TLS_CA_ENV, TOKEN_ENV)}
    return subprocess.Popen(
        _agent_command(address, agent_id, slots, destination),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=env,
    )


@contextlib.asynccontextmanager
async def _unless_all_exit(processes: list[subprocess.Popen[bytes]]) -> AsyncIterator[None]:
    """Runs the body unless every agent exits first: then a clear error, not a wait."""
    task = asyncio.current_task()
    assert task is not None
    watchdog = asyncio.create_task(_cancel_when_all_exit(processes, task))
    try:
        yield
    except asyncio.CancelledError:
        if not watchdog.done():
            raise
        task.uncancel()
        raise FramefleetError(
            ErrorClass.INTERNAL, "the local agents exited before the work was done"
        ) from None
    finally:
        watchdog.cancel()


async def _stop(processes: list[subprocess.Popen[bytes]], logs: Path) -> None:
    """SIGTERM (a drain) to the agents still running, and their logs shown if they failed."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for i, process in enumerate(processes):
        if await asyncio.to_thread(process.wait) not in (0, -signal.SIGTERM):
            _show_log(logs / f"agent-{i}.log")


async def _connected(farm: Farm, agents: int) -> None:
    """Until the local agents have connected (or AGENTS_CONNECT_SECONDS passed): a long video
    is split by the slots free at submit, and nothing renders before they connect anyway."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(AGENTS_CONNECT_SECONDS):
            await farm.wait_for_agents(agents)


async def _cancel_when_all_exit(
    processes: list[subprocess.Popen[bytes]], task: asyncio.Task[object]
) -> None:
    """Every local agent gone: stop waiting for a render that will never come (their logs
    say why)."""
    await asyncio.gather(*(asyncio.to_thread(p.wait) for p in processes))
    task.cancel()


def _show_log(path: Path, lines: int = 20) -> None:
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    print(f"--- {path} (last {len(tail)} lines)", *tail, sep="\n", file=sys.stderr)


def state_dir(destination: str) -> Path:
    """Where the local job table and agent logs live: OUT/.framefleet for a local directory;
    for a remote destination, a directory of its own in the user's cache."""
    if destination.startswith("file://"):
        return local_path(destination) / ".framefleet"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "framefleet" / "render" / hashlib.sha256(destination.encode()).hexdigest()[:16]


async def cmd_render(args: argparse.Namespace) -> int:
    """All in one: an embedded coordinator on SQLite, local agents as separate processes."""
    destination: str = args.out  # a URL, checked by the parser
    fill_duration(args)
    spec = spec_from_args(args, destination)
    rows = read_rows(args.variants, args.row_key) if args.variants else None
    try:
        await outputs.check(destination)  # before anything starts, not after the render
    except FramefleetError as e:
        raise FramefleetError(ErrorClass.INVALID_JOB, e.args[0]) from None
    async with local_farm(destination, args.agents, args.slots) as client:
        if rows is not None:
            batch = await client.submit_batch(spec, rows, Path(args.variants).stem)
            return finish_batch(await follow_batch(client, batch, not args.json), args.json)
        final = await follow(client, await client.submit(spec), not args.json)
    return finish(final, args.json)
