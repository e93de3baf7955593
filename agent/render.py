"""One render, in named stages: load the template, then capture and encode frame by frame
into the output upload. Capture and encode overlap; nothing waits for a whole file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.encoder import H264Encoder
from agent.sinks import open_upload
from agent.template_page import TemplatePage
from framefleet import jobspec
from framefleet.v1 import framefleet_pb2 as pb

log = logging.getLogger("framefleet.agent")

ProgressCallback = Callable[[int, int, float], None]  # frames done, total, fps


@dataclass
class RenderLimits:
    ready_timeout: float = 30.0
    frame_timeout: float = 10.0


@dataclass
class RenderResult:
    output_url: str
    output_bytes: int
    frames: int
    seconds: float
    # Per-stage wall time: load, capture (seek + screenshot), encode_wait, finish.
    stages: dict[str, float] = field(default_factory=dict)


async def render(
    assign: pb.Assign,
    page: TemplatePage,
    limits: RenderLimits,
    on_progress: ProgressCallback,
) -> RenderResult:
    spec = assign.spec
    output = jobspec.resolve_output(spec.output)
    stages = dict.fromkeys(("load", "capture", "encode_wait", "finish"), 0.0)
    started = mark = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[stage] += now - mark
        mark = now

    await page.load(
        spec.template,
        jobspec.params_dict(spec.params),
        output.width,
        output.height,
        limits.ready_timeout,
    )
    lap("load")
    upload = open_upload(assign.output_url)
    encoder = H264Encoder(output, upload.write)
    try:
        capture_started = time.perf_counter()
        for n in range(output.frames):
            image = await page.frame(n * 1000.0 / output.fps, limits.frame_timeout)
            lap("capture")
            await encoder.put(image)
            lap("encode_wait")
            elapsed = time.perf_counter() - capture_started
            on_progress(n + 1, output.frames, (n + 1) / elapsed if elapsed > 0 else 0.0)
        size = await encoder.finish()
        await upload.complete()
        lap("finish")
    except BaseException:
        await encoder.abort()
        await upload.abort()
        raise
    seconds = time.perf_counter() - started
    return RenderResult(assign.output_url, size, output.frames, seconds, stages)
