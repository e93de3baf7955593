"""One render, in named stages: load the template, then capture and encode frame by frame
into the output upload. Capture and encode overlap; nothing waits for a whole file."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from agent import hf_quality, hls, soundtrack
from agent.file_encoders import open_encoder
from agent.sources import page_input
from agent.template_page import TemplatePage
from agent.video_clips import VideoClips
from framefleet.core import jobspec
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.telemetry import tracer
from framefleet.v1 import framefleet_pb2 as pb
from outputs import Upload, open_upload

log = logging.getLogger("framefleet.agent")

ProgressCallback = Callable[[int, int, float, str], None]  # frames done, total, fps, upload id


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
    # Per-stage wall time: load (or swap, for a warm page), capture (seek + screenshot),
    # encode_wait, finish.
    stages: dict[str, float] = field(default_factory=dict)
    # Frames that repeated the previous picture (not captured again, nor decoded again).
    frames_reused: int = 0


async def own_frames(page: TemplatePage, output: jobspec.Output) -> int:
    """A HyperFrames composition's own length, less a partial render's start."""
    frames = await page.composition_frames(output.fps) - output.start_frame
    if frames < 1:
        message = f"the start, frame {output.start_frame}, is past the composition's end"
        raise FramefleetError(ErrorClass.INVALID_JOB, message)
    return frames


async def render(
    assign: pb.Assign,
    page: TemplatePage,
    limits: RenderLimits,
    on_progress: ProgressCallback,
) -> RenderResult:
    spec = assign.spec
    output = jobspec.resolve_output(spec.output, open_length=jobspec.open_length(spec))
    stages = dict.fromkeys(("load", "swap", "capture", "encode_wait", "finish"), 0.0)
    started = mark = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[stage] += now - mark
        mark = now

    # WebM, ProRes 4444: a transparent background; HyperFrames' quality names: its JPEG quality.
    await page.set_capture(jobspec.has_alpha(output), hf_quality.jpeg_quality(output.quality))
    template, params = page_input(spec)  # e.g. a VideoJSON job: a shell page
    with tracer.start_as_current_span("load_template") as span:
        swapped = await page.load(
            template,
            params,
            output.page_size,
            limits.ready_timeout,
            assign.source_key,
            output.scale,
        )
        span.set_attribute("framefleet.page.swapped", swapped)
    lap("swap" if swapped else "load")
    if page.unresolved_fonts:  # HyperFrames warns too, and draws them with the browser's fallback
        log.warning(
            "fonts not resolved: drawn with Chromium's fallback face",
            extra={"job_id": assign.lease.job_id, "families": page.unresolved_fonts},
        )
    if not output.frames:  # a HyperFrames composition's own length, now that it has loaded
        output = replace(output, frames=await own_frames(page, output))
    start = output.start_frame  # a partial render: frame n shows the source's frame start + n
    clips = soundtrack.shifted(
        soundtrack.clips_from_page(await page.sound_clips()), start / output.fps
    )
    sound = None
    if clips:
        with tracer.start_as_current_span("mix_soundtrack") as span:
            span.set_attribute("framefleet.sound.clips", len(clips))
            seconds = output.frames / output.fps
            from agent.sound_samples import mix  # numpy: only a render with sound loads it

            sound = await asyncio.to_thread(mix, clips, template.assets, seconds)
        lap("load")
    # A chunk renders frames [first, end) of the video; the page seeks straight to the first
    # (virtual time), and its encoder gives those frames the bytes they have in the whole video.
    first, end = assign.first_frame, assign.end_frame or output.frames
    videos = await VideoClips.attach(page, template)  # after the sound: they lose their src
    # HLS: segments under the playlist's prefix, each uploaded as it completes (agent/hls.py).
    upload: Upload = (
        hls.SegmentedUpload(assign.output_url, output.frames, output.fps)
        if output.format == "hls"
        else open_upload(assign.output_url)
    )
    encoder = open_encoder(
        output,
        upload.write,
        page.image_codec,
        soundtrack=sound,
        first_frame=first,
        end_frame=assign.end_frame,
    )
    frames = end - first
    try:
        # One span for all frames (not one per frame), with the count and rate.
        with tracer.start_as_current_span("capture_encode") as span:
            capture_started = time.perf_counter()
            for n in range(first, end):
                await videos.draw((start + n) / output.fps)
                image = await page.frame((start + n) * 1000.0 / output.fps, limits.frame_timeout)
                lap("capture")
                await encoder.put(image)
                lap("encode_wait")
                elapsed = time.perf_counter() - capture_started
                done = n + 1 - first
                fps = done / elapsed if elapsed > 0 else 0.0
                on_progress(done, frames, fps, upload.upload_id)
            page.raise_if_broken()  # e.g. a popup opened while the last frame was drawn
            span.set_attributes(
                {
                    "framefleet.frames": frames,
                    "framefleet.first_frame": first,
                    "framefleet.fps": frames / max(elapsed, 1e-9),
                    "framefleet.capture_seconds": stages["capture"],
                    "framefleet.encode_wait_seconds": stages["encode_wait"],
                    "framefleet.frames_reused": page.frames_reused,
                    "framefleet.capture_mode": "beginframe" if page.begin_frames else "screenshot",
                }
            )
        with tracer.start_as_current_span("complete_output") as span:
            size = await encoder.finish()
            await upload.complete()
            if isinstance(upload, hls.SegmentedUpload):
                size = upload.size  # the whole set's, as the cache check sizes it
            span.set_attribute("framefleet.output.bytes", size)
        lap("finish")
    except BaseException:
        videos.close()
        try:
            await encoder.abort()
        finally:
            # Even if this task is cancelled again meanwhile: nothing half-written may remain.
            await upload.abort()
        raise
    videos.close()
    seconds = time.perf_counter() - started
    return RenderResult(assign.output_url, size, frames, seconds, stages, page.frames_reused)
