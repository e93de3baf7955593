"""An agent that keeps going: pages recycled under a long run with flat memory, and a crashed
browser, or the Playwright driver its Chromiums share, replaced while the job is retried."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
from pathlib import Path

import pytest

from framefleet import AsyncClient, template_job
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses
from tests.process_tree import descendants, name, rss_bytes
from tests.video import decode, is_colour, path_of

pytestmark = pytest.mark.e2e

VARIANTS = 300


def start(tmp_path: Path, *agent_options: str) -> FarmProcesses:
    farm = FarmProcesses(tmp_path)
    farm.start_coordinator(
        f"sqlite:///{tmp_path}/jobs.db",
        tmp_path / "out",
        "--lease-ttl",
        "5",
        "--heartbeat-interval",
        "0.5",
        "--retry-base",
        "0.2",
    )
    farm.start_agent("agent", "--slots", "1", *agent_options)
    return farm


async def test_several_hundred_variants_with_recycling_keep_memory_flat(tmp_path: Path) -> None:
    farm = start(tmp_path, "--page-renders", "60")
    agent = farm.processes[-1]
    samples: list[int] = []
    try:
        spec = template_job(TEMPLATES / "solid.html", width=64, height=64, fps=10, frames=3)
        rows = [
            (f"v{n}", {"color": f"rgb({n % 256}, {(7 * n) % 256}, 90)"}) for n in range(VARIANTS)
        ]
        async with AsyncClient(farm.address) as client:
            batch = await client.submit_batch(spec, rows, name="soak")
            waiting = asyncio.create_task(client.wait_batch(batch.id))
            while not waiting.done():
                samples.append(rss_bytes(agent.popen.pid))
                await asyncio.sleep(0.25)
            final = await waiting
            jobs = {j.row_key: j for j in await client.list(limit=VARIANTS) if j.batch_id}
    finally:
        farm.close()
    assert final.succeeded == VARIANTS
    for n in (0, VARIANTS // 2, VARIANTS - 1):
        frames = decode(path_of(jobs[f"v{n}"].output_url))
        assert is_colour(frames[1][32, 32], (n % 256, (7 * n) % 256, 90))
    log = agent.log.read_text()
    assert log.count("recycling page") >= VARIANTS // 60 - 1
    quarter = len(samples) // 4
    early = statistics.median(samples[quarter : 2 * quarter])
    late = statistics.median(samples[3 * quarter :])
    grew = f"memory grew: {early / 2**20:.0f} -> {late / 2**20:.0f} MiB"
    assert late < early * 1.25 + 30 * 2**20, grew


@pytest.mark.parametrize(
    ("killed", "logged"),
    [("chrom", "Chromium died; relaunching"), ("node", "Playwright's driver is gone")],
)
async def test_a_crashed_browser_or_driver_is_replaced_and_the_job_retried(
    tmp_path: Path, killed: str, logged: str
) -> None:
    farm = start(tmp_path, "--slots", "2")
    agent = farm.processes[-1]
    try:
        async with AsyncClient(farm.address) as client:
            job = await client.submit(
                template_job(
                    TEMPLATES / "solid.html",
                    {"color": "rgb(0,90,200)"},
                    width=64,
                    height=64,
                    fps=30,
                    frames=300,
                    chunks=1,
                )
            )
            async for update in client.watch(job.id):
                if update.job.frames_done > 10:
                    break
            drivers = [p for p in descendants(agent.popen.pid) if name(p).startswith("node")]
            assert len(drivers) == 1, "one Playwright driver for the agent's two Chromiums"
            victims = [p for p in descendants(agent.popen.pid) if killed in name(p)]
            assert victims, f"no {killed} process under the agent"
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            done = await client.wait(job.id)
            assert (done.state, done.attempt) == (pb.JOB_STATE_SUCCEEDED, 2)
            assert len(decode(path_of(done.output_url))) == 300
            after = await client.wait(
                (
                    await client.submit(
                        template_job(
                            TEMPLATES / "solid.html",
                            {"color": "red"},
                            width=64,
                            height=64,
                            fps=10,
                            frames=3,
                        )
                    )
                ).id
            )
            assert after.state == pb.JOB_STATE_SUCCEEDED
        assert agent.alive()
        assert logged in agent.log.read_text()
    finally:
        farm.close()
