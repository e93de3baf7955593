"""In-process encoding with PyAV: H.264 into fragmented MP4 (also HLS), VP9 into WebM.

Captured images go to one encoder thread in capture order; the capture loop keeps a small
window of frames in flight, so encoding overlaps capture and memory stays bounded. The MP4 is
fragmented (empty moov, a fragment about every 0.25 s), so its bytes are final as they are
written and can stream straight into a sink with no seeking.

H.264 is encoded in **segments** of ``chunks.segment_frames`` (two seconds), each by a fresh
x264 (so it starts with a keyframe and nothing carries over: closed GOPs, no scene-cut
keyframes, rate control restarted); every segment has the same fragments, each carrying its
decode time and sequence number in the whole video. So a **chunk** of whole segments encoded alone
(``first_frame``..``end_frame``) has exactly the bytes those segments have in the whole video,
and the video is the chunks' bytes joined in order (only the chunk at frame 0 has the init
segment), however it was split. The soundtrack is encoded from 0 by every chunk (cheap and
deterministic) and each muxes only the AAC packets dated in its own time range.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import av
from av.codec.context import Flags
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, Colorspace

from framefleet.agent import hf_quality, mp4_edit, pinned_cpu
from framefleet.agent.soundtrack import AAC_FRAME, AAC_PRIMING, SAMPLE_RATE
from framefleet.core import chunks
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import Output

if TYPE_CHECKING:
    from framefleet.agent.sound_samples import SoundTrack
    from framefleet.agent.soundtrack import Samples

# Encoder thread counts are written into the stream; fixing them keeps bytes identical across
# hosts. x264 runs on the encoder thread alone and swscale converts there too: on a box whose
# cores capture keeps busy, their helper threads cost more CPU than they save (bench/README.md,
# "Encoder threads").
X264_THREADS = 1
VP9_THREADS = 2
# How much nicer than capture the encoder thread runs (x264's own threads inherit it), so the
# serial capture chain gets the CPU first and encoding fills the gaps; bench/slots.py measures
# it (bench/README.md, "Slots, x264 threads and encoder priority").
ENCODER_NICE = 10
# Fragments start at every segment's keyframe and then every fragment_frames(fps) frames (about
# 0.25 s), so bytes reach the sink while frames are captured and every full segment has the same
# number of fragments: a chunk knows its first fragment's number. frag_discont with
# avoid_negative_ts=disabled and no edit list from the muxer: fragments carry their own decode
# times (a chunk that starts at frame 600 is not shifted to 0) and the first frame shows at 0,
# as the sound starts (its AAC priming skipped by the edit list _Writer adds); skip_trailer:
# no index (mfra) of only a chunk's fragments at its end. HLS keeps one fragment per segment:
# each is a segment object (framefleet/agent/hls.py).
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_discont+skip_trailer"
MP4_OPTIONS = {
    "movflags": MOVFLAGS,
    "fflags": "+bitexact",
    "avoid_negative_ts": "disabled",
    "use_editlist": "0",
}
FRAGMENT_SECONDS = Fraction(1, 4)
AAC_PACKET_SECONDS = Fraction(AAC_FRAME, SAMPLE_RATE)


def fragment_frames(fps: int) -> int:
    """Frames per fragment inside a segment: the fewest lasting FRAGMENT_SECONDS whose duration
    (the muxer's frag_duration, whole microseconds) no run of AAC packets reaches before the
    video does, so only video packets ever start a fragment, whatever the sound's phase."""
    frames = math.ceil(FRAGMENT_SECONDS * fps)
    while True:
        limit = _frag_duration_us(fps, frames)
        packets = math.ceil(Fraction(limit, 1_000_000) / AAC_PACKET_SECONDS)
        # The muxer rounds a duration to microseconds before comparing it with the limit.
        while round(packets * AAC_PACKET_SECONDS * 1_000_000) < limit:
            packets += 1
        if packets * AAC_PACKET_SECONDS >= Fraction(frames, fps):
            return frames
        frames += 1


def _frag_duration_us(fps: int, frames: int) -> int:
    return math.floor(Fraction(frames * 1_000_000, fps))


BOX_HEADER = 8


def _lower_priority() -> None:
    """ThreadPoolExecutor initializer: the encoder thread's nice value, ENCODER_NICE above the
    process's (Linux: per thread; threads it starts inherit it)."""
    if ENCODER_NICE:
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):  # no per-thread priority here: run as is
            os.setpriority(
                os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + ENCODER_NICE
            )


