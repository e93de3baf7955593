"""<video> pictures, frame-exact: Chromium's own seeking shows a video's first frame for every
frame the agent captures (its compositor does not present seeked pictures under begin-frame
control), so the agent decodes each video from the job's bundle with PyAV and draws the picture
for t itself, as the element's background (its src is taken away, so the element keeps its box,
transforms, opacity and clip window but shows only what the agent gives it)."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from av.container import InputContainer
from av.video.reformatter import Colorspace

from framefleet.agent.template_page import TemplatePage
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

JPEG_QUALITY = 2  # mjpeg qscale: 2 is near-lossless
UNSPECIFIED = 2  # AVCOL_SPC_UNSPECIFIED: the video names no colour matrix

# Transfer characteristics (ITU-T H.273) of HDR video: PQ and HLG.
HDR_TRANSFERS = {16: "PQ, SMPTE ST 2084", 18: "HLG, ARIB STD-B67"}


@dataclass
class _Decoder:
    """One video's frames in order; a time before the current frame starts again."""

    path: str
    data: bytes
    container: InputContainer | None = None
    frames: Any = None
    current: av.VideoFrame | None = None
    upcoming: av.VideoFrame | None = None
    ended: bool = False

    def _restart(self, seconds: float = 0.0) -> None:
        """Decodes from the keyframe at or before ``seconds`` (a chunk of a render may start
        deep into a clip), or from the start where the seek would land past it."""
        if self.container is not None:
            self.container.close()
        self.container = av.open(io.BytesIO(self.data), mode="r")
        if not self.container.streams.video:
            raise FramefleetError(ErrorClass.TEMPLATE_LOAD_ERROR, f"{self.path} has no video")
        stream = self.container.streams.video[0]
        transfer = HDR_TRANSFERS.get(stream.codec_context.color_trc)
        if transfer:  # drawn as is, its pictures would be wrong, not tone-mapped
            raise FramefleetError(
                ErrorClass.TEMPLATE_UNSUPPORTED,
                f"{self.path} is HDR video ({transfer}): framefleet renders SDR only",
            )
        if seconds > 0 and stream.time_base:
            self.container.seek(int(seconds / stream.time_base), stream=stream, backward=True)
        self.frames = self.container.decode(stream)
        self.current, self.upcoming, self.ended = None, None, False
        self.upcoming = self._next()
        if seconds > 0 and self.upcoming is not None and (self.upcoming.time or 0.0) > seconds:
            self._restart()

    def _next(self) -> av.VideoFrame | None:
        if self.ended:
            return None
        try:
            frame: av.VideoFrame = next(self.frames)
            return frame
        except StopIteration:
            self.ended = True
            return None

    def at(self, seconds: float) -> av.VideoFrame | None:
        """The frame showing at ``seconds`` into the file (the last one past its end)."""
        try:
            if self.container is None or (
                self.current is not None and (self.current.time or 0.0) > seconds + 1e-6
            ):
                self._restart(seconds)
            if self.upcoming is None:
                self.upcoming = self._next()
            while self.upcoming is not None and (self.upcoming.time or 0.0) <= seconds + 1e-6:
                self.current, self.upcoming = self.upcoming, self._next()
            return self.current or self.upcoming
        except av.FFmpegError as e:
            raise FramefleetError(
                ErrorClass.TEMPLATE_LOAD_ERROR, f"video {self.path} could not be decoded: {e}"
            ) from e

    def close(self) -> None:
        if self.container is not None:
            self.container.close()


@dataclass
class _Clip:
    index: int
    decoder: _Decoder
    start: float
    end: float
    media_start: float
    rate: float
    shown: int | None = None  # pts of the picture drawn last: an unchanged one is not sent again


def _matrix(frame: av.VideoFrame) -> int | None:
    """The colour matrix the frame's YUV is read with: its own, or for a video that names
    none, Chromium's guess (and so HyperFrames' and a browser preview's): BT.709 from 720
    lines up, BT.601 below."""
    if frame.colorspace != UNSPECIFIED:
        return None
    return Colorspace.ITU709 if frame.height >= 720 else Colorspace.ITU601


def _jpeg(frame: av.VideoFrame) -> bytes:
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": str(JPEG_QUALITY), "qmax": str(JPEG_QUALITY)}
    picture = frame.reformat(format="yuvj420p", src_colorspace=_matrix(frame))
    packets = [*encoder.encode(picture), *encoder.encode(None)]
    return b"".join(bytes(p) for p in packets)


@dataclass
class VideoClips:
    """The page's <video> elements, drawn by the agent. ``attach`` after the page is ready
    (and after its sound is read: the elements lose their src); ``draw(t)`` before each frame."""

    page: TemplatePage
    clips: list[_Clip] = field(default_factory=list)

    @classmethod
    async def attach(cls, page: TemplatePage, template: pb.Template) -> VideoClips:
        raw: list[dict[str, Any]] = await page.run_runtime("() => window.__framefleet.takeVideos()")
        clips = []
        for item in raw:
            path = str(item["path"])
            if path not in template.assets:
                raise FramefleetError(
                    ErrorClass.TEMPLATE_LOAD_ERROR, f"video {path} is not in the job's bundle"
                )
            end = item.get("end")
            clips.append(
                _Clip(
                    index=int(item["index"]),
                    decoder=_Decoder(path, template.assets[path]),
                    start=float(item.get("start") or 0.0),
                    end=math.inf if end is None else float(end),
                    media_start=float(item.get("mediaStart") or 0.0),
                    rate=float(item.get("rate") or 1.0),
                )
            )
        return cls(page, clips)

    async def draw(self, seconds: float) -> None:
        for clip in self.clips:
            if not clip.start <= seconds < clip.end:
                continue  # outside its window: hidden by the clip runtime, or held
            frame = clip.decoder.at(clip.media_start + (seconds - clip.start) * clip.rate)
            if frame is None or frame.pts == clip.shown:
                continue
            clip.shown = frame.pts
            url = "data:image/jpeg;base64," + base64.b64encode(_jpeg(frame)).decode()
            await self.page.run_runtime(
                "([i, url]) => window.__framefleet.drawVideo(i, url)", [clip.index, url]
            )

    def close(self) -> None:
        for clip in self.clips:
            clip.decoder.close()
