"""The outputs that are files rather than streams: ProRes in MOV, GIF, and PNG sequences.

Both reuse H264Encoder's capture window, encoder thread and picture decoding, and are rendered
whole (core/chunks.py). A MOV is written to a temporary file (the mov muxer writes its index
at the end, seeking back) and copied to the sink when complete, so it is an ordinary,
unfragmented QuickTime file. A GIF is encoded in two passes so its one palette suits every
frame: each picture goes into FFmpeg's palettegen as it comes (a fixed-size histogram) and its
captured bytes into a temporary file; at the end paletteuse maps the pictures, read back from
that file, onto the palette. Memory stays bounded either way. A PNG sequence is a ZIP
streamed to the sink: each captured PNG (lossless, with alpha) stored as it comes.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zipfile
from collections.abc import Callable
from fractions import Fraction
from typing import IO, TYPE_CHECKING, cast

import av
from av.video.codeccontext import VideoCodecContext
from av.video.reformatter import ColorRange, Colorspace

from framefleet.agent.encoder import H264Encoder, _Writer, filter_chain
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import Output

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from framefleet.agent.soundtrack import Samples

COPY_BLOCK = 1 << 20
# prores_ks writes its slices the same with any thread count; fixed anyway, like x264's.
PRORES_THREADS = 2
# 10-bit 4:4:4 with alpha for 4444, 10-bit 4:2:2 for the others (what the profiles are for).
PRORES_PIX_FMT = {"4444": "yuva444p10le"}
PRORES_422 = "yuv422p10le"
PRORES_KS_NAMES = {"422": "standard"}  # prores_ks's name where it differs from HyperFrames'
# The palette: 256 colours from every frame's pixels; Floyd-Steinberg-like error diffusion
# (sierra2_4a, FFmpeg's default) on one thread, so the same pictures give the same bytes.
PALETTEGEN = "max_colors=256:stats_mode=full"
PALETTEUSE = "dither=sierra2_4a:diff_mode=none"


def open_encoder(
    output: Output,
    write: Callable[[bytes], object],
    image_codec: str = "mjpeg",
    soundtrack: Samples | None = None,
    first_frame: int = 0,
    end_frame: int = 0,
) -> H264Encoder:
    """The encoder for ``output``'s format."""
    if output.format in ("gif", "png-sequence") and soundtrack is not None:
        raise FramefleetError(
            ErrorClass.INVALID_JOB,
            f"this composition has sound and a {output.format} output has none:"
            " render mp4, webm, hls or mov to keep it",
        )
    if output.format == "png-sequence":
        return PngSequenceEncoder(output, write, image_codec)
    if output.format == "mov":
        return MovEncoder(output, write, image_codec, soundtrack)
    if output.format == "gif":
        return GifEncoder(output, write, image_codec)
    return H264Encoder(
        output,
        write,
        image_codec,
        soundtrack=soundtrack,
        first_frame=first_frame,
        end_frame=end_frame,
    )


class _FileEncoder(H264Encoder):
    """A whole output encoded frame by frame on the encoder thread into a temporary file."""

    def __init__(self, output: Output, write: Callable[[bytes], object], image_codec: str) -> None:
        super().__init__(output, write, image_codec)
        self._file: IO[bytes] | None = None

    def _copy_out(self, file: IO[bytes]) -> None:
        file.seek(0)
        while block := file.read(COPY_BLOCK):
            self._writer.write(block)

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class MovEncoder(_FileEncoder):
    """ProRes (prores_ks) in a QuickTime MOV: 4444 with alpha from PNG captures, or a 4:2:2
    profile from JPEG captures; sound as 16-bit PCM."""

    def __init__(
        self,
        output: Output,
        write: Callable[[bytes], object],
        image_codec: str,
        soundtrack: Samples | None = None,
    ) -> None:
        super().__init__(output, write, image_codec)
        self._pix_fmt = PRORES_PIX_FMT.get(output.profile, PRORES_422)
        self._soundtrack = soundtrack

    def _open(self) -> None:
        o = self._output
        self._file = tempfile.TemporaryFile(prefix="framefleet-mov-")
        container = av.open(self._file, mode="w", format="mov", options={"fflags": "+bitexact"})
        stream = container.add_stream("prores_ks", rate=o.fps)
        stream.width, stream.height, stream.pix_fmt = o.width, o.height, self._pix_fmt
        ctx = stream.codec_context
        ctx.thread_count = PRORES_THREADS
        self._set_colors(ctx)
        # "apl0": the vendor QuickTime and editors expect of a ProRes stream.
        ctx.options = {"profile": PRORES_KS_NAMES.get(o.profile, o.profile), "vendor": "apl0"}
        self._stream = stream
        self._container = container
        self._decoder = cast(VideoCodecContext, av.CodecContext.create(self._image_codec, "r"))
        if self._soundtrack is not None:
            self._audio = self._sound(container, "pcm_s16le")

    def _encode(self, image: bytes) -> None:
        if self._container is None:
            self._open()
        frame = self._picture(image)
        frame.pts = self._frames
        self._mux(self._stream.encode(frame))
        self._frames += 1
        if self._audio is not None:  # the sound up to this frame's end, interleaved
            self._audio.until(self._frames / self._output.fps)

    def _picture(self, image: bytes) -> av.VideoFrame:
        if self._last is not None and self._last[0] is image:
            return self._last[1]
        frame = self._convert(image)
        self._last = (image, frame)
        return frame

    def _close(self, flush: bool) -> None:
        if self._container is None:
            return
        if flush:
            self._mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish()
        self._container.close()
        self._container = None
        if flush and self._file is not None:
            self._copy_out(self._file)
        self._discard()


