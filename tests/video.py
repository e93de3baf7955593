"""Reading outputs back as a user would: decode the MP4 and look at pixels."""

from __future__ import annotations

from pathlib import Path
from typing import cast
from urllib.parse import unquote, urlparse

import av
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]


def path_of(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(unquote(parsed.path))


def decode(path: Path) -> list[Frame]:
    with av.open(str(path)) as container:
        return [cast(Frame, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def is_colour(pixel: Frame, rgb: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(rgb)) <= tolerance))


def write_video(
    path: Path,
    codec: str = "libx264",
    *,
    rate: int,
    frames: int,
    red_step: int,
    tone_at: float | None = None,
    gop_size: int = 0,
) -> None:
    """A test video: frame i is a flat colour whose red channel is ``red_step * i`` (so a
    captured pixel says which frame shows); with ``tone_at``, a stereo AAC track silent but
    for a 1 kHz tone from ``tone_at`` seconds, 0.2 s long."""
    with av.open(str(path), "w") as container:
        video = cast(av.VideoStream, container.add_stream(codec, rate=rate))
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        if gop_size:
            video.codec_context.gop_size = gop_size
        audio = None if tone_at is None else container.add_stream("aac", rate=48_000)
        if audio is not None:
            audio.layout = "stereo"
        for i in range(frames):
            picture = np.zeros((120, 160, 3), np.uint8)
            picture[:, :] = (red_step * i, 0, 255 - red_step * i)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is None or tone_at is None:
            return
        t = np.arange(frames * 48_000 // rate) / 48_000
        tone = np.where((t >= tone_at) & (t < tone_at + 0.2), 0.5, 0.0)
        wave = (tone * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
        for at in range(0, len(wave), 1024):
            piece = np.tile(wave[at : at + 1024], (2, 1))
            sound = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = 48_000, at
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
