"""Chaos: 60 short jobs over 3 agent processes while agents are killed at random (and
restarted) and the coordinator is killed once. Every job must end succeeded exactly once: one
recorded completion, one valid output. Runs against both stores."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from pathlib import Path

import pytest

from framefleet import AsyncClient, template_job
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, Process
from tests.postgres_server import PostgresServer
from tests.video import decode, is_colour, path_of

pytestmark = pytest.mark.e2e

JOBS, AGENTS, FRAMES = 60, 3, 12
COORDINATOR_OPTIONS = ("--lease-ttl", "2", "--heartbeat-interval", "0.4", "--retry-base", "0.1")


def colour(n: int) -> tuple[int, int, int]:
    return (40 + 3 * n, 255 - 3 * n, (n * 37) % 256)


def chaos_job(n: int) -> pb.JobSpec:
    spec = template_job(
        TEMPLATES / "solid.html",
        {"color": "rgb({},{},{})".format(*colour(n))},
        width=64,
        height=64,
        fps=10,
        frames=FRAMES,
    )
    # A job may be on an agent that is killed more than once: losing nothing is the point
    # here, not the retry budget.
    spec.max_attempts = 10
    return spec


def completions(log: Path) -> dict[str, int]:
    """Recorded completions per job, from the coordinators' structured logs."""
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "job succeeded":
                counts[entry["job_id"]] = counts.get(entry["job_id"], 0) + 1
    return counts


async def rendering_agent(address: str, names: list[str], rng: random.Random) -> str | None:
    """One of ``names`` that holds a lease right now (waits up to a minute for one), or None
    when no job is left to lease."""
    async with AsyncClient(address) as client, asyncio.timeout(60):
        while True:
            leased = await client.list([pb.JOB_STATE_LEASED], JOBS)
            holders = sorted({job.agent_id for job in leased} & set(names))
            if holders:
                return rng.choice(holders)
            if not await client.list([pb.JOB_STATE_QUEUED], 1) and not leased:
                return None
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_chaos_loses_nothing_and_runs_nothing_twice(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store == "sqlite":
        url = f"sqlite:///{tmp_path}/jobs.db"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = await postgres.create_database()
    rng = random.Random(7)
    farm = FarmProcesses(tmp_path)
    try:
        coordinator = farm.start_coordinator(url, tmp_path / "out", *COORDINATOR_OPTIONS)
        address = farm.address
        agents: dict[str, Process] = {
            f"chaos-{n}": farm.start_agent(f"chaos-{n}", "--slots", "1") for n in range(AGENTS)
        }
        async with AsyncClient(address) as client:
            ids = []
            for n in range(JOBS):
                ids.append((await client.submit(chaos_job(n))).id)

        # Eight times, kill an agent that is rendering (restarting it under the same id), after
        # a random pause; the coordinator is killed once too. Waiting for a lease, not a clock,
        # makes every kill land mid-job however slowly the agents start.
        for round_ in range(8):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            name = await rendering_agent(address, sorted(agents), rng)
            if name is None:
                break  # everything has ended already
            agents[name].signal(signal.SIGKILL)
            agents[name].popen.wait()
            if round_ == 3:
                coordinator.signal(signal.SIGKILL)
                coordinator.popen.wait()
                await asyncio.sleep(0.5)
                coordinator = farm.start_coordinator(
                    url, tmp_path / "out", *COORDINATOR_OPTIONS, listen=address
                )
            agents[name] = farm.start_agent(name, "--slots", "1")

        async with AsyncClient(address) as client:
            async with asyncio.timeout(180):
                finals = [await client.wait(job_id) for job_id in ids]
    finally:
        farm.close()

    assert all(job.state == pb.JOB_STATE_SUCCEEDED for job in finals)
    assert any(job.attempt > 1 for job in finals), "the chaos never hit a render"
    recorded = completions(tmp_path / "logs" / "coordinator.log")
    assert recorded == dict.fromkeys(ids, 1), "a job was lost or completed twice"
    outputs = {path_of(job.output_url) for job in finals}
    assert len(outputs) == JOBS
    for n, job in enumerate(finals):
        frames = decode(path_of(job.output_url))
        assert len(frames) == FRAMES, f"job {n} output is incomplete"
        assert is_colour(frames[-1][32, 32], colour(n)), f"job {n} has another job's pixels"
    visible = {p for p in (tmp_path / "out").rglob("*.mp4") if not p.name.startswith(".")}
    assert visible == outputs, "an output nobody recorded is visible"


async def test_two_coordinators_share_one_postgres_table(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """Jobs submitted to either coordinator run once each, on agents of either."""
    url = await postgres.create_database()
    farm = FarmProcesses(tmp_path)
    try:
        addresses = []
        for n in range(2):
            farm.start_coordinator(url, tmp_path / "out", *COORDINATOR_OPTIONS)
            addresses.append(farm.address)
            farm.start_agent(f"behind-{n}", "--slots", "1")
        ids = []
        for n in range(30):
            async with AsyncClient(addresses[n % 2]) as client:
                ids.append((await client.submit(chaos_job(n))).id)
        async with AsyncClient(addresses[0]) as client, asyncio.timeout(120):
            finals = [await client.wait(job_id) for job_id in ids]
    finally:
        farm.close()
    assert all(job.state == pb.JOB_STATE_SUCCEEDED and job.attempt == 1 for job in finals)
    assert {job.agent_id for job in finals} == {"behind-0", "behind-1"}
    assert completions(tmp_path / "logs" / "coordinator.log") == dict.fromkeys(ids, 1)