class _Writer:
    """The file object PyAV muxes into: forwards every byte to the sink; a chunk after the
    first drops the init segment (its leading ftyp and moov boxes), which the first one has,
    and the first writes the sound's edit list into it (``sound_edit``: the AAC priming to
    skip, agent/mp4_edit.py; 0: none)."""

    def __init__(
        self, write: Callable[[bytes], object], drop_init: bool, sound_edit: int = 0
    ) -> None:
        self._write = write
        self.bytes_written = 0
        self._drop_init = drop_init
        self._sound_edit = sound_edit
        self._head: bytearray | None = bytearray() if drop_init or sound_edit else None

    def write(self, data: bytes) -> int:
        size = len(data)
        if self._head is not None:
            self._head += data
            data = self._after_init(self._head)
        if data:
            self._write(bytes(data))
            self.bytes_written += len(data)
        return size

    def _after_init(self, head: bytearray) -> bytes:
        """Once the init segment has all arrived: what follows it (and, unless it is dropped,
        the init segment itself first, with the sound's edit list); until then nothing."""
        at = 0
        while len(head) >= at + BOX_HEADER:
            kind = bytes(head[at + 4 : at + 8])
            if kind not in (b"ftyp", b"moov"):
                break
            at += int.from_bytes(head[at : at + 4], "big")
            if kind == b"moov" and len(head) >= at:
                break
        else:
            return b""
        self._head = None
        if self._drop_init:
            return bytes(head[at:])
        return mp4_edit.with_sound_edit(bytes(head[:at]), self._sound_edit) + bytes(head[at:])


# Chromium's JPEG captures: BT.601 matrix, full range, 4:2:0 (what the mjpeg decoder gives).
JPEG_PIX_FMT = "yuvj420p"
# Their conversion to BT.709 limited range, YUV to YUV, by libavfilter's colorspace filter (same
# primaries and transfer, so only the matrix and range change; no dither, deterministic). It
# takes about a fifth of swscale's time for this conversion, and rounds where swscale's output
# sat about 1.4 levels dark (bench/README.md, "The colour conversion").
BT709_FILTER = (
    "ispace=bt470bg:irange=pc:iprimaries=bt709:itrc=bt709:"
    "space=bt709:range=tv:primaries=bt709:trc=bt709:format=yuv420p:dither=none"
)


def filter_chain(
    width: int, height: int, pix_fmt: str, filters: list[tuple[str, str]]
) -> av.filter.Graph:
    """A configured graph of ``filters`` (name, arguments) in a row, one thread wide, so it
    runs on the encoder thread alone and its output is the same on every run."""
    graph = av.filter.Graph()
    graph.threads = 1
    node = graph.add_buffer(
        width=width, height=height, format=av.VideoFormat(pix_fmt), time_base=Fraction(1, 1)
    )
    for name, args in filters:
        after = graph.add(name, args)
        node.link_to(after)
        node = after
    node.link_to(graph.add("buffersink"))
    graph.configure()
    return graph


class _ColorConversion:
    """A JPEG capture to BT.709 limited-range 4:2:0 on the encoder thread alone: libavfilter's
    colorspace filter, or HyperFrames' chain through RGB for its quality names."""

    def __init__(self, width: int, height: int, quality: str) -> None:
        filters = hf_quality.RGB_CONVERSION if quality else [("colorspace", BT709_FILTER)]
        self._graph = filter_chain(width, height, JPEG_PIX_FMT, filters)
        self._pts = 0

    def convert(self, frame: av.VideoFrame) -> av.VideoFrame:
        frame.pts, frame.time_base = self._pts, Fraction(1, 1)
        self._pts += 1
        self._graph.vpush(frame)
        return self._graph.vpull()