class GifEncoder(_FileEncoder):
    """An animated GIF (looping) with one palette for all its frames."""

    def __init__(self, output: Output, write: Callable[[bytes], object], image_codec: str) -> None:
        super().__init__(output, write, image_codec)
        self._pix_fmt = "rgb24"
        self._stats: av.filter.Graph | None = None
        self._gif_frames = 0

    def _open(self) -> None:
        o = self._output
        self._file = tempfile.TemporaryFile(prefix="framefleet-gif-")
        self._stats = filter_chain(o.width, o.height, "rgb24", [("palettegen", PALETTEGEN)])
        self._container = cast(av.container.OutputContainer, None)  # set at the end
        self._decoder = cast(VideoCodecContext, av.CodecContext.create(self._image_codec, "r"))

    def _encode(self, image: bytes) -> None:
        if self._stats is None:
            self._open()
        assert self._stats is not None and self._file is not None
        repeat = self._last is not None and self._last[0] is image
        frame = self._picture(image)
        frame.pts, frame.time_base = self._frames, Fraction(1)
        self._stats.vpush(frame)
        # A repeated picture is spooled as an empty record: the one before it again.
        body = b"" if repeat else image
        self._file.write(struct.pack("<I", len(body)) + body)
        self._frames += 1

    def _picture(self, image: bytes) -> av.VideoFrame:
        if self._last is not None and self._last[0] is image:
            return self._last[1]
        frames = self._decoder.decode(av.Packet(image))
        if len(frames) != 1:
            raise FramefleetError(ErrorClass.ENCODE_ERROR, "a captured frame did not decode")
        o = self._output
        frame = frames[0].reformat(
            width=o.width,
            height=o.height,
            format="rgb24",
            src_colorspace=Colorspace.ITU601,
            src_color_range=ColorRange.JPEG,
            threads=1,
        )
        self._last = (image, frame)
        return frame

    def _encode_gif(self) -> None:
        """The second pass: every spooled picture through paletteuse into the GIF."""
        assert self._stats is not None and self._file is not None
        self._stats.vpush(None)
        palette = self._stats.vpull()
        o = self._output
        graph = av.filter.Graph()
        graph.threads = 1
        pictures = graph.add_buffer(
            width=o.width, height=o.height, format=av.VideoFormat("rgb24"), time_base=Fraction(1)
        )
        colours = graph.add_buffer(
            width=palette.width,
            height=palette.height,
            format=palette.format,
            time_base=Fraction(1),
        )
        paletteuse = graph.add("paletteuse", PALETTEUSE)
        sink = graph.add("buffersink")
        pictures.link_to(paletteuse, 0, 0)
        colours.link_to(paletteuse, 0, 1)
        paletteuse.link_to(sink)
        graph.configure()
        palette.pts, palette.time_base = 0, Fraction(1)
        colours.push(palette)
        colours.push(None)
        container = av.open(self._writer, mode="w", format="gif", options={"loop": "0"})
        stream = container.add_stream("gif", rate=o.fps)
        stream.width, stream.height, stream.pix_fmt = o.width, o.height, "pal8"
        self._stream = stream
        self._container = container
        self._decoder = cast(VideoCodecContext, av.CodecContext.create(self._image_codec, "r"))
        self._last = None
        self._gif_frames = 0
        self._file.seek(0)
        previous = b""
        for n in range(self._frames):
            (size,) = struct.unpack("<I", self._file.read(4))
            image = self._file.read(size) if size else previous
            previous = image
            frame = self._picture(image)
            frame.pts, frame.time_base = n, Fraction(1)
            pictures.push(frame)
            self._drain(sink)
        pictures.push(None)
        self._drain(sink)
        self._mux(stream.encode(None))
        container.close()

    def _drain(self, sink: av.filter.context.FilterContext) -> None:
        """Encodes what paletteuse has mapped so far (it may hold a picture back)."""
        while True:
            try:
                mapped = cast(av.VideoFrame, sink.pull())
            except (BlockingIOError, av.error.EOFError):
                return
            mapped.pts, mapped.time_base = self._gif_frames, Fraction(1, self._output.fps)
            self._gif_frames += 1
            self._mux(self._stream.encode(mapped))

    def _close(self, flush: bool) -> None:
        if self._stats is None:
            return
        try:
            if flush:
                self._encode_gif()
        finally:
            self._stats = None
            self._container = None
            self._discard()


# Fixed entry times and modes: the same frames make the same ZIP.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o644 << 16


class _Unseekable(io.RawIOBase):
    """The sink as zipfile sees it: a stream it can only write to (so it writes each entry's
    sizes after the entry, and never seeks back)."""

    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        return self._writer.write(bytes(data))


class PngSequenceEncoder(H264Encoder):
    """Chromium's PNG captures (already at the output's size, alpha kept) as ZIP entries
    frame_000000.png, ... in output order, written straight to the sink (the ZIP's sizes
    follow each entry, so nothing seeks back)."""

    def __init__(self, output: Output, write: Callable[[bytes], object], image_codec: str) -> None:
        super().__init__(output, write, image_codec)
        if image_codec != "png":
            raise FramefleetError(ErrorClass.INTERNAL, "a PNG sequence needs PNG captures")
        self._zip: zipfile.ZipFile | None = None

    def _encode(self, image: bytes) -> None:
        if self._zip is None:
            self._zip = zipfile.ZipFile(_Unseekable(self._writer), "w", zipfile.ZIP_STORED)
        entry = zipfile.ZipInfo(f"frame_{self._frames:06d}.png", date_time=ZIP_DATE)
        entry.external_attr = ZIP_MODE
        self._zip.writestr(entry, image)
        self._frames += 1

    def _close(self, flush: bool) -> None:
        if self._zip is not None and flush:
            self._zip.close()
        self._zip = None
