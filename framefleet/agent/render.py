"""One render: the frame source (framefleet/agent/frame_source.py: the page, its video clips
and soundtrack) wired to the producer (framefleet/agent/producer.py: the encoder and the sink),
in traced, timed stages. Capture and encode overlap; nothing waits for a whole file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from framefleet.agent.frame_source import FrameSource
from framefleet.agent.limits import RenderLimits
from framefleet.agent.producer import Producer
from framefleet.agent.template_page import TemplatePage
from framefleet.core.telemetry import tracer
from framefleet.v1 import framefleet_pb2 as pb

ProgressCallback = Callable[[int, int, float, str], None]  # frames done, total, fps, upload id


@dataclass
class RenderResult:
    output_url: str
    output_bytes: int
    frames: int
    seconds: float
    # Per-stage wall time: load (or swap, for a warm page), capture (seek + screenshot),
    # encode_wait, finish.
    stages: dict[str, float] = field(default_factory=dict)
    # Frames that repeated the previous picture (not captured again, nor decoded again).
    frames_reused: int = 0


class StageClock:
    """Wall time per stage: each ``lap`` adds the time since the last one to its stage."""

    def __init__(self) -> None:
        self.stages = dict.fromkeys(("load", "swap", "capture", "encode_wait", "finish"), 0.0)
        self.started = self._mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] += now - self._mark
        self._mark = now


async def render(
    assign: pb.Assign,
    page: TemplatePage,
    limits: RenderLimits,
    on_progress: ProgressCallback,
) -> RenderResult:
    clock = StageClock()
    with tracer.start_as_current_span("load_template") as span:
        source = await FrameSource.load(assign, page, limits.ready_timeout)
        span.set_attribute("framefleet.page.swapped", source.swapped)
    clock.lap("swap" if source.swapped else "load")
    if source.clips:
        with tracer.start_as_current_span("mix_soundtrack") as span:
            span.set_attribute("framefleet.sound.clips", len(source.clips))
            await source.mix_sound()
        clock.lap("load")
    # A chunk renders frames [first, end) of the video; its encoder gives those frames the
    # bytes they have in the whole video.
    output = source.output
    first, end = assign.first_frame, assign.end_frame or output.frames
    producer = await Producer.open(
        output, assign.output_url, page.image_codec, source.sound, first, assign.end_frame
    )
    frames = end - first
    try:
        # One span for all frames (not one per frame), with the count and rate.
        with tracer.start_as_current_span("capture_encode") as span:
            capture_started = time.perf_counter()
            for n in range(first, end):
                image = await source.frame(n, limits.frame_timeout)
                clock.lap("capture")
                await producer.put(image)
                clock.lap("encode_wait")
                elapsed = time.perf_counter() - capture_started
                done = n + 1 - first
                fps = done / elapsed if elapsed > 0 else 0.0
                on_progress(done, frames, fps, producer.upload_id)
            page.raise_if_broken()  # e.g. a popup opened while the last frame was drawn
            span.set_attributes(
                {
                    "framefleet.frames": frames,
                    "framefleet.first_frame": first,
                    "framefleet.fps": frames / max(elapsed, 1e-9),
                    "framefleet.capture_seconds": clock.stages["capture"],
                    "framefleet.encode_wait_seconds": clock.stages["encode_wait"],
                    "framefleet.frames_reused": page.frames_reused,
                    "framefleet.capture_mode": "beginframe" if page.begin_frames else "screenshot",
                }
            )
        with tracer.start_as_current_span("complete_output") as span:
            size = await producer.finish()
            span.set_attribute("framefleet.output.bytes", size)
        clock.lap("finish")
    except BaseException:
        source.close()
        await producer.abort()
        raise
    source.close()
    seconds = time.perf_counter() - clock.started
    return RenderResult(assign.output_url, size, frames, seconds, clock.stages, page.frames_reused)
