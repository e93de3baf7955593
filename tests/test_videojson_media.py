"""VideoJSON video and audio layers: checked at submit like other layers (clear INVALID_JOB
refusals naming the path), then rendered through the farm: the video layer's pictures drawn
frame-exact, its sound and an audio layer's mixed into the AAC track, in step with the frames."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from framefleet import AsyncClient
from framefleet.client import JobFailed
from framefleet.core import jobspec, videojson
from framefleet.core.errors import ErrorClass, FramefleetError
from tests.farm_processes import FarmProcesses
from tests.test_soundtrack import bursts, decode_audio, video_times, write_tone
from tests.video import decode, path_of

W, H, FPS = 160, 120, 20
FLASH_FRAME = 20  # the clip's frame (1.0 s in) that is white; the others ramp red by 8 a frame


def write_clip(path: Path, tone_at: float) -> None:
    """A 1.6 s H.264 clip at 20 fps (frame i red 8 * i, frame 20 white) with a 0.2 s tone."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = container.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        for i in range(32):
            picture = np.zeros((H, W, 3), np.uint8)
            picture[:, :] = (255, 255, 255) if i == FLASH_FRAME else (8 * i, 0, 255 - 8 * i)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        t = np.arange(32 * 48_000 // FPS) / 48_000
        wave = np.where((t >= tone_at) & (t < tone_at + 0.2), 0.5 * np.sin(2 * np.pi * 700 * t), 0)
        for at in range(0, len(wave), 1024):
            chunk = np.tile(wave[at : at + 1024].astype(np.float32), (2, 1))
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = 48_000, at
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))


def layer(kind: str, layer_id: str, source: str, **settings: Any) -> dict[str, Any]:
    return {
        "id": layer_id,
        "type": kind,
        "settings": {"enabled": True, "source": source, **settings},
        "properties": {"fit": "cover"} if kind == "video" else {},
        "animations": [],
    }


def document(*layers: dict[str, Any], duration: float = 2.0) -> dict[str, Any]:
    return {
        "name": "media",
        "width": W,
        "height": H,
        "fps": FPS,
        "duration": duration,
        "backgroundColor": "#000000",
        "layers": list(layers),
    }


def data_url(path: Path, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


# --- checked at submit ----------------------------------------------------------------------

SOUND = "data:audio/wav;base64," + base64.b64encode(b"RIFF").decode()


def refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(FramefleetError) as caught:
        videojson.resolve(json.dumps(doc), {})
    assert caught.value.error_class == ErrorClass.INVALID_JOB
    return str(caught.value.args[0])


def test_media_layers_are_accepted() -> None:
    doc = document(
        layer("audio", "music", SOUND, startTime=0, sourceDuration=1, speed=-2),
        layer("video", "clip", "data:video/mp4;base64,AAAA", startTime=0.5, sourceDuration=1),
    )
    doc["layers"][0]["properties"] = {"volume": 2.5, "mute": False}
    videojson.resolve(json.dumps(doc), {})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda x: x["settings"].update(source="https://example.com/a.wav"), "data:audio/"),
        (lambda x: x["settings"].update(source="data:audio/wav,raw"), "base64 data: URL"),
        (lambda x: x["settings"].update(source="data:audio/wav;base64,!!"), "not valid base64"),
        (lambda x: x["properties"].update(volume=5), "volume: 5 is outside 0..4"),
        (lambda x: x["settings"].update(speed=-20), "speed: -20; media layers play at"),
        (lambda x: x["properties"].update(pan=-1), "pan is not supported yet"),
        (lambda x: x["properties"].update(pitch=2), "pitch is not supported yet"),
        (
            lambda x: x["animations"].append(
                {"property": "volume", "keyframes": [{"time": 0, "value": 0}]}
            ),
            "animations[0].property: animated volume is not supported yet",
        ),
    ],
)
def test_bad_media_layers_are_refused_with_their_path(change: Any, expected: str) -> None:
    sound = layer("audio", "music", SOUND, startTime=0, sourceDuration=1)
    change(sound)
    message = refusal(document(sound))
    assert "$.layers[0]" in message and expected in message, message


def test_a_video_source_must_be_a_video() -> None:
    clip = layer("video", "clip", SOUND, startTime=0, sourceDuration=1)
    assert "data:video/" in refusal(document(clip))


