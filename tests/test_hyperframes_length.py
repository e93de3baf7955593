"""A HyperFrames composition whose root has no data-duration takes its length as HyperFrames
does: from its root timeline, or from its last timed clip when that ends later. Rendered
through the farm (the length is only known once the page has loaded) and by `framefleet
render`, and refused loudly when nothing gives a length."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from framefleet import AsyncClient
from framefleet.cli import fill_duration
from framefleet.client import JobFailed
from framefleet.core import jobspec
from tests.farm_processes import FarmProcesses, framefleet
from tests.test_hyperframes import GSAP
from tests.test_soundtrack import write_tone
from tests.video import decode, path_of

pytestmark = pytest.mark.e2e

FPS = 20


def composition(folder: Path, body: str, script: str) -> Path:
    """A 160x120 composition at 20 fps whose root declares no duration."""
    folder.mkdir(parents=True)
    shutil.copy(GSAP, folder)
    (folder / "index.html").write_text(
        f"""<!doctype html><html><head><script src="gsap.min.js"></script>
<style>body {{ margin: 0; background: #000; }}</style></head><body>
<div id="root" data-composition-id="main" data-start="0" data-width="160" data-height="120"
 data-fps="{FPS}" style="position:relative;width:160px;height:120px">{body}</div>
<script>{script}</script></body></html>"""
    )
    return folder


TIMELINE = """const tl = gsap.timeline({paused: true});
tl.to("#box", {x: 100, duration: 1.5, ease: "none"});
window.__timelines = {main: tl};"""
BOX = '<div id="box" style="position:absolute;width:20px;height:20px;background:#f00"></div>'


def test_no_12_second_default_for_a_composition(tmp_path: Path) -> None:
    folder = composition(tmp_path / "c", BOX, TIMELINE)
    args = argparse.Namespace(template=str(folder), frames=None, duration=None)
    fill_duration(args)
    assert args.duration is None
    spec = jobspec.template_job(folder)
    assert jobspec.validate(spec).frames == 0, "its length is taken when it loads"
    plain = tmp_path / "plain.html"
    plain.write_text("<html><body>plain</body></html>")
    args = argparse.Namespace(template=str(plain), frames=None, duration=None)
    fill_duration(args)
    assert args.duration == 12.0


async def test_the_length_comes_from_the_timeline_or_a_later_clip(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    by_timeline = composition(tmp_path / "timeline", BOX, TIMELINE)
    # tone.wav is 2 s long: starting at 1 s, without data-duration, it ends at 3 s.
    by_clip = composition(
        tmp_path / "clip", BOX + '<audio src="tone.wav" data-start="1"></audio>', TIMELINE
    )
    write_tone(by_clip / "tone.wav")
    async with AsyncClient(farm.address) as client:
        first = await client.wait((await client.submit(jobspec.template_job(by_timeline))).id)
        second = await client.wait((await client.submit(jobspec.template_job(by_clip))).id)
        again = await client.wait((await client.submit(jobspec.template_job(by_timeline))).id)
    assert again.cache_hit and (again.frames_done, again.frames_total) == (30, 30)
    assert first.frames_total == 30 and len(decode(path_of(first.output_url))) == 30
    assert second.frames_total == 60 and len(decode(path_of(second.output_url))) == 60


async def test_a_composition_without_any_length_is_refused(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    folder = composition(tmp_path / "none", BOX, "")
    async with AsyncClient(farm.address) as client:
        job = await client.submit(jobspec.template_job(folder))
        with pytest.raises(JobFailed) as failed:
            await client.wait(job.id)
    assert failed.value.job.error_class == "TEMPLATE_UNSUPPORTED"
    assert "no data-duration" in failed.value.job.error_message
    assert failed.value.job.attempt == 1


def test_render_command_takes_the_timelines_length(tmp_path: Path) -> None:
    folder = composition(tmp_path / "cli", BOX, TIMELINE)
    result = subprocess.run(
        framefleet("render", str(folder), "--out", str(tmp_path / "out"), "--json"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames_total"] == 30
    (output,) = (tmp_path / "out").rglob("*.mp4")
    assert len(decode(output)) == 30
