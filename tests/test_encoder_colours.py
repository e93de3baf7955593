"""The encoder's colour conversion: Chromium's JPEG captures (BT.601, full range) become H.264's
BT.709 limited range with each colour where the standards put it, within one level."""

from __future__ import annotations

import dataclasses
import io
import itertools

import av
import numpy as np
import pytest

from framefleet.agent.encoder import H264Encoder
from framefleet.core.jobspec import Output

W, H = 64, 32
# Full-range BT.601 YCbCr as a JPEG carries it: black, a dark blue-grey, grey, red, green, blue,
# a skin tone, white.
COLOURS = [(0, 128, 128), (24, 141, 122), (40, 145, 119), (128, 128, 128), (76, 85, 255),
           (150, 44, 21), (29, 255, 107), (170, 110, 150), (255, 128, 128)]  # fmt: skip


def bt709_limited(y: float, cb: float, cr: float) -> tuple[float, float, float]:
    """The reference, in floating point: full-range BT.601 to RGB, RGB to limited BT.709."""
    r = (y + 1.402 * (cr - 128)) / 255
    g = (y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)) / 255
    b = (y + 1.772 * (cb - 128)) / 255
    luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 16 + 219 * luma, 128 + 224 * (b - luma) / 1.8556, 128 + 224 * (r - luma) / 1.5748


def flat_jpeg(y: int, cb: int, cr: int) -> bytes:
    planes = [np.full((H, W), y, np.uint8), np.full((H // 2, W // 2), cb, np.uint8),
              np.full((H // 2, W // 2), cr, np.uint8)]  # fmt: skip
    frame = av.VideoFrame(W, H, "yuvj420p")
    for plane, values in zip(frame.planes, planes, strict=True):
        padded = np.pad(values, ((0, 0), (0, plane.line_size - values.shape[1])))
        plane.update(padded.tobytes())
    jpeg = av.CodecContext.create("mjpeg", "w")
    jpeg.width, jpeg.height, jpeg.pix_fmt = W, H, "yuvj420p"
    jpeg.time_base = jpeg.framerate = 1  # type: ignore[assignment]
    jpeg.options = {"qmin": "1", "qmax": "1"}
    (packet,) = jpeg.encode(frame)
    return bytes(packet)


@pytest.mark.parametrize("colour", COLOURS)
async def test_a_captured_colour_lands_where_bt709_puts_it(colour: tuple[int, int, int]) -> None:
    out = io.BytesIO()
    encoder = H264Encoder(Output(W, H, 10, 2, "h264", 0, "veryfast"), out.write)
    image = flat_jpeg(*colour)
    for _ in range(2):
        await encoder.put(image)
    await encoder.finish()
    with av.open(io.BytesIO(out.getvalue()), mode="r") as container:
        frame = next(container.decode(video=0))
    assert (frame.format.name, frame.color_range, frame.colorspace) == ("yuv420p", 1, 1)
    got = [float(np.frombuffer(bytes(p), np.uint8).reshape(p.height, p.line_size)[1, 1])
           for p in frame.planes]  # fmt: skip
    want = bt709_limited(*colour)
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 1.0, (colour, got, want)


def first_pixel(data: bytes, number: int = 0) -> list[int]:
    with av.open(io.BytesIO(data), mode="r") as container:
        frame = next(itertools.islice(container.decode(video=0), number, None))
    return [int(np.frombuffer(bytes(p), np.uint8)[0]) for p in frame.planes]


@pytest.mark.parametrize(("quality", "want"), [("", [230, 129, 125]), ("looks", [230, 130, 126])])
async def test_hyperframes_quality_names_convert_colours_as_hyperframes_does(
    quality: str, want: list[int]
) -> None:
    """A pale blue (HyperFrames' timed-descendant-visibility fixture's background): framefleet's
    own YUV-to-YUV conversion puts it where BT.709 does (Cb 129.5, Cr 125.4); a HyperFrames
    quality name converts it through 8-bit RGB as HyperFrames does, a level higher in both."""
    out = io.BytesIO()
    encoder = H264Encoder(Output(W, H, 10, 2, "h264", 0, "veryfast", quality=quality), out.write)
    image = flat_jpeg(249, 130, 125)
    for _ in range(2):
        await encoder.put(image)
    await encoder.finish()
    assert first_pixel(out.getvalue()) == want


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255**2 / mse))


@pytest.mark.parametrize("quality", ["", "looks"])
async def test_a_short_last_segment_keeps_its_keyframe_as_sharp_as_the_others(
    quality: str,
) -> None:
    """Every 2-s segment starts with a keyframe that x264 codes with its look-ahead over the
    segment's frames; a last segment a few frames long got a coarser one (HyperFrames'
    timed-descendant-visibility: 44 dB from HyperFrames' picture there, where the other
    segments' keyframes are 48). Under a HyperFrames quality name x264 sees it out to a whole
    segment (copies, dropped): the file keeps its frames, and that keyframe its sharpness."""
    rng = np.random.default_rng(3)
    blocks = np.repeat(np.repeat(rng.integers(60, 200, (6, 8, 3)), 8, 0), 8, 1)
    picture = (blocks + rng.integers(-20, 20, blocks.shape)).clip(0, 255).astype(np.uint8)
    jpeg = av.CodecContext.create("mjpeg", "w")
    jpeg.width, jpeg.height, jpeg.pix_fmt = 64, 48, "yuvj420p"
    jpeg.time_base = jpeg.framerate = 1  # type: ignore[assignment]
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuvj420p")
    (packet,) = jpeg.encode(frame)

    async def decoded(output: Output) -> list[np.ndarray]:
        out = io.BytesIO()
        encoder = H264Encoder(output, out.write)
        for _ in range(output.frames):
            await encoder.put(bytes(packet))
        await encoder.finish()
        with av.open(io.BytesIO(out.getvalue()), mode="r") as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]

    output = Output(64, 48, 10, 42, "h264", 23, "medium", quality=quality)  # segments of 20
    (lossless, *_) = await decoded(dataclasses.replace(output, crf=0, frames=1))
    frames = await decoded(output)
    assert len(frames) == output.frames
    first, last = psnr(frames[0], lossless), psnr(frames[40], lossless)
    if quality:
        assert last >= first - 0.5, (first, last)
    else:  # framefleet's own settings (and bytes) as they were
        assert last < first - 3, (first, last)
