"""The encoder's colour conversion: Chromium's JPEG captures (BT.601, full range) become H.264's
BT.709 limited range with each colour where the standards put it, within one level."""

from __future__ import annotations

import io

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
