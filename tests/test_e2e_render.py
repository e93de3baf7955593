"""End to end: a coordinator and two agents as separate processes, jobs through the SDK, and
the MP4s checked by decoding them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest

from framefleet import AsyncClient, ErrorClass, FramefleetError, template_job
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses
from tests.video import decode, is_colour, path_of

pytestmark = pytest.mark.e2e

RED, GREEN, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 0)


async def collect(updates: AsyncIterator[pb.WatchJobResponse]) -> list[pb.WatchJobResponse]:
    return [u async for u in updates]


def box_job(color: str = "rgb(0, 0, 255)", **kwargs: object) -> pb.JobSpec:
    options: dict[str, object] = {"width": 320, "height": 240, "fps": 30, "frames": 30}
    options.update(kwargs)
    return template_job(TEMPLATES / "moving_box.html", {"color": color}, **options)  # type: ignore[arg-type]


async def test_render_has_the_pixels_the_template_draws(farm: FarmProcesses) -> None:
    async with AsyncClient(farm.address) as client:
        job = await client.submit(box_job())
        done = await client.wait(job.id)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert done.frames_done == done.frames_total == 30
    path = path_of(done.output_url)
    assert path.stat().st_size == done.output_bytes > 0
    assert done.content_key in path.name
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 320, 240)
        assert stream.average_rate == 30
    frames = decode(path)
    assert len(frames) == 30
    for n in (0, 7, 15, 25):
        frame = frames[n]
        css_left, raf_left = 10 * n, 6 * n  # the template's speeds: 10 and 6 px per frame
        assert is_colour(frame[40, css_left + 20], RED), f"CSS box at frame {n}"
        assert is_colour(frame[40, css_left + 50], BLACK), f"right of CSS box at frame {n}"
        if n:
            assert is_colour(frame[40, css_left - 10], BLACK), f"left of CSS box at frame {n}"
        assert is_colour(frame[120, raf_left + 20], GREEN), f"rAF box at frame {n}"
        assert is_colour(frame[120, raf_left + 50], BLACK), f"right of rAF box at frame {n}"
        assert is_colour(frame[190, 30], (0, 0, 255)), f"parameter colour at frame {n}"


async def test_same_job_twice_gives_identical_bytes(farm: FarmProcesses, tmp_path: Path) -> None:
    # Same content, two destinations: the content key ignores where the output goes.
    specs = [box_job("rgb(200, 100, 0)", destination=str(tmp_path / d)) for d in ("a", "b")]
    async with AsyncClient(farm.address) as client:
        jobs = [await client.submit(spec) for spec in specs]
        done = await asyncio.gather(*(client.wait(j.id) for j in jobs))
    assert done[0].content_key == done[1].content_key
    first, second = (path_of(j.output_url).read_bytes() for j in done)
    assert first == second
    assert is_colour(decode(path_of(done[0].output_url))[10][190, 30], (200, 100, 0))


async def test_jobs_spread_over_both_agents_with_progress(farm: FarmProcesses) -> None:
    async with AsyncClient(farm.address) as client:
        jobs = [await client.submit(box_job(f"rgb({i}, 0, 0)", frames=90)) for i in (10, 20)]
        updates = await asyncio.gather(*(collect(client.watch(j.id)) for j in jobs))
    for job_updates in updates:
        final = job_updates[-1].job
        assert final.state == pb.JOB_STATE_SUCCEEDED
        progress = [u.job.frames_done for u in job_updates if u.job.state == pb.JOB_STATE_LEASED]
        assert progress == sorted(progress)
        assert any(0 < p < 90 for p in progress), "no per-frame progress was streamed"
    assert {u[-1].job.agent_id for u in updates} == {"agent-1", "agent-2"}


async def test_hyperframes_convention_template(farm: FarmProcesses) -> None:
    spec = template_job(
        TEMPLATES / "hyperframes.html",
        {"color": "rgb(0, 200, 200)"},
        width=64,
        height=64,
        fps=10,
        frames=3,
    )
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    assert all(is_colour(f[32, 32], (0, 200, 200)) for f in decode(path_of(done.output_url)))


@pytest.mark.parametrize(
    ("template", "error_class"),
    [
        ("throws.html", ErrorClass.TEMPLATE_SCRIPT_ERROR),
        ("never_ready.html", ErrorClass.TEMPLATE_READY_TIMEOUT),
    ],
)
async def test_broken_template_fails_once_and_harms_nothing(
    farm: FarmProcesses, template: str, error_class: ErrorClass
) -> None:
    broken = template_job(TEMPLATES / template, width=64, height=64, fps=10, frames=3)
    async with AsyncClient(farm.address) as client:
        bad = await client.submit(broken)
        good = await client.submit(box_job(frames=5))
        with pytest.raises(FramefleetError) as failure:
            await client.wait(bad.id)
        final = await client.get(bad.id)
        assert (await client.wait(good.id)).state == pb.JOB_STATE_SUCCEEDED
    assert failure.value.error_class == error_class
    assert final.state == pb.JOB_STATE_FAILED
    assert final.error_class == error_class
    assert final.attempt == 1, "a broken template must not burn retries"
    assert all(p.alive() for p in farm.processes)


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (pb.OutputSettings(width=321, height=240, fps=30, frames=10), "odd"),
        (pb.OutputSettings(width=8000, height=240, fps=30, frames=10), "outside"),
        (pb.OutputSettings(width=320, height=240, fps=30), "duration"),
        (pb.OutputSettings(width=320, height=240, fps=30, duration_seconds=86400), "longer"),
        (pb.OutputSettings(width=320, height=240, fps=30, frames=10, preset="ludicrous"), "preset"),
    ],
)
async def test_bad_output_settings_are_refused_at_submit(
    farm: FarmProcesses, output: pb.OutputSettings, reason: str
) -> None:
    spec = box_job()
    spec.output.CopyFrom(output)
    async with AsyncClient(farm.address) as client:
        before = {job.id for job in await client.list()}
        with pytest.raises(FramefleetError) as refused:
            await client.submit(spec)
        assert reason in str(refused.value)
        assert refused.value.error_class == ErrorClass.INVALID_JOB
        # Nothing was queued: the newest jobs are the ones there were before.
        assert {job.id for job in await client.list()} == before


async def test_cancel_stops_a_render(farm: FarmProcesses) -> None:
    async with AsyncClient(farm.address) as client:
        job = await client.submit(box_job(frames=900))
        async for update in client.watch(job.id):
            if update.job.frames_done > 0:
                break
        cancelled = await client.cancel(job.id)
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        with pytest.raises(FramefleetError):
            await client.wait(job.id)
        # The agent drops the job and takes the next one.
        after = await client.wait((await client.submit(box_job(frames=3))).id)
    assert after.state == pb.JOB_STATE_SUCCEEDED
    out = path_of(after.output_url).parents[2]
    assert not list(out.rglob(f"*{job.content_key}*")), "a cancelled render left output behind"


async def test_result_cache_and_identical_jobs_in_flight(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    def spec(force: bool = False) -> pb.JobSpec:
        job = box_job("rgb(10, 200, 30)", frames=45, destination=str(tmp_path))
        job.force = force
        return job

    async with AsyncClient(farm.address) as client:
        # Three identical jobs at once: one render, three successes with one output.
        jobs = [await client.submit(spec()) for _ in range(3)]
        done = await asyncio.gather(*(client.wait(j.id) for j in jobs))
        assert len({j.output_url for j in done}) == 1
        assert sorted(j.cache_hit for j in done) == [False, True, True]
        assert sum(j.attempt for j in done) == 1, "identical jobs in flight rendered twice"
        output = path_of(done[0].output_url)
        rendered = output.stat().st_mtime_ns

        # Submitted again later: done at once from the cache, no agent involved.
        hit = await client.submit(spec())
        assert hit.state == pb.JOB_STATE_SUCCEEDED
        assert (hit.cache_hit, hit.attempt, hit.agent_id) == (True, 0, "")
        assert hit.output_url == done[0].output_url
        assert output.stat().st_mtime_ns == rendered

        # force renders again, to the same bytes.
        before = output.read_bytes()
        forced = await client.wait((await client.submit(spec(force=True))).id)
        assert (forced.cache_hit, forced.attempt) == (False, 1)
        assert output.stat().st_mtime_ns != rendered
        assert output.read_bytes() == before
