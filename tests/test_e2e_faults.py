"""Lose nothing: agents killed, frozen, drained or interrupted, and the coordinator killed, with
every job still ending exactly once. Coordinator and agents are separate OS processes."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from framefleet import AsyncClient, ErrorClass, FramefleetError, template_job
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses, wait_until
from tests.video import decode, is_colour, path_of

pytestmark = pytest.mark.e2e

TTL, HEARTBEAT = 3.0, 0.5


def job(color: str, frames: int, **options: object) -> pb.JobSpec:
    settings: dict[str, object] = {"width": 160, "height": 240, "fps": 30, "frames": frames}
    settings.update(options)
    return template_job(TEMPLATES / "moving_box.html", {"color": color}, **settings)  # type: ignore[arg-type]


@pytest.fixture
def fresh_farm(tmp_path: Path) -> Iterator[FarmProcesses]:
    """A coordinator with a short lease TTL; each test starts the agents it needs."""
    farm = FarmProcesses(tmp_path)
    try:
        farm.start_coordinator(
            f"sqlite:///{tmp_path}/jobs.db",
            tmp_path / "out",
            "--lease-ttl",
            str(TTL),
            "--heartbeat-interval",
            str(HEARTBEAT),
            "--retry-base",
            "0.2",
        )
        yield farm
    finally:
        farm.close()


@pytest.fixture
async def client(fresh_farm: FarmProcesses) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(fresh_farm.address) as client:
        yield client


async def leased_to(client: AsyncClient, job_id: str) -> pb.Job:
    """Waits until the job is leased and has rendered a frame; returns it."""
    async with asyncio.timeout(30):
        async for update in client.watch(job_id):
            if update.job.state == pb.JOB_STATE_LEASED and update.job.frames_done > 0:
                return update.job
    raise AssertionError(f"job {job_id} ended before it was seen rendering")


def assert_output(done: pb.Job, color: tuple[int, int, int], frames: int) -> None:
    decoded = decode(path_of(done.output_url))
    assert len(decoded) == frames
    assert is_colour(decoded[-1][190, 30], color)


async def test_killed_agent_job_is_leased_again_and_completes(
    fresh_farm: FarmProcesses, client: AsyncClient
) -> None:
    victim = fresh_farm.start_agent("victim", "--slots", "1")
    submitted = await client.submit(job("rgb(0,0,255)", frames=240))
    first = await leased_to(client, submitted.id)
    assert first.agent_id == "victim"
    fresh_farm.start_agent("survivor", "--slots", "1")
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()

    async for update in client.watch(submitted.id):
        if update.job.state == pb.JOB_STATE_LEASED and update.job.agent_id == "survivor":
            break
    releasing = time.monotonic() - killed_at
    assert releasing < TTL + HEARTBEAT + 2.0, f"re-leased after {releasing:.1f}s"
    done = await client.wait(submitted.id)
    assert (done.agent_id, done.attempt) == ("survivor", 2)
    assert_output(done, (0, 0, 255), 240)


async def test_frozen_agent_is_fenced_and_discards_its_work(
    fresh_farm: FarmProcesses, client: AsyncClient
) -> None:
    frozen = fresh_farm.start_agent("frozen", "--slots", "1")
    submitted = await client.submit(job("rgb(255,0,255)", frames=150))
    await leased_to(client, submitted.id)
    frozen.signal(signal.SIGSTOP)
    try:
        fresh_farm.start_agent("taker", "--slots", "1")
        done = await client.wait(submitted.id)
        assert (done.agent_id, done.attempt) == ("taker", 2)
    finally:
        frozen.signal(signal.SIGCONT)
    output = path_of(done.output_url)
    winner = output.read_bytes()
    # The zombie wakes up to the coordinator's Cancel for its expired lease (or is refused
    # on its next heartbeat) and drops the job.
    dropped = f'"msg": "job dropped", "job_id": "{submitted.id}"'
    wait_until(lambda: dropped in frozen.log.read_text(), 15, "the zombie to drop its job")
    # Its render's cleanup (the abort of its upload) removes the partial file it was writing.
    wait_until(lambda: not list(output.parent.glob("*.partial")), 15, "the zombie's cleanup")
    final = await client.get(submitted.id)
    assert (final.state, final.agent_id, final.attempt) == (pb.JOB_STATE_SUCCEEDED, "taker", 2)
    assert output.read_bytes() == winner
    assert frozen.alive(), "fencing must stop the job, not the agent"


async def test_retryable_failures_back_off_then_dead_letter(
    fresh_farm: FarmProcesses, client: AsyncClient
) -> None:
    fresh_farm.start_agent("agent", "--slots", "1", "--frame-timeout", "0.5")
    spec = template_job(TEMPLATES / "slow_seek.html", width=64, height=64, fps=10, frames=3)
    spec.max_attempts = 3
    submitted = await client.submit(spec)
    attempts: list[tuple[int, float]] = []
    async for update in client.watch(submitted.id):
        if update.job.state == pb.JOB_STATE_LEASED and (
            not attempts or attempts[-1][0] != update.job.attempt
        ):
            attempts.append((update.job.attempt, time.monotonic()))
    with pytest.raises(FramefleetError) as failed:
        await client.wait(submitted.id)
    assert failed.value.error_class == ErrorClass.CAPTURE_TIMEOUT
    final = await client.get(submitted.id)
    assert (final.state, final.attempt) == (pb.JOB_STATE_FAILED, 3)
    assert [a for a, _ in attempts] == [1, 2, 3]
    dead = await client.list([pb.JOB_STATE_FAILED])
    assert [j.id for j in dead] == [submitted.id]
    # The agent survives a hung page and renders the next job.
    after = await client.wait((await client.submit(job("rgb(0,255,255)", frames=3))).id)
    assert after.state == pb.JOB_STATE_SUCCEEDED


async def test_sigterm_drains_and_hands_back_at_once(
    fresh_farm: FarmProcesses, client: AsyncClient
) -> None:
    draining = fresh_farm.start_agent("draining", "--slots", "1", "--drain-grace", "0.5")
    long = await client.submit(job("rgb(255,255,0)", frames=600))
    await leased_to(client, long.id)
    other = fresh_farm.start_agent("other", "--slots", "1")
    connected = '"msg": "connected"'
    wait_until(lambda: connected in other.log.read_text(), 30, "the other agent to connect")
    draining.signal(signal.SIGTERM)
    signalled = time.monotonic()
    async for update in client.watch(long.id):
        if update.job.state == pb.JOB_STATE_LEASED and update.job.agent_id == "other":
            break
    handed_back = time.monotonic() - signalled
    assert handed_back < TTL, f"requeued after {handed_back:.1f}s: waited for the TTL"
    assert draining.popen.wait(15) == 0, "a drained agent exits cleanly"
    done = await client.wait(long.id)
    assert (done.agent_id, done.attempt) == ("other", 1), "a hand-back spends no attempt"
    assert done.interruptions == 1, "but it counts as an interruption"


class SpotNotice(http.server.BaseHTTPRequestHandler):
    """The EC2 metadata document: 404 until an interruption is scheduled."""

    action: str | None = None

    def do_GET(self) -> None:
        if self.action is None:
            self.send_error(404)
            return
        body = json.dumps({"action": self.action, "time": "2026-11-23T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def test_spot_interruption_notice_drains_the_agent(
    fresh_farm: FarmProcesses, client: AsyncClient
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SpotNotice)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/latest/meta-data/spot/instance-action"
    try:
        spot = fresh_farm.start_agent(
            "spot",
            "--slots",
            "1",
            "--drain-grace",
            "0.5",
            "--spot-notice-url",
            url,
            "--spot-poll-interval",
            "0.2",
        )
        long = await client.submit(job("rgb(0,128,255)", frames=600))
        await leased_to(client, long.id)
        fresh_farm.start_agent("on-demand", "--slots", "1")
        SpotNotice.action = "terminate"
        assert spot.popen.wait(20) == 0
        assert "spot interruption" in spot.log.read_text()
        done = await client.wait(long.id)
        assert (done.agent_id, done.attempt, done.interruptions) == ("on-demand", 1, 1)
    finally:
        SpotNotice.action = None
        server.shutdown()


async def test_coordinator_killed_mid_render_loses_nothing(
    fresh_farm: FarmProcesses, tmp_path: Path
) -> None:
    fresh_farm.start_agent("steady", "--slots", "1")
    address = fresh_farm.address
    async with AsyncClient(address) as client:
        submitted = await client.submit(job("rgb(0,255,0)", frames=300))
        await leased_to(client, submitted.id)
    coordinator = fresh_farm.processes[0]
    coordinator.signal(signal.SIGKILL)
    coordinator.popen.wait()
    await asyncio.sleep(1.0)  # the agent keeps rendering while nobody listens
    fresh_farm.start_coordinator(
        f"sqlite:///{tmp_path}/jobs.db",
        tmp_path / "out",
        "--lease-ttl",
        str(TTL),
        "--heartbeat-interval",
        str(HEARTBEAT),
        listen=address,
    )
    async with AsyncClient(address) as client:
        done = await client.wait(submitted.id)
    assert (done.agent_id, done.attempt) == ("steady", 1), "the lease survived the restart"
    assert_output(done, (0, 255, 0), 300)
