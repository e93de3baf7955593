"""The soundtrack's samples (agent/soundtrack.py reads the clips): each clip's media decoded to
48 kHz stereo float, played at its rate, mixed into one track, and encoded into the output
container in step with the video. numpy lives here, so a render without sound never loads it."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import av
import numpy as np

from framefleet.agent.soundtrack import (
    AAC_FRAME,
    AAC_PRIMING,
    BIT_RATE,
    CHANNELS,
    OPUS_FRAME,
    SAMPLE_RATE,
    SoundClip,
)
from framefleet.core.errors import ErrorClass, FramefleetError

if TYPE_CHECKING:
    from framefleet.agent.soundtrack import Samples

# Media decoded for one video's soundtrack (all files together): float stereo takes 384 KB a
# second, so this bounds the mix's memory (about 700 MB; three 10-minute tracks for the
# longest video) whatever a bundle's files hold.
MAX_DECODED_SECONDS = 1800
# The resampler's range; faster or slower media is refused (VideoJSON's at submit: MIN_SPEED).
MIN_RATE, MAX_RATE = 1 / 16, 16


def _decode(path: str, data: bytes, until: float = math.inf) -> Samples | None:
    """The media's first audio stream as 48 kHz stereo float, from its start to ``until``
    seconds (what the clips play of it); None when it has no audio."""
    limit = until * SAMPLE_RATE
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                return None
            # Mono goes to both sides at full level, as a browser plays it and HyperFrames mixes
            # it (FFmpeg's own mono-to-stereo rematrix would put it 3 dB down).
            mono = container.streams.audio[0].channels == 1
            layout = "mono" if mono else "stereo"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
            chunks, decoded = [], 0
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    decoded += out.samples
                if decoded > limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except (av.FFmpegError, ValueError) as e:
        raise FramefleetError(
            ErrorClass.TEMPLATE_LOAD_ERROR, f"the sound of {path} could not be decoded: {e}"
        ) from e
    if not chunks:
        return np.zeros((CHANNELS, 0), np.float32)
    samples = np.concatenate(chunks, axis=1).astype(np.float32)
    return np.repeat(samples, CHANNELS, axis=0) if mono else samples


def mix(clips: list[SoundClip], assets: Mapping[str, bytes], seconds: float) -> Samples | None:
    """The mixed soundtrack for a video ``seconds`` long; None when nothing is audible."""
    total = round(seconds * SAMPLE_RATE)
    track = np.zeros((CHANNELS, total), np.float32)
    audible = False
    reach = _reach(clips, seconds)
    if sum(reach.values()) > MAX_DECODED_SECONDS:
        raise FramefleetError(
            ErrorClass.TEMPLATE_RESOURCE_LIMIT,
            f"the sound clips play {sum(reach.values()):.0f}s of media; at most "
            f"{MAX_DECODED_SECONDS}s is decoded for one video",
        )
    decoded: dict[str, Samples | None] = {}
    for clip in clips:
        if clip.path not in assets:
            raise FramefleetError(
                ErrorClass.TEMPLATE_LOAD_ERROR, f"media {clip.path} is not in the job's bundle"
            )
        if clip.path not in decoded:
            decoded[clip.path] = _decode(clip.path, assets[clip.path], reach.get(clip.path, 0.0))
        source = decoded[clip.path]
        if source is None or clip.volume == 0:
            continue
        at = round(clip.start * SAMPLE_RATE)
        length = min(total, round(clip.end * SAMPLE_RATE) if clip.end < math.inf else total) - at
        piece = _played(clip, source, max(0, length))
        if piece.shape[1] == 0:
            continue
        track[:, at : at + piece.shape[1]] += piece * clip.volume
        audible = True
    if not audible:
        return None
    result: Samples = np.clip(track, -1.0, 1.0)
    return result


def _reach(clips: list[SoundClip], seconds: float) -> dict[str, float]:
    """How far into each file the clips of a video ``seconds`` long play (seconds, with a
    margin for the resampler): only that much is decoded."""
    reach: dict[str, float] = {}
    for clip in clips:
        length = min(clip.end, seconds) - clip.start
        if length <= 0:
            continue
        end = clip.media_start + (length * clip.rate if clip.rate > 0 else 0.0)
        reach[clip.path] = max(reach.get(clip.path, 0.0), end + 0.1)
    return reach


def _played(clip: SoundClip, source: Samples, length: int) -> Samples:
    """At most ``length`` samples of the clip as it sounds: from its media offset, at its rate."""
    offset = round(clip.media_start * SAMPLE_RATE)
    if clip.rate == 1:
        return source[:, offset : offset + length]
    speed = abs(clip.rate)
    if not MIN_RATE <= speed <= MAX_RATE:
        raise FramefleetError(
            ErrorClass.TEMPLATE_UNSUPPORTED,
            f"{clip.path} plays at rate {clip.rate:g}; sound supports {MIN_RATE:g}..{MAX_RATE:g}",
        )
    needed = math.ceil(length * speed) + 1
    if clip.rate > 0:
        media = source[:, offset : offset + needed]
    else:  # backwards from the offset
        media = source[:, max(0, offset - needed) : offset][:, ::-1]
    stretch = _tempo if clip.keep_pitch else _resample
    return stretch(np.ascontiguousarray(media), speed)[:, :length]


def _resample(samples: Samples, speed: float) -> Samples:
    """The samples played ``speed`` times as fast: read as if recorded at SAMPLE_RATE * speed and
    resampled (FFmpeg's filtered resampler) to SAMPLE_RATE, so pitch moves with speed."""
    if samples.shape[1] == 0:
        return samples
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
    frame.sample_rate = round(SAMPLE_RATE * speed)
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
    chunks = [out.to_ndarray() for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(chunks, axis=1).astype(np.float32) if chunks else samples[:, :0]


def _tempo(samples: Samples, speed: float) -> Samples:
    """The samples played ``speed`` times as fast at the same pitch: FFmpeg's atempo filter,
    chained for factors past its 0.5..2 sweet spot (as HyperFrames chains it)."""
    if samples.shape[1] == 0:
        return samples
    stages, rest = [], speed
    while rest > 2.0:
        stages.append(2.0)
        rest /= 2.0
    while rest < 0.5:
        stages.append(0.5)
        rest /= 0.5
    graph = av.filter.Graph()
    chain = [
        graph.add_abuffer(
            format="fltp",
            sample_rate=SAMPLE_RATE,
            layout="stereo",
            time_base=Fraction(1, SAMPLE_RATE),
        ),
        *(graph.add("atempo", f"{stage:.6f}") for stage in [*stages, rest]),
        graph.add("aformat", "sample_fmts=fltp:channel_layouts=stereo"),
        graph.add("abuffersink"),
    ]
    for a, b in itertools.pairwise(chain):
        a.link_to(b)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, 0, Fraction(1, SAMPLE_RATE)
    graph.push(frame)
    graph.push(None)
    chunks = []
    while True:
        try:
            chunks.append(cast(av.AudioFrame, graph.pull()).to_ndarray())
        except (av.BlockingIOError, av.EOFError):
            break
    return np.concatenate(chunks, axis=1).astype(np.float32) if chunks else samples[:, :0]


class SoundTrack:
    """The soundtrack's stream in the output container (AAC for MP4, Opus for WebM, PCM for
    MOV), written
    in step with the video: ``until(seconds)`` encodes the samples up to that time.

    A chunk of a video (agent/encoder.py) encodes the whole soundtrack from 0, so that its
    packets are those of the whole video's, and muxes only those dated in its ``window``
    [first, end) of samples (end None: to the end)."""

    def __init__(
        self,
        container: av.container.OutputContainer,
        samples: Samples,
        codec: str = "aac",
        window: tuple[int, int | None] = (0, None),
    ) -> None:
        self._container = container
        self._samples = samples
        self._stream = cast(av.AudioStream, container.add_stream(codec, rate=SAMPLE_RATE))
        self._stream.layout = "stereo"
        # PCM (a MOV's sound, as editors expect beside ProRes): 16-bit, packed, uncompressed.
        self._pcm = codec.startswith("pcm_")
        if not self._pcm:
            self._stream.bit_rate = BIT_RATE
        self._frame = OPUS_FRAME if codec == "libopus" else AAC_FRAME
        # AAC: the encoder's priming comes first and the MP4's edit list skips it
        # (framefleet/agent/mp4_edit.py), so the packets are dated from 0 with the priming and
        # the first sample plays at 0. One frame of silence goes in before the sound, as HyperFrames
        # encodes after a silent pre-roll: its packet is the priming the edit list skips, and
        # FFmpeg's two-loop coder, started on silence, codes a steady tone as closely as
        # HyperFrames' (started on the sound itself it stays coarse: docs/benchmarks.md). The
        # packet the encoder makes before that one is dropped. (WebM signals Opus's pre-skip
        # itself.)
        self._aac = codec == "aac"
        self._done = -AAC_FRAME if self._aac else 0  # the next frame's first sample
        self._first, self._end = window
        self._past_end = False  # a packet at or after the window's end came out

    def until(self, seconds: float) -> None:
        end = min(self._samples.shape[1], round(seconds * SAMPLE_RATE))
        while self._done + self._frame <= end and not self._past_end:
            self._encode(self._piece())

    def finish(self) -> None:
        # A chunk before the last stops once its window's packets are out (packets come out
        # in order); the whole video, or the last chunk, pads the last piece and flushes.
        while self._done < self._samples.shape[1] and not self._past_end:
            piece = self._piece()
            pad = self._frame - piece.shape[1]
            self._encode(np.pad(piece, ((0, 0), (0, pad))) if pad else piece)
        if not self._past_end:
            self._mux(self._stream.encode(None))

    def _piece(self) -> Samples:
        """The next frame's samples (silence before the sound's start; short at its end)."""
        if self._done < 0:
            return np.zeros((CHANNELS, self._frame), np.float32)
        return self._samples[:, self._done : self._done + self._frame]

    def _encode(self, piece: Samples) -> None:
        if self._pcm:
            packed = (np.clip(piece, -1.0, 1.0) * 32767).round().astype(np.int16).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
        else:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(piece), format="fltp", layout="stereo"
            )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._done
        self._done += self._frame
        self._mux(self._stream.encode(frame))

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        for packet in packets:
            stamp = packet.dts if packet.dts is not None else packet.pts
            assert stamp is not None and packet.time_base is not None
            at = stamp * packet.time_base * SAMPLE_RATE  # in samples
            if self._aac:  # dated from the priming before the sound at 0 (see __init__)
                if at < -AAC_PRIMING:
                    continue  # the priming before the silent frame
                shift = round(AAC_PRIMING / (packet.time_base * SAMPLE_RATE))
                packet.pts = None if packet.pts is None else packet.pts + shift
                packet.dts = None if packet.dts is None else packet.dts + shift
                at += AAC_PRIMING
            if self._end is not None and at >= self._end:
                self._past_end = True
            elif at >= self._first:
                self._container.mux(packet)
