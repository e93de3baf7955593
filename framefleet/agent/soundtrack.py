"""The soundtrack: every audible <audio> and <video> of the page, decoded from the job's bundle
with PyAV, placed at its clip's start (from its media offset, for its duration, at its volume),
mixed into one stereo track and encoded (AAC in MP4, Opus in WebM) beside the video, in step
with its frames.

The page says which media play when (framefleet/agent/timecontrol.js ``soundClips``, refined by the
HyperFrames runtime's clip windows); nothing is played in the browser, so the mix is exact to
the sample and the same on every run. This module reads the clips and holds the sound's
constants; the samples themselves (decoding, mixing, encoding: numpy) are in
framefleet/agent/sound_samples.py, which only a render with sound imports."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Samples = npt.NDArray[np.float32]  # (channels, samples), planar float

SAMPLE_RATE = 48_000
CHANNELS = 2
AAC_FRAME = 1024  # samples per AAC frame
OPUS_FRAME = 960  # 20 ms, Opus's usual frame
BIT_RATE = 192_000
AAC_PRIMING = 1024  # samples of silence FFmpeg's AAC encoder puts first
MAX_VOLUME = 4.0  # a gain above 1 amplifies (VideoJSON's volume); the mix is clipped to ±1


@dataclass(frozen=True)
class SoundClip:
    path: str  # inside the job's bundle
    start: float  # seconds into the video
    end: float  # seconds into the video (inf: to the end of the media)
    media_start: float  # seconds into the media file at ``start``
    volume: float
    # Media seconds per video second: the media plays from media_start at this rate (negative:
    # backwards from it). Resampled, so pitch follows speed as on tape (VideoFlow's `speed`),
    # or with keep_pitch time-stretched by FFmpeg's atempo, as HyperFrames' mixer does for
    # data-playback-rate.
    rate: float = 1.0
    keep_pitch: bool = False


def clips_from_page(raw: list[dict[str, Any]]) -> list[SoundClip]:
    clips = []
    for item in raw:
        end = item.get("end")
        clips.append(
            SoundClip(
                path=str(item["path"]),
                start=max(0.0, float(item.get("start") or 0.0)),
                end=math.inf if end is None else float(end),
                media_start=max(0.0, float(item.get("mediaStart") or 0.0)),
                volume=min(max(float(item.get("volume", 1.0)), 0.0), MAX_VOLUME),
                rate=float(item.get("rate") or 1.0),
                keep_pitch=bool(item.get("keepPitch")),
            )
        )
    return clips


def shifted(clips: list[SoundClip], seconds: float) -> list[SoundClip]:
    """The clips as a partial render that starts ``seconds`` into the source hears them: a
    clip under way at that point plays on from where it is, one already over is dropped."""
    if not seconds:
        return clips
    kept = []
    for clip in clips:
        start, end = clip.start - seconds, clip.end - seconds
        if end <= 0:
            continue
        media_start = clip.media_start + max(0.0, -start) * clip.rate
        kept.append(
            replace(clip, start=max(0.0, start), end=end, media_start=max(0.0, media_start))
        )
    return kept
