"""Sound: <audio> clips (start, media offset, duration, volume) mixed into one AAC track muxed
with the video, in sync: a tone and a flash placed at the same time land within one frame of
each other in the decoded MP4. Test media is generated here with PyAV."""

from __future__ import annotations

import io
import itertools
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from framefleet import AsyncClient, ErrorClass, FramefleetError
from framefleet.agent import sound_samples, soundtrack
from framefleet.agent.encoder import H264Encoder
from framefleet.core import jobspec
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses
from tests.test_chunks import OUTPUT, jpegs
from tests.video import decode, path_of

pytestmark = pytest.mark.e2e

FPS = 20
TONE = (1.0, 1.3)  # seconds into tone.wav where a 1 kHz tone sounds; silence elsewhere


def write_tone(path: Path, rate: int = 44_100, seconds: float = 2.0) -> None:
    """A mono WAV (44.1 kHz, so the agent resamples) of silence with one tone burst."""
    t = np.arange(round(seconds * rate)) / rate
    wave = np.where((t >= TONE[0]) & (t < TONE[1]), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0)
    samples = (wave * 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decode_audio(path: Path, codec: str = "aac") -> tuple[npt.NDArray[np.float32], int]:
    """The first channel from t = 0, by the stream's own timestamps (as a player plays it)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == codec
        frames = list(container.decode(audio=0))
        rate = stream.codec_context.sample_rate
        lead = np.zeros(round((frames[0].time or 0.0) * rate), np.float32)
        samples = np.concatenate([f.to_ndarray()[0] for f in frames]).astype(np.float32)
        return np.concatenate([lead, samples]), rate


def video_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time or 0.0) for f in container.decode(video=0)]


def bursts(samples: npt.NDArray[np.float32], rate: int) -> list[tuple[float, float, float]]:
    """(start s, end s, RMS) of each stretch louder than silence (5 ms windows)."""
    window = rate // 200
    rms = np.sqrt(np.mean(samples[: len(samples) // window * window].reshape(-1, window) ** 2, 1))
    loud = rms > 0.02
    found, start = [], None
    for i, on in enumerate([*loud, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            found.append((start * window / rate, i * window / rate, float(rms[start:i].mean())))
            start = None
    return found


async def test_tone_and_flash_land_in_the_same_frame(farm: FarmProcesses, tmp_path: Path) -> None:
    folder = tmp_path / "sound"
    folder.mkdir()
    write_tone(folder / "tone.wav")
    # The tone is 1.0 s into the file: from data-start 0.5 with data-media-start 0.25 it sounds
    # at 1.25 s, when the flash shows. The second clip plays it at half volume at 2.0 s; the
    # muted one would sound at 0 s and must not.
    (folder / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#000">
<div id="root" data-composition-id="main" data-start="0" data-duration="3"
     data-width="160" data-height="120" style="position:relative;width:160px;height:120px">
  <div id="flash" class="clip" data-start="1.25" data-duration="0.1" data-track-index="1"
       style="position:absolute;inset:0;background:#fff"></div>
  <audio id="loud" src="tone.wav" data-start="0.5" data-media-start="0.25"
         data-duration="1.5" data-track-index="2"></audio>
  <audio id="soft" src="tone.wav" data-start="1.9" data-media-start="0.9"
         data-volume="0.5" data-track-index="3"></audio>
  <audio id="silent" src="tone.wav" data-start="0" data-media-start="1.0" muted
         data-track-index="4"></audio>
</div></body></html>"""
    )
    spec = jobspec.template_job(folder, fps=FPS)
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    output = path_of(done.output_url)
    frames = decode(output)
    assert len(frames) == 3 * FPS
    # When a player shows the flash: its frame's timestamp, not just its index.
    flash = video_times(output)[next(i for i, f in enumerate(frames) if f[60, 80].mean() > 200)]
    assert flash == pytest.approx(1.25)
    samples, rate = decode_audio(output)
    assert rate == 48_000 and len(samples) / rate == pytest.approx(3.0, abs=0.05)
    (loud_start, loud_end, loud), (soft_start, _, soft) = bursts(samples, rate)
    assert abs(loud_start - flash) <= 1 / FPS, (loud_start, flash)
    assert abs(loud_start - flash) <= 0.01, "in step to the 5 ms window, not just the frame"
    assert loud_end - loud_start == pytest.approx(0.3, abs=1 / FPS)
    assert soft_start == pytest.approx(2.0, abs=1 / FPS)
    assert soft / loud == pytest.approx(0.5, abs=0.08)


