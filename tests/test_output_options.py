"""HyperFrames' output options: MOV (ProRes 4444 with alpha, the 4:2:2 profiles), GIF, quality
names and --start/--end partial renders; each decoded back as a user would (frame count, size,
alpha, the template's colour at that time), and each combination that cannot be honoured
refused at submit as INVALID_JOB."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext

from framefleet import AsyncClient, ErrorClass, FramefleetError
from framefleet.agent.browser import Chromium
from framefleet.agent.file_encoders import open_encoder
from framefleet.agent.soundtrack import SoundClip, shifted
from framefleet.agent.template_page import TemplatePage
from framefleet.cli import build_parser, spec_from_args
from framefleet.core import jobspec
from framefleet.outputs.s3_objects import content_type
from framefleet.v1 import framefleet_pb2 as pb
from tests.farm_processes import FarmProcesses
from tests.test_encoder_colours import flat_jpeg
from tests.test_hyperframes_length import BOX as TIMELINE_BOX
from tests.test_hyperframes_length import TIMELINE, composition
from tests.test_soundtrack import TONE, bursts, decode_audio, write_tone
from tests.video import Frame, decode, is_colour, path_of

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# Red for the first second, green for the second, blue for the third (held at each step).
STEPS = """<!doctype html><html><head><style>
html, body { margin: 0; width: 100%; height: 100%; overflow: hidden; }
body { animation: c 3s step-end forwards; }
@keyframes c { 0% { background: rgb(255,0,0) } 33.333% { background: rgb(0,255,0) }
               66.667% { background: rgb(0,0,255) } 100% { background: rgb(0,0,255) } }
