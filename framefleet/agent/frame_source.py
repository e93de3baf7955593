"""The engine: a job's template loaded in a page, giving the output's frames one at a time (the
page seeked in virtual time, its <video> pictures drawn in step) and its soundtrack. What becomes
of them, the encoding and the sink, is the producer's (framefleet/agent/producer.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from framefleet.agent import hf_quality, soundtrack
from framefleet.agent.sources import page_input
from framefleet.agent.template_page import TemplatePage
from framefleet.agent.video_clips import VideoClips
from framefleet.core import jobspec
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

if TYPE_CHECKING:
    from framefleet.agent.soundtrack import Samples

log = logging.getLogger("framefleet.agent")


async def own_frames(page: TemplatePage, output: jobspec.Output) -> int:
    """A HyperFrames composition's own length, less a partial render's start."""
    frames = await page.composition_frames(output.fps) - output.start_frame
    if frames < 1:
        message = f"the start, frame {output.start_frame}, is past the composition's end"
        raise FramefleetError(ErrorClass.INVALID_JOB, message)
    return frames


class FrameSource:
    """One job's page, loaded: ``output`` (its length known), the sound ``clips`` it plays,
    then ``sound`` once mixed, and ``frame(n)`` for frame n of the output."""

    def __init__(
        self,
        page: TemplatePage,
        template: pb.Template,
        output: jobspec.Output,
        clips: list[soundtrack.SoundClip],
        swapped: bool,
    ) -> None:
        self.page, self.output, self.clips, self.swapped = page, output, clips, swapped
        self._template = template
        self.sound: Samples | None = None
        self._videos: VideoClips | None = None

    @classmethod
    async def load(cls, assign: pb.Assign, page: TemplatePage, ready_timeout: float) -> FrameSource:
        """Loads the job's template in ``page`` (a warm page swaps it in) and reads which
        sounds it plays; ``swapped`` says which it was."""
        spec = assign.spec
        output = jobspec.resolve_output(spec.output, open_length=jobspec.open_length(spec))
        # WebM, ProRes 4444: a transparent background; HyperFrames' quality names: its JPEGs.
        await page.set_capture(jobspec.has_alpha(output), hf_quality.jpeg_quality(output.quality))
        template, params = page_input(spec)  # e.g. a VideoJSON job: a shell page
        swapped = await page.load(
            template, params, output.page_size, ready_timeout, assign.source_key, output.scale
        )
        if page.unresolved_fonts:  # HyperFrames warns too, and draws them with a fallback
            log.warning(
                "fonts not resolved: drawn with Chromium's fallback face",
                extra={"job_id": assign.lease.job_id, "families": page.unresolved_fonts},
            )
        if not output.frames:  # a HyperFrames composition's own length, now that it has loaded
            output = replace(output, frames=await own_frames(page, output))
        # A partial render: frame n shows the source's frame start + n, and hears it.
        raw = await page.sound_clips()
        clips = soundtrack.shifted(soundtrack.clips_from_page(raw), output.start_frame / output.fps)
        return cls(page, template, output, clips, swapped)

    async def mix_sound(self) -> None:
        """Mixes the clips into ``sound`` (numpy: only a render with sound loads it)."""
        from framefleet.agent.sound_samples import mix

        seconds = self.output.frames / self.output.fps
        self.sound = await asyncio.to_thread(mix, self.clips, self._template.assets, seconds)

    async def frame(self, n: int, frame_timeout: float) -> bytes:
        """Frame ``n`` of the output, captured: the page seeks straight to it (virtual time),
        so a chunk starts at its first frame."""
        if self._videos is None:  # after the sound clips were read: the videos lose their src
            self._videos = await VideoClips.attach(self.page, self._template)
        at = self.output.start_frame + n
        await self._videos.draw(at / self.output.fps)
        return await self.page.frame(at * 1000.0 / self.output.fps, frame_timeout)

    def close(self) -> None:
        if self._videos is not None:
            self._videos.close()
