"""In-process H.264 encoding into fragmented MP4 with PyAV/libx264.

Captured images go to one encoder thread in capture order; the capture loop keeps a small
window of frames in flight, so encoding overlaps capture and memory stays bounded. The MP4 is
fragmented (empty moov, a fragment every 0.25 s), so its bytes are final as they are written
and can stream straight into a sink with no seeking.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, Colorspace

from agent import hls
from agent.soundtrack import Samples, SoundTrack
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import Output

# x264's thread count is written into the stream; fixing it keeps bytes identical across hosts.
X264_THREADS = 2
MOVFLAGS = "empty_moov+default_base_moof"
# A fragment every quarter second, so bytes reach the sink while frames are captured, not once
# per GOP; HLS fragments at keyframes instead, so that every fragment is a segment (agent/hls.py).
FRAGMENT = {"movflags": MOVFLAGS, "frag_duration": "250000"}
HLS_FRAGMENT = {"movflags": "frag_keyframe+" + MOVFLAGS}


class _Writer:
    """The file object PyAV muxes into: forwards every byte to the sink."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self._write(bytes(data))
        self.bytes_written += len(data)
        return len(data)


class H264Encoder:
    def __init__(
        self,
        output: Output,
        write: Callable[[bytes], object],
        image_codec: str = "mjpeg",
        window: int = 6,
        soundtrack: Samples | None = None,
    ) -> None:
        self._output = output
        self._soundtrack = soundtrack
        self._audio: SoundTrack | None = None
        self._writer = _Writer(write)
        self._image_codec = image_codec
        # PNG captures carry alpha: VP9 keeps it (yuva420p); H.264 has none.
        alpha = image_codec == "png" and output.format == "webm"
        self._pix_fmt = "yuva420p" if alpha else "yuv420p"
        self._window = window
        self._pending: deque[asyncio.Future[None]] = deque()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._container: av.container.OutputContainer | None = None
        self._frames = 0
        # The last image and its converted frame: a repeated image (the page did not change) is
        # encoded again without decoding and converting it again.
        self._last: tuple[bytes, av.VideoFrame] | None = None

    @property
    def bytes_written(self) -> int:
        return self._writer.bytes_written

    def _open(self) -> None:
        o = self._output
        webm = o.format == "webm"
        if webm:
            # Matroska written straight through (no seeking back for cues or duration).
            options = {"fflags": "+bitexact", "live": "1"}
        else:
            options = {**(HLS_FRAGMENT if o.format == "hls" else FRAGMENT), "fflags": "+bitexact"}
        # HLS is a fragmented MP4 indexed by a playlist (agent/hls.py).
        muxer = "webm" if webm else "mp4"
        container = av.open(self._writer, mode="w", format=muxer, options=options)
        stream = container.add_stream("libvpx-vp9" if webm else "libx264", rate=o.fps)
        stream.width, stream.height, stream.pix_fmt = o.width, o.height, self._pix_fmt
        ctx = stream.codec_context
        ctx.gop_size = hls.SEGMENT_SECONDS * o.fps
        ctx.thread_count = X264_THREADS
        ctx.color_range = ColorRange.MPEG
        ctx.colorspace = Colorspace.ITU709
        ctx.color_primaries = 1  # BT.709
        ctx.color_trc = 1  # BT.709
        if webm:
            # Constant quality (b=0), fast single pass; row-mt for speed; no look-ahead so
            # frames leave the encoder as they come.
            ctx.options = {
                "crf": str(o.crf), "b": "0", "deadline": "realtime", "cpu-used": "8",
                "row-mt": "1", "lag-in-frames": "0",
            }  # fmt: skip
        else:
            params = []
            if o.format == "hls":  # every fragment a segment of exactly one GOP
                params.append("scenecut=0")
            if self._soundtrack is not None:
                # B-frames would start the video a few frames after 0 in a fragmented MP4
                # (no edit list), out of step with its sound, which starts at 0.
                params.append("bframes=0")
            ctx.options = {"crf": str(o.crf), "preset": o.preset}
            if params:
                ctx.options = {**ctx.options, "x264-params": ":".join(params)}
        self._decoder = cast(VideoCodecContext, av.CodecContext.create(self._image_codec, "r"))
        self._stream = stream
        self._container = container
        if self._soundtrack is not None:
            self._audio = SoundTrack(container, self._soundtrack, "libopus" if webm else "aac")

    def _encode(self, image: bytes) -> None:
        if self._container is None:
            self._open()
        if self._last is not None and self._last[0] is image:
            frame = self._last[1]
        else:
            frame = self._convert(image)
            self._last = (image, frame)
        frame.pts = self._frames
        self._frames += 1
        assert self._container is not None
        self._container.mux(self._stream.encode(frame))
        if self._audio is not None:  # the sound up to this frame's end, interleaved
            self._audio.until(self._frames / self._output.fps)

    def _convert(self, image: bytes) -> av.VideoFrame:
        frames = self._decoder.decode(av.Packet(image))
        if len(frames) != 1:
            raise FramefleetError(ErrorClass.ENCODE_ERROR, "a captured frame did not decode")
        frame = frames[0].reformat(
            width=self._output.width,
            height=self._output.height,
            format=self._pix_fmt,
            src_colorspace=Colorspace.ITU601,
            src_color_range=ColorRange.JPEG,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
        )
        # A decoded JPEG is an intra picture, and libx264 makes every frame marked I a
        # keyframe: unmarked, keyframes fall on the GOP (and HLS segments on whole GOPs).
        frame.pict_type = PictureType.NONE
        return frame

    def _close(self, flush: bool) -> None:
        if self._container is None:
            return
        if flush:
            self._container.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish()
        self._container.close()
        self._container = None

    async def put(self, image: bytes) -> None:
        """Queues one captured image; waits while the window of frames in flight is full."""
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._thread, self._encode, image))
        while len(self._pending) > self._window:
            await self._settle(self._pending.popleft())

    async def _settle(self, future: asyncio.Future[None]) -> None:
        try:
            await future
        except FramefleetError:
            raise
        except Exception as e:
            raise FramefleetError(ErrorClass.ENCODE_ERROR, f"encoding failed: {e}") from e

    async def finish(self) -> int:
        """Encodes what is queued, flushes and closes the MP4; returns its size in bytes."""
        while self._pending:
            await self._settle(self._pending.popleft())
        loop = asyncio.get_running_loop()
        await self._settle(loop.run_in_executor(self._thread, self._close, True))
        self._thread.shutdown()
        return self.bytes_written

    async def abort(self) -> None:
        """Drops queued frames and closes without flushing (the output is discarded)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._close, False)
        except Exception:
            pass  # the output is thrown away anyway
        self._thread.shutdown(wait=False, cancel_futures=True)