class H264Encoder:
    def __init__(
        self,
        output: Output,
        write: Callable[[bytes], object],
        image_codec: str = "mjpeg",
        window: int = 6,
        soundtrack: Samples | None = None,
        first_frame: int = 0,
        end_frame: int = 0,
    ) -> None:
        """Encodes ``output``'s frames [first_frame, end_frame) (a chunk of whole segments;
        end_frame 0: to the end); only a chunk at frame 0 has the init segment."""
        pinned_cpu.pin()
        self._segment = chunks.segment_frames(output.fps)
        self._end = end_frame or output.frames
        whole = first_frame == 0 and self._end == output.frames
        aligned = first_frame % self._segment == 0 and (
            self._end % self._segment == 0 or self._end == output.frames
        )
        if not whole and (
            not chunks.splittable(output.format)
            or not aligned
            or not 0 <= first_frame < self._end <= output.frames
        ):
            message = f"frames [{first_frame}, {end_frame}) are not a chunk of whole segments"
            raise FramefleetError(ErrorClass.INVALID_JOB, message)
        self._first = first_frame
        self._output = output
        self._soundtrack = soundtrack
        self._audio: SoundTrack | None = None
        # MP4 and HLS sound is AAC: its priming is skipped by an edit list (WebM's Opus signals
        # its own pre-skip).
        aac = soundtrack is not None and output.format != "webm"
        self._writer = _Writer(
            write, drop_init=first_frame > 0, sound_edit=AAC_PRIMING if aac else 0
        )
        self._image_codec = image_codec
        # PNG captures carry alpha: VP9 keeps it (yuva420p); H.264 has none.
        alpha = image_codec == "png" and output.format == "webm"
        self._pix_fmt = "yuva420p" if alpha else "yuv420p"
        self._window = window
        self._pending: deque[asyncio.Future[None]] = deque()
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="encoder", initializer=_lower_priority
        )
        self._container: av.container.OutputContainer | None = None
        self._x264: VideoCodecContext | None = None  # the current segment's encoder
        self._frames = first_frame  # the next frame's number in the whole video
        # The last image and its converted frame: a repeated image (the page did not change) is
        # encoded again without decoding and converting it again.
        self._last: tuple[bytes, av.VideoFrame] | None = None
        self._to_bt709: _ColorConversion | None = None  # made at the first JPEG capture

    @property
    def bytes_written(self) -> int:
        return self._writer.bytes_written

    def _open(self) -> None:
        o = self._output
        if o.format == "webm":
            self._open_webm()
            return
        # HLS is the same fragmented MP4, cut at its fragments by framefleet/agent/hls.py.
        options = {**MP4_OPTIONS, "fragment_index": str(self._first_fragment())}
        if o.format == "mp4":
            frames = fragment_frames(o.fps)
            options["frag_duration"] = str(_frag_duration_us(o.fps, frames))
        container = av.open(self._writer, mode="w", format="mp4", options=options)
        # The stream's own encoder only describes the stream (avcC) in the init segment; each
        # segment's encoder, with the same settings, makes the packets.
        stream = container.add_stream("libx264", rate=o.fps)
        self._configure_x264(stream.codec_context)
        self._stream = stream
        self._container = container
        if self._soundtrack is not None:
            fps = Fraction(o.fps)
            self._audio = self._sound(
                container,
                "aac",
                window=(
                    round(self._first * SAMPLE_RATE / fps),
                    None if self._end == o.frames else round(self._end * SAMPLE_RATE / fps),
                ),
            )
        container.start_encoding()
        self._decoder = cast(VideoCodecContext, av.CodecContext.create(self._image_codec, "r"))

    def _first_fragment(self) -> int:
        """The number of this chunk's first fragment in the whole video: every segment before
        it has the same number of fragments."""
        per_segment = 1
        if self._output.format == "mp4":
            per_segment = math.ceil(self._segment / fragment_frames(self._output.fps))
        return self._first // self._segment * per_segment + 1

    def _configure_x264(self, ctx: VideoCodecContext) -> None:
        o = self._output
        ctx.width, ctx.height, ctx.pix_fmt = o.width, o.height, self._pix_fmt
        ctx.time_base = Fraction(1, o.fps)
        ctx.framerate = Fraction(o.fps)
        ctx.gop_size = self._segment
        ctx.thread_count = X264_THREADS
        self._set_colors(ctx)
        ctx.flags |= Flags.global_header  # parameter sets in avcC, as the mp4 muxer wants
        params = [
            f"keyint={self._segment}",
            f"min-keyint={self._segment}",
            "scenecut=0",
            f"asm={pinned_cpu.X264_ASM}",  # the same assembly on every host
        ]
        # HyperFrames' quality names tune x264 as HyperFrames does (agent/hf_quality.py).
        params += hf_quality.x264_params(o.quality, o.preset)
        if self._soundtrack is not None and "bframes=0" not in params:
            # B-frames would start the video a few frames after 0 in a fragmented MP4
            # (no edit list), out of step with its sound, which starts at 0.
            params.append("bframes=0")
        ctx.options = {"crf": str(o.crf), "preset": o.preset, "x264-params": ":".join(params)}

    @staticmethod
    def _set_colors(ctx: VideoCodecContext) -> None:
        ctx.color_range = ColorRange.MPEG
        ctx.colorspace = Colorspace.ITU709
        ctx.color_primaries = 1  # BT.709
        ctx.color_trc = 1  # BT.709

    def _open_webm(self) -> None:
        o = self._output
        # Matroska written straight through (no seeking back for cues or duration).
        options = {"fflags": "+bitexact", "live": "1"}
        container = av.open(self._writer, mode="w", format="webm", options=options)
        stream = container.add_stream("libvpx-vp9", rate=o.fps)
        stream.width, stream.height, stream.pix_fmt = o.width, o.height, self._pix_fmt
        ctx = stream.codec_context
        ctx.gop_size = self._segment
        ctx.thread_count = VP9_THREADS
        self._set_colors(ctx)
        # Constant quality (b=0), fast single pass; row-mt for speed; no look-ahead so
        # frames leave the encoder as they come.
        ctx.options = {
            "crf": str(o.crf), "b": "0", "deadline": "realtime", "cpu-used": "8",
            "row-mt": "1", "lag-in-frames": "0",
        }  # fmt: skip
        self._decoder = cast(VideoCodecContext, av.CodecContext.create(self._image_codec, "r"))
        self._stream = stream
        self._container = container
        if self._soundtrack is not None:
            self._audio = self._sound(container, "libopus")

    def _sound(
        self,
        container: av.container.OutputContainer,
        codec: str,
        window: tuple[int, int | None] = (0, None),
    ) -> SoundTrack:
        """The soundtrack's stream; its module (numpy) loads only for a render with sound."""
        from framefleet.agent.sound_samples import SoundTrack

        assert self._soundtrack is not None
        return SoundTrack(container, self._soundtrack, codec, window)

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        assert self._container is not None
        for packet in packets:
            packet.stream = self._stream
        self._container.mux(packets)

    def _end_segment(self) -> None:
        if self._x264 is not None:
            self._mux(self._x264.encode(None))
            self._x264 = None

    def _pad_last_segment(self) -> None:
        """HyperFrames' quality names: x264 sees a short last segment out to a whole one
        (copies of the last picture, their packets dropped), so its keyframe is coded with
        the look-ahead (mbtree) of every other segment's, not coarser for the frames after it
        that it lacks: framefleet's keyframe every segment stays as close to HyperFrames'
        picture there (a P-frame) as the others (docs/benchmarks.md). Only the video's last
        segment can be short, so a chunk pads it as the whole video does."""
        if not self._output.quality or self._x264 is None or self._last is None:
            return
        frame = self._last[1]
        for number in range(self._frames, -(-self._frames // self._segment) * self._segment):
            frame.pts = number
            packets = self._x264.encode(frame)
            self._mux([p for p in packets if p.pts is not None and p.pts < self._frames])
        real = [p for p in self._x264.encode(None) if p.pts is not None and p.pts < self._frames]
        self._mux(real)
        self._x264 = None

    def _encode(self, image: bytes) -> None:
        if self._container is None:
            self._open()
        if self._last is not None and self._last[0] is image:
            frame = self._last[1]
        else:
            frame = self._convert(image)
            self._last = (image, frame)
        frame.pts = self._frames
        if self._output.format == "webm":
            self._mux(self._stream.encode(frame))
        else:
            if self._frames % self._segment == 0:
                self._end_segment()
            if self._x264 is None:
                self._x264 = av.CodecContext.create("libx264", "w")
                self._configure_x264(self._x264)
            frame.time_base = self._x264.time_base
            self._mux(self._x264.encode(frame))
        self._frames += 1
        if self._audio is not None:  # the sound up to this frame's end, interleaved
            self._audio.until(self._frames / self._output.fps)

    def _convert(self, image: bytes) -> av.VideoFrame:
        # A PNG gets a decoder of its own: FFmpeg's PNG decoder, reused, keeps the previous
        # picture wherever the next one is transparent (a trail of every earlier frame in an
        # alpha output, and semi-transparent shadows darkening as they pile up).
        decoder = self._decoder
        if self._image_codec == "png":
            decoder = av.CodecContext.create("png", "r")
        frames = decoder.decode(av.Packet(image))
        if len(frames) != 1:
            raise FramefleetError(ErrorClass.ENCODE_ERROR, "a captured frame did not decode")
        decoded = frames[0]
        o = self._output
        jpeg = decoded.format.name == JPEG_PIX_FMT
        same_size = (decoded.width, decoded.height) == (o.width, o.height)
        if jpeg and same_size and self._pix_fmt == "yuv420p":
            if self._to_bt709 is None:
                self._to_bt709 = _ColorConversion(o.width, o.height, o.quality)
            frame = self._to_bt709.convert(decoded)
        else:  # PNG (RGBA, kept for alpha), a JPEG of another size or into 4:2:2: swscale
            frame = decoded.reformat(
                width=o.width,
                height=o.height,
                format=self._pix_fmt,
                src_colorspace=Colorspace.ITU601,
                src_color_range=ColorRange.JPEG,
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
                threads=1,
            )
        # A decoded JPEG is an intra picture, and libx264 makes every frame marked I a
        # keyframe: unmarked, keyframes fall on the GOP (and HLS segments on whole GOPs).
        frame.pict_type = PictureType.NONE
        return frame

    def _close(self, flush: bool) -> None:
        if self._container is None:
            return
        if flush:
            if self._output.format == "webm":
                self._mux(self._stream.encode(None))
            self._pad_last_segment()
            self._end_segment()
            if self._audio is not None:
                self._audio.finish()
        self._x264 = None
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