</style></head><body>%s</body></html>"""
# Nothing painted but an opaque red box on the left half: transparent elsewhere.
BOX = """<!doctype html><html><body style="margin:0;background:transparent">
<div style="position:absolute;left:0;top:0;width:40px;height:48px;background:rgb(255,0,0)">
</div></body></html>"""


def steps(folder: Path, body: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "index.html").write_text(STEPS.replace("%s", body))
    return folder


def refused(settings: pb.OutputSettings, message: str) -> None:
    with pytest.raises(FramefleetError) as caught:
        jobspec.resolve_output(settings)
    assert caught.value.error_class == ErrorClass.INVALID_JOB
    assert message in str(caught.value), str(caught.value)


def test_format_and_profile_rules() -> None:
    mov = jobspec.resolve_output(pb.OutputSettings(frames=1, format="mov"))
    assert (mov.codec, mov.profile, jobspec.has_alpha(mov)) == ("prores", "4444", True)
    hq = jobspec.resolve_output(pb.OutputSettings(frames=1, format="mov", profile="hq"))
    assert (hq.profile, jobspec.has_alpha(hq)) == ("hq", False)
    gif = jobspec.resolve_output(pb.OutputSettings(frames=1, format="gif"))
    assert (gif.codec, jobspec.has_alpha(gif)) == ("gif", False)
    refused(pb.OutputSettings(frames=1, format="mov", profile="4444xq"), "is not one of 4444")
    refused(pb.OutputSettings(frames=1, profile="hq"), "only a mov (ProRes) output")
    refused(pb.OutputSettings(frames=1, format="mov", crf=20), "crf does not apply to mov")
    refused(pb.OutputSettings(frames=1, format="gif", preset="slow"), "preset does not apply")
    refused(pb.OutputSettings(frames=1, format="gif", quality="draft"), "quality does not apply")
    refused(pb.OutputSettings(frames=1, format="avi"), "not one of mp4, webm, hls, mov, gif, png-")
    png = jobspec.resolve_output(pb.OutputSettings(frames=1, format="png-sequence"))
    assert (png.codec, jobspec.has_alpha(png)) == ("png", True)
    refused(pb.OutputSettings(frames=1, format="png-sequence", crf=1), "crf does not apply")
    assert jobspec.output_key("abcdef", "png-sequence") == "ab/cd/abcdef.zip"
    assert content_type("p/ab/cd/k.zip") == "application/zip"
    assert jobspec.output_key("abcdef", "mov") == "ab/cd/abcdef.mov"
    assert content_type("p/ab/cd/k.mov") == "video/quicktime"
    assert content_type("p/ab/cd/k.gif") == "image/gif"


def test_quality_names_map_to_encoder_settings() -> None:
    def settings(**kw: object) -> tuple[int, str]:
        o = jobspec.resolve_output(pb.OutputSettings(frames=1, **kw))  # type: ignore[arg-type]
        return o.crf, o.preset

    # HyperFrames' own numbers; no name keeps framefleet's defaults (and their bytes).
    assert settings(quality="draft") == (28, "ultrafast")
    assert settings(quality="looks") == (16, "medium")
    assert settings(quality="delivery") == (15, "fast")
    assert settings() == (23, "veryfast")
    assert settings(quality="delivery", crf=30) == (30, "fast")  # given settings win
    assert settings(quality="draft", preset="medium") == (28, "medium")
    assert settings(format="webm", quality="looks")[0] == 16
    assert settings(format="webm")[0] == 32
    refused(pb.OutputSettings(frames=1, quality="best"), "is not one of draft, looks, delivery")


def test_start_and_end_cut_the_timeline() -> None:
    def cut(**kw: object) -> tuple[int, int]:
        o = jobspec.resolve_output(pb.OutputSettings(fps=10, **kw))  # type: ignore[arg-type]
        return o.start_frame, o.frames

    assert cut(duration_seconds=3, start_seconds=1, end_seconds=2) == (10, 10)
    assert cut(duration_seconds=3, start_seconds=1.5) == (15, 15)
    assert cut(duration_seconds=3, end_seconds=0.5) == (0, 5)
    # A composition whose length is its own: to its end, known once loaded.
    open_ = jobspec.resolve_output(pb.OutputSettings(fps=10, start_seconds=1), open_length=True)
    assert (open_.start_frame, open_.frames) == (10, 0)
    refused(pb.OutputSettings(duration_seconds=3, start_seconds=2, end_seconds=1), "not after")
    refused(pb.OutputSettings(duration_seconds=3, end_seconds=4), "past the source's 3s")
    refused(pb.OutputSettings(duration_seconds=3, start_seconds=3), "not before the end")
    refused(pb.OutputSettings(duration_seconds=3, start_seconds=-1), "outside 0..600s")


def test_content_keys_of_jobs_without_the_options_are_unchanged() -> None:
    """The options join the content key only when used, so existing keys (and cached
    outputs) stay; when used, they change it."""
    spec = pb.JobSpec(template=pb.Template(html="<p>x</p>"), output=pb.OutputSettings(frames=5))
    before = {  # the key as it was computed before these options existed
        "renderer": jobspec.RENDERER_VERSION,
        "source": jobspec.source_key(spec),
        "params": {},
        "output": {"width": 1280, "height": 720, "fps": 30, "frames": 5, "codec": "h264",
                   "crf": 23, "preset": "veryfast", "format": "mp4"},
    }  # fmt: skip
    blob = json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert jobspec.content_key(spec) == hashlib.sha256(blob).hexdigest()
    keys = set()
    for settings in (
        pb.OutputSettings(frames=5),
        pb.OutputSettings(frames=5, start_seconds=0.1),
        pb.OutputSettings(frames=5, format="mov"),
        pb.OutputSettings(frames=5, format="mov", profile="hq"),
    ):
        keys.add(jobspec.content_key(pb.JobSpec(template=spec.template, output=settings)))
    assert len(keys) == 4


def test_a_partial_render_hears_the_sound_from_its_start() -> None:
    clips = [
        SoundClip("a.wav", start=0.0, end=4.0, media_start=0.5, volume=1.0),
        SoundClip("b.wav", start=2.0, end=3.0, media_start=0.0, volume=1.0),
        SoundClip("c.wav", start=0.0, end=1.0, media_start=0.0, volume=1.0),
    ]
    a, b = shifted(clips, 1.5)
    assert (a.start, a.end, a.media_start) == (0.0, 2.5, 2.0)
    assert (b.start, b.end, b.media_start) == (0.5, 1.5, 0.0)
    assert shifted(clips, 0.0) == clips


def test_the_cli_takes_the_options(tmp_path: Path) -> None:
    folder = str(steps(tmp_path / "steps"))
    mov = ["--format", "mov", "--profile", "hq", "--start", "1", "--end", "2.5"]
    args = build_parser().parse_args(["submit", folder, "--duration", "3", *mov])
    output = spec_from_args(args, "out").output
    got = (output.format, output.profile, output.start_seconds, output.end_seconds)
    assert got == ("mov", "hq", 1.0, 2.5)
    args = build_parser().parse_args(["submit", folder, "--duration", "1", "--quality", "draft"])
    assert spec_from_args(args, "out").output.quality == "draft"
    gif = ["--format", "gif", "--crf", "20"]
    args = build_parser().parse_args(["submit", folder, "--duration", "1", *gif])
    with pytest.raises(FramefleetError, match="crf does not apply to gif"):
        spec_from_args(args, "out")


@pytest.mark.parametrize(
    ("profile", "named"), [("hq", "HQ"), ("422", "Standard"), ("lt", "LT"), ("proxy", "Proxy")]
)
async def test_each_422_profile_is_that_prores_profile(profile: str, named: str) -> None:
    output = jobspec.resolve_output(
        pb.OutputSettings(width=64, height=32, frames=2, format="mov", profile=profile)
    )
    out = io.BytesIO()
    encoder = open_encoder(output, out.write)
    for _ in range(2):
        await encoder.put(flat_jpeg(76, 85, 255))  # red
    await encoder.finish()
    with av.open(io.BytesIO(out.getvalue()), mode="r") as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.profile, ctx.pix_fmt) == (named, "yuv422p10le")
    frames = decode_bytes(out.getvalue())
    assert len(frames) == 2 and is_colour(frames[1][16, 32], RED, 12), frames[1][16, 32]


async def test_a_mov_is_the_same_bytes_every_time() -> None:
    output = jobspec.resolve_output(
        pb.OutputSettings(width=64, height=32, frames=3, format="mov", profile="hq")
    )
    made = []
    for _ in range(2):
        out = io.BytesIO()
        encoder = open_encoder(output, out.write)
        for y in (40, 120, 200):
            await encoder.put(flat_jpeg(y, 128, 128))
        await encoder.finish()
        made.append(out.getvalue())
    assert made[0] == made[1] and len(decode_bytes(made[0])) == 3


async def test_a_gif_is_the_same_bytes_every_time() -> None:
    output = jobspec.resolve_output(
        pb.OutputSettings(width=64, height=32, frames=6, fps=10, format="gif")
    )
    greys = [0, 60, 120, 180, 240, 255]
    pictures = [flat_jpeg(y, 128, 128) for y in greys]
    made = []
    for _ in range(2):
        out = io.BytesIO()
        encoder = open_encoder(output, out.write)
        for picture in pictures:
            await encoder.put(picture)
        await encoder.finish()
        made.append(out.getvalue())
    assert made[0] == made[1]
    got = [int(f[16, 32, 0]) for f in decode_bytes(made[0])]
    assert max(abs(g - w) for g, w in zip(got, greys, strict=True)) <= 4, got


def decode_bytes(data: bytes) -> list[Frame]:
    with av.open(io.BytesIO(data), mode="r") as container:
        return [cast(Frame, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


async def render(farm: FarmProcesses, spec: pb.JobSpec) -> Path:
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error
    return path_of(done.output_url)


@pytest.mark.e2e
async def test_mov_4444_keeps_alpha(farm: FarmProcesses, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(BOX)
    spec = jobspec.template_job(tmp_path, width=80, height=48, fps=10, frames=4, format="mov")
    output = await render(farm, spec)
    assert output.suffix == ".mov"
    with av.open(str(output)) as container:
        assert container.format.name.startswith("mov")
        (stream,) = container.streams
        assert (stream.codec_context.name, stream.codec_context.profile) == ("prores", "4444")
        pictures = [f.to_ndarray(format="rgba") for f in container.decode(video=0)]
    assert len(pictures) == 4 and pictures[0].shape == (48, 80, 4)
    box, clear = pictures[3][24, 20].tolist(), pictures[3][24, 60].tolist()
    assert box[3] == 255 and is_colour(np.array(box[:3]), RED, 8), box
    assert clear[3] == 0, clear


@pytest.mark.e2e
async def test_mov_422_profile_shows_the_template_at_each_time(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    folder = steps(tmp_path / "steps", '<audio src="tone.wav" data-start="0"></audio>')
    write_tone(folder / "tone.wav", seconds=3.0)
    spec = jobspec.template_job(
        folder, width=64, height=48, fps=5, duration=3, format="mov", profile="hq"
    )
    output = await render(farm, spec)
    with av.open(str(output)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.name, ctx.profile, ctx.pix_fmt) == ("prores", "HQ", "yuv422p10le")
    frames = decode(output)
    assert len(frames) == 15 and frames[0].shape == (48, 64, 3)
    for n, colour in ((2, RED), (7, GREEN), (12, BLUE)):
        assert is_colour(frames[n][24, 32], colour, 8), (n, frames[n][24, 32])
    # Its sound: 16-bit PCM, the tone where it is in the file.
    with av.open(str(output)) as container:
        assert container.streams.audio[0].codec_context.name == "pcm_s16le"
        left = [f.to_ndarray().reshape(-1, 2)[:, 0] for f in container.decode(audio=0)]
        rate = container.streams.audio[0].codec_context.sample_rate
    samples = np.concatenate(left).astype(np.float32) / np.float32(32768)
    assert len(samples) == pytest.approx(3 * rate, abs=1024)
    ((start, end, _),) = bursts(samples, rate)
    assert abs(start - TONE[0]) < 0.01 and abs(end - TONE[1]) < 0.01, (start, end)


@pytest.mark.e2e
async def test_gif_has_every_frame_in_the_template_colours(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    # A gradient besides the steps: more colours than one step needs, one palette for all.
    gradient = '<div style="height:16px;background:linear-gradient(90deg,#000,#fff)"></div>'
    folder = steps(tmp_path / "steps", gradient)
    spec = jobspec.template_job(folder, width=64, height=48, fps=5, duration=3, format="gif")
    output = await render(farm, spec)
    assert output.suffix == ".gif" and output.read_bytes()[:6] == b"GIF89a"
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.name == "gif"
    frames = decode(output)
    assert len(frames) == 15 and frames[0].shape == (48, 64, 3)
    for n, colour in ((2, RED), (7, GREEN), (12, BLUE)):
        assert is_colour(frames[n][32, 32], colour, 12), (n, frames[n][32, 32])
    ramp = frames[7][8, :, 0].astype(int)
    assert ramp[2] < 30 and ramp[-3] > 225 and np.all(np.diff(ramp[2:-2]) >= -12)


@pytest.mark.e2e
async def test_png_sequence_is_every_frame_of_the_part_asked_for(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    """A ZIP of lossless PNGs, one per frame of 1.5 s .. 3 s, named in order, each the
    template's colour at its time and transparent where the page paints nothing."""
    # The steps on the top half only; the page paints nothing below.
    folder = tmp_path / "steps"
    folder.mkdir()
    top = STEPS.replace("body { animation", "div { height: 24px; animation")
    (folder / "index.html").write_text(top.replace("%s", "<div></div>"))
    spec = jobspec.template_job(
        folder, width=64, height=48, fps=4, duration=3, format="png-sequence", start=1.5
    )
    output = await render(farm, spec)
    assert output.suffix == ".zip"
    with zipfile.ZipFile(output) as archive:
        names = archive.namelist()
        assert names == [f"frame_{n:06d}.png" for n in range(6)]
        pictures = []
        for name in names:
            with av.open(io.BytesIO(archive.read(name)), mode="r") as image:
                pictures.append(next(image.decode(video=0)).to_ndarray(format="rgba"))
    assert pictures[0].shape == (48, 64, 4)
    assert pictures[0][12, 32].tolist() == [0, 255, 0, 255]  # 1.5 s: green, exactly
    assert pictures[5][12, 32].tolist() == [0, 0, 255, 255]  # 2.75 s: blue
    assert pictures[5][36, 32, 3] == 0  # nothing painted: transparent