async def test_a_silent_template_has_no_audio_stream(farm: FarmProcesses) -> None:
    """Templates without audible media keep writing one video stream, as before."""
    spec = jobspec.template_job(TEMPLATES / "solid.html", width=64, height=64, fps=10, frames=3)
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    with av.open(str(path_of(done.output_url))) as container:
        assert (len(container.streams.video), len(container.streams.audio)) == (1, 0)


def pitch(samples: npt.NDArray[np.float32], rate: int, start: float, end: float) -> float:
    """The loudest frequency (Hz) between two times."""
    piece = samples[round(start * rate) : round(end * rate)]
    return float(np.argmax(np.abs(np.fft.rfft(piece))) * rate / len(piece))


async def test_playback_rate_stretches_sound_at_its_pitch(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    """data-playback-rate 2 from 0.5 s into tone.wav (tone at 1.0-1.3 s) sounds at 0.25 s for
    0.15 s; rate 0.5 from 0.9 s, starting at 1.0 s, sounds at 1.2 s for 0.6 s. Both keep the
    1 kHz pitch: time-stretched as HyperFrames' mixer does (atempo), not resampled."""
    folder = tmp_path / "rates"
    folder.mkdir()
    write_tone(folder / "tone.wav")
    (folder / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#000">
<div id="root" data-composition-id="main" data-start="0" data-duration="2.5"
     data-width="160" data-height="120" style="position:relative;width:160px;height:120px">
  <audio id="fast" src="tone.wav" data-start="0" data-media-start="0.5"
         data-playback-rate="2" data-track-index="1"></audio>
  <audio id="slow" src="tone.wav" data-start="1.0" data-media-start="0.9"
         data-playback-rate="0.5" data-track-index="2"></audio>
</div></body></html>"""
    )
    spec = jobspec.template_job(folder, fps=FPS)
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    samples, rate = decode_audio(path_of(done.output_url))
    # atempo's overlap-add window blurs an onset by a few tens of milliseconds (and slowed
    # down leaves a faint pre-echo, left out here by its loudness).
    loud = [b for b in bursts(samples, rate) if b[2] > 0.1]
    (fast_start, fast_end, _), (slow_start, slow_end, _) = loud
    assert fast_start == pytest.approx(0.25, abs=0.03) and slow_start == pytest.approx(
        1.2, abs=0.05
    )
    assert fast_end - fast_start == pytest.approx(0.15, abs=0.05)
    assert slow_end - slow_start == pytest.approx(0.6, abs=0.08)
    assert pitch(samples, rate, fast_start, fast_end) == pytest.approx(1000, abs=40)
    assert pitch(samples, rate, slow_start, slow_end) == pytest.approx(1000, abs=20)


def wav(samples: npt.NDArray[np.float32]) -> bytes:
    """48 kHz stereo float samples as a WAV file's bytes."""
    out = io.BytesIO()
    with av.open(out, "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=soundtrack.SAMPLE_RATE)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate = soundtrack.SAMPLE_RATE
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def test_a_rate_without_keep_pitch_resamples_like_tape() -> None:
    """VideoJSON's speed: twice as fast is an octave up; negative plays backwards."""
    t = np.arange(2 * soundtrack.SAMPLE_RATE) / soundtrack.SAMPLE_RATE
    ramp = wav(np.vstack([np.sin(2 * np.pi * 440 * t) * t / 2] * 2).astype(np.float32))
    fast = soundtrack.SoundClip("a", 0.0, 0.5, 0.0, 1.0, rate=2.0)
    mixed = sound_samples.mix([fast], {"a": ramp}, 1.0)
    assert mixed is not None
    assert pitch(mixed[0], soundtrack.SAMPLE_RATE, 0.0, 0.5) == pytest.approx(880, abs=5)
    back = soundtrack.SoundClip("a", 0.0, 1.0, 2.0, 1.0, rate=-1.0)
    reverse = sound_samples.mix([back], {"a": ramp}, 1.0)
    assert reverse is not None
    loudness = np.abs(reverse[0]).reshape(10, -1).max(1)
    assert all(a > b for a, b in itertools.pairwise(loudness)), "the ramp plays backwards"


def test_only_what_the_clips_play_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile bundles cannot make the mix decode hours of sound: a clip decodes up to where
    it plays, and a video's clips together are bounded (TEMPLATE_RESOURCE_LIMIT)."""
    ten_seconds = wav(np.zeros((2, 10 * soundtrack.SAMPLE_RATE), np.float32))
    part = sound_samples._decode("a", ten_seconds, until=1.0)
    assert part is not None and part.shape[1] < 2 * soundtrack.SAMPLE_RATE
    clip = soundtrack.SoundClip("a", 0.0, math.inf, 0.5, 1.0)
    monkeypatch.setattr(sound_samples, "MAX_DECODED_SECONDS", 5)
    with pytest.raises(FramefleetError) as refused:
        both = {"a": ten_seconds, "b": ten_seconds}
        sound_samples.mix([clip, replace(clip, path="b")], both, 3.0)
    assert refused.value.error_class == ErrorClass.TEMPLATE_RESOURCE_LIMIT


def test_mono_is_heard_at_full_level_on_both_sides(tmp_path: Path) -> None:
    """As a browser plays it and HyperFrames mixes it (not FFmpeg's 3 dB down rematrix)."""
    write_tone(tmp_path / "tone.wav")  # mono, a 0.5 peak
    decoded = sound_samples._decode("tone.wav", (tmp_path / "tone.wav").read_bytes())
    assert decoded is not None and decoded.shape[0] == 2
    assert np.abs(decoded).max(axis=1) == pytest.approx([0.5, 0.5], abs=0.01)


def test_an_agent_without_sound_never_loads_numpy() -> None:
    """The render path and the encoder import the sample code (numpy) only for a render with
    sound: an agent's start, and `framefleet render`'s, stay without it."""
    code = (
        "import sys, framefleet.agent.render, framefleet.agent.encoder, framefleet.agent.executor\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
        "import framefleet.agent.sound_samples\n"
        "assert 'numpy' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def encoded_sound(tmp_path: Path, sound: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``sound`` through the MP4 encoder and back, as a player decodes it."""
    output = replace(OUTPUT, frames=round(sound.shape[1] / soundtrack.SAMPLE_RATE * OUTPUT.fps))
    out = io.BytesIO()
    encoder = H264Encoder(output, out.write, soundtrack=sound)
    for image in jpegs(output):
        encoder._encode(image)
    encoder._close(True)
    (tmp_path / "sound.mp4").write_bytes(out.getvalue())
    return decode_audio(tmp_path / "sound.mp4")[0]


def test_the_sound_plays_from_its_first_sample_as_closely_coded_as_hyperframes(
    tmp_path: Path,
) -> None:
    """AAC's priming is skipped by the MP4's edit list (not by losing the sound's first 1024
    samples): noise decodes in step from t = 0. And a steady tone (the sound of HyperFrames'
    missing-host-comp-id fixture) codes within HyperFrames' own error, about 1e-4 of full
    scale, from its first window on (FFmpeg's AAC coder started on the sound itself, not on
    silence, left 1.4e-3 and a dip in the first window)."""
    rate = soundtrack.SAMPLE_RATE
    noise = np.random.default_rng(7).uniform(-0.3, 0.3, (1, 2 * rate)).astype(np.float32)
    decoded = encoded_sound(tmp_path, np.vstack([noise, noise]))
    assert len(decoded) >= noise.shape[1]
    head = slice(0, 1024)
    assert np.corrcoef(decoded[head], noise[0, head])[0, 1] > 0.8, "the first 1024 samples"
    later = slice(1024, noise.shape[1])
    assert np.corrcoef(decoded[later], noise[0, later])[0, 1] > 0.8

    t = np.arange(3 * rate) / rate
    tone = (0.125 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    decoded = encoded_sound(tmp_path, np.vstack([tone, tone]))[: len(tone)]
    error = np.sqrt(np.mean((decoded - tone).reshape(-1, 1600) ** 2, axis=1))
    assert error.max() < 3e-4, error.round(5)