def test_media_in_a_group_is_refused() -> None:
    group = {
        "id": "g",
        "type": "group",
        "settings": {"enabled": True, "startTime": 0, "sourceDuration": 1},
        "properties": {},
        "animations": [],
        "children": [layer("audio", "music", SOUND, startTime=0, sourceDuration=1)],
    }
    message = refusal(document(group))
    assert "$.layers[0].children[0]" in message and "inside a group" in message


def test_files_beside_the_document_are_inlined(tmp_path: Path) -> None:
    write_tone(tmp_path / "tone.wav")
    (tmp_path / "doc.json").write_text(
        json.dumps(document(layer("audio", "a", "tone.wav", startTime=0, sourceDuration=1)))
    )
    loaded = json.loads(videojson.load(tmp_path / "doc.json"))
    assert loaded["layers"][0]["settings"]["source"].startswith("data:audio/wav;base64,")


# --- through the farm -----------------------------------------------------------------------


@pytest.mark.e2e
async def test_video_and_audio_layers_reach_the_mp4_in_step(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    """The clip plays from 0.25 s into it at 0.5 s: its flash (1.0 s in) shows at 1.25 s and
    its own tone (0.4 s in) sounds at 0.65 s. The audio layer starts 0.75 s into tone.wav
    (whose tone is at 1.0 s) at 1.0 s, so its tone sounds at 1.25 s, with the flash, until the
    layer's 0.4 s end, at its volume 0.5."""
    write_clip(tmp_path / "clip.mp4", tone_at=0.4)
    write_tone(tmp_path / "tone.wav")
    doc = document(
        layer("video", "clip", "clip.mp4", startTime=0.5, sourceStart=0.25, sourceDuration=1.2),
        layer("audio", "tone", "tone.wav", startTime=1.0, sourceStart=0.75, sourceDuration=0.4),
    )
    doc["layers"][1]["properties"] = {"volume": 0.5}
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    spec = jobspec.video_json_job(tmp_path / "doc.json", crf=12)
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    assert done.error_message == ""
    output = path_of(done.output_url)
    frames = decode(output)
    assert len(frames) == 2 * FPS
    centre = [f[H // 2, W // 2].astype(int) for f in frames]
    assert all(p.sum() < 30 for p in centre[:10]), "black before the layer starts"
    flash = next(n for n, p in enumerate(centre) if p.min() > 200)
    assert flash == 25
    # Frame n shows the clip's frame n - 5 (0.25 s in at 0.5 s): its red ramps by 8 a frame.
    for n in (10, 14, 19, 24, 30, 33):
        red, blue = centre[n][0], centre[n][2]
        assert abs(red - 8 * (n - 5)) <= 7 and abs(blue - (255 - 8 * (n - 5))) <= 7, (n, red)
    assert all(p.sum() < 30 for p in centre[-5:]), "black after the layer ends (1.7 s)"
    samples, rate = decode_audio(output)
    (own, _, own_rms), (tone, tone_end, tone_rms) = bursts(samples, rate)
    assert own == pytest.approx(0.65, abs=0.01)
    shown = video_times(output)[flash]
    assert abs(tone - shown) <= 1 / FPS and abs(tone - 1.25) <= 0.01, (tone, shown)
    # Trimmed: 0.4 s of tone.wav from 0.75 s keeps 0.15 s of its tone, at half volume.
    assert tone_end - tone == pytest.approx(0.15, abs=0.02)
    # tone.wav is mono: heard at full level on both sides, as in a browser and HyperFrames.
    assert tone_rms / own_rms == pytest.approx(0.5, abs=0.05)


@pytest.mark.e2e
async def test_a_media_layer_that_cannot_be_decoded_fails_loudly(farm: FarmProcesses) -> None:
    doc = document(layer("audio", "noise", SOUND, startTime=0, sourceDuration=1), duration=0.5)
    async with AsyncClient(farm.address) as client:
        submitted = await client.submit(jobspec.video_json_job(json.dumps(doc)))
        with pytest.raises(JobFailed) as failed:
            await client.wait(submitted.id)
    job = failed.value.job
    assert job.error_class == "TEMPLATE_LOAD_ERROR", job
    assert "VideoJSON layer 'noise'" in job.error_message
    assert job.attempt == 1, "not retried"
