"""Frames match HyperFrames: compositions of our own (tests/hyperframes/), rendered once with the
real HyperFrames CLI (tests/hyperframes/README.md has the command and version), key frames kept
as PNG; here each is rendered through the farm (SDK, coordinator, agent processes, MP4) and
compared by PSNR.

Threshold: 32 dB on every key frame. Both sides are H.264 4:2:0 encodes of the same picture
(HyperFrames at CRF 16, framefleet here at CRF 16), so identical drawing lands around 40 dB or
more, limited by chroma subsampling on hard colour edges; a clip shown in the wrong window, a
box a few pixels off (motion one frame early or late moves it 3.3 px) or a missing nested
composition costs whole blocks of the frame and falls far below 30 dB."""

from __future__ import annotations

import asyncio
import math
import shutil
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import pytest

from framefleet import AsyncClient
from framefleet.core import jobspec
from tests.farm_processes import FarmProcesses
from tests.video import Frame, decode, path_of

pytestmark = pytest.mark.e2e

PROJECTS = Path(__file__).parent / "hyperframes"
GOLDEN = PROJECTS / "golden"
MIN_PSNR = 32.0
# The variables the golden render was given (--variables), by project.
VARIABLES: dict[str, dict[str, Any]] = {
    "variables": {"wide": True, "accent": "rgb(0, 0, 255)", "title": "Ada"}
}


def psnr(a: Frame, b: Frame) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def png(path: Path) -> Frame:
    with av.open(str(path)) as container:
        return cast(Frame, next(container.decode(video=0)).to_ndarray(format="rgb24"))


async def test_key_frames_match_the_hyperframes_render(farm: FarmProcesses, tmp_path: Path) -> None:
    names = sorted({p.name.split("-")[0] for p in GOLDEN.glob("*.png")})
    assert names == ["clips", "motion", "nested", "variables"]
    async with AsyncClient(farm.address) as client:
        jobs = {}
        for name in names:
            folder = tmp_path / name
            shutil.copytree(PROJECTS / name, folder)
            shutil.copy(PROJECTS / "gsap.min.js", folder)
            spec = jobspec.template_job(folder, VARIABLES.get(name), crf=16)
            jobs[name] = await client.submit(spec)
        done = await asyncio.gather(*(client.wait(job.id) for job in jobs.values()))
    scores = {}
    for name, job in zip(jobs, done, strict=True):
        frames = decode(path_of(job.output_url))
        for key in sorted(GOLDEN.glob(f"{name}-*.png")):
            index = int(key.stem.split("-")[1])
            scores[key.stem] = psnr(frames[index], png(key))
    low = {k: round(v, 1) for k, v in scores.items() if v < MIN_PSNR}
    assert not low, f"key frames below {MIN_PSNR} dB: {low} (all: {scores})"