@pytest.mark.e2e
async def test_start_and_end_render_that_part_with_its_sound(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    folder = steps(tmp_path / "steps", '<audio src="tone.wav" data-start="0"></audio>')
    write_tone(folder / "tone.wav", seconds=3.0)
    spec = jobspec.template_job(folder, width=64, height=48, fps=10, duration=3, start=0.5, end=2)
    output = await render(farm, spec)
    frames = decode(output)
    assert len(frames) == 15  # 0.5 s .. 2 s
    assert is_colour(frames[0][24, 32], RED)  # 0.5 s
    assert is_colour(frames[6][24, 32], GREEN)  # 1.1 s
    assert is_colour(frames[14][24, 32], GREEN)  # 1.9 s
    samples, rate = decode_audio(output)
    ((start, _, _),) = bursts(samples, rate)
    assert start == pytest.approx(TONE[0] - 0.5, abs=0.01)


@pytest.mark.e2e
async def test_sound_into_a_gif_fails_with_a_class(farm: FarmProcesses, tmp_path: Path) -> None:
    folder = steps(tmp_path / "steps", '<audio src="tone.wav" data-start="0"></audio>')
    write_tone(folder / "tone.wav")
    spec = jobspec.template_job(folder, width=64, height=48, fps=5, duration=1, format="gif")
    async with AsyncClient(farm.address) as client:
        job = await client.submit(spec)
        with pytest.raises(FramefleetError) as failure:
            await client.wait(job.id)
        final = await client.get(job.id)
    assert failure.value.error_class == ErrorClass.INVALID_JOB
    assert "has sound and a gif output has none" in str(failure.value)
    assert (final.state, final.attempt) == (pb.JOB_STATE_FAILED, 1)


def test_resolution_presets_scale_the_page() -> None:
    def scaled(**kw: object) -> tuple[tuple[int, int], tuple[int, int], float]:
        o = jobspec.resolve_output(pb.OutputSettings(frames=1, **kw))  # type: ignore[arg-type]
        return (o.width, o.height), o.page_size, o.scale

    assert scaled(resolution="1080p") == ((1920, 1080), (1280, 720), 1.5)
    assert scaled(resolution="4k", width=1920, height=1080) == ((3840, 2160), (1920, 1080), 2.0)
    assert scaled(resolution="portrait", width=540, height=960)[2] == 2.0
    assert scaled(resolution="square", width=360, height=360)[2] == 3.0
    # An orientation-free name takes the page's orientation, as in HyperFrames.
    assert scaled(resolution="4k", width=540, height=960)[0] == (2160, 3840)
    assert scaled(resolution="1080p", width=540, height=540)[0] == (1080, 1080)
    assert scaled(resolution="480p")[0] == (854, 480)  # within rounding of 16:9
    assert scaled() == ((1280, 720), (1280, 720), 1.0)
    refused(pb.OutputSettings(frames=1, resolution="portrait"), "not the shape of the 1280x720")
    refused(pb.OutputSettings(frames=1, resolution="8k"), "is not one of landscape, portrait")
    refused(pb.OutputSettings(frames=1, resolution="4k-portrait"), "not the shape of the 1280")
    tiny = pb.OutputSettings(frames=1, width=160, height=90, resolution="4k")
    refused(tiny, "more than 10x the 160x90 page")


@pytest.mark.e2e
async def test_a_resolution_preset_draws_the_same_layout_sharper(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    """A 320x180 page with a 1 px black line at x = 80 and a red box over its right half, at
    1080p: the output is 1920x1080, the box still covers the right half (the layout did not
    change), and the line is 6 device pixels wide (drawn at scale 6, not stretched)."""
    (tmp_path / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#fff">
<div style="position:absolute;left:80px;top:0;width:1px;height:180px;background:#000"></div>
<div style="position:absolute;left:160px;top:0;width:160px;height:180px;background:rgb(255,0,0)">
</div></body></html>"""
    )
    spec = jobspec.template_job(
        tmp_path, width=320, height=180, fps=5, frames=2, resolution="1080p"
    )
    (frame, _) = decode(await render(farm, spec))
    assert frame.shape == (1080, 1920, 3)
    assert is_colour(frame[540, 950], (255, 255, 255)) and is_colour(frame[540, 970], RED)
    # Hard edges: black on exactly 6 pixels, white right beside (a 320 px picture stretched
    # to 1920 would ramp through grey over several pixels on each side).
    row = frame[540, :, 0].astype(int)
    assert np.all(row[480:486] < 24) and np.all(row[474:480] > 232) and np.all(row[486:492] > 232)


@pytest.mark.e2e
async def test_a_page_drawn_at_a_preset_draws_at_its_own_size_again() -> None:
    """A page (kept warm for the next job) goes back to one device pixel per CSS pixel."""
    html = '<body style="margin:0;background:rgb(0,0,255)"></body>'
    chromium = await Chromium.launch()
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        sizes = []
        for scale in (1.0, 6.0, 1.0, 1.5):
            await page.load(pb.Template(html=html), {}, (320, 180), 30, "k", scale)
            decoder = cast(VideoCodecContext, av.CodecContext.create(page.image_codec, "r"))
            (picture,) = decoder.decode(av.Packet(await page.frame(0, 10)))
            sizes.append((picture.width, picture.height))
    finally:
        await chromium.close()
    assert sizes == [(320, 180), (1920, 1080), (320, 180), (480, 270)]


@pytest.mark.e2e
async def test_a_composition_of_its_own_length_renders_from_start_to_its_end(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    """A timeline of 1.5 s (30 frames at 20 fps) from 0.5 s: its last 20 frames, the box
    already a third of the way; a start past its end fails with a class, not an empty video."""
    folder = composition(tmp_path / "c", TIMELINE_BOX, TIMELINE)
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(jobspec.template_job(folder, start=0.5))).id)
        late = await client.submit(jobspec.template_job(folder, start=2))
        with pytest.raises(FramefleetError) as failure:
            await client.wait(late.id)
    frames = decode(path_of(done.output_url))
    assert done.frames_total == 20 and len(frames) == 20
    red = np.flatnonzero(frames[0][10, :, 0] > 128)
    assert abs(int(red.min()) - 33) <= 2, red  # x = 100 * 0.5 / 1.5
    assert failure.value.error_class == ErrorClass.INVALID_JOB
    assert "past the composition's end" in str(failure.value)
