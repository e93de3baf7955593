"""<video> pictures drawn frame-exact at t (decoded by the agent with PyAV: Chromium's own
seeking kept showing the first frame), in plain templates and HyperFrames clips, H.264 and VP9;
and a video's own sound in the soundtrack. Test media is generated here with PyAV: frame i of a
video is a flat colour whose red channel is 8 * i, so a captured pixel says which frame shows."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy
import pytest
import pytest_asyncio

from framefleet import AsyncClient, ErrorClass, FramefleetError
from framefleet.agent.browser import Chromium
from framefleet.agent.template_page import TemplatePage
from framefleet.agent.video_clips import VideoClips
from framefleet.core import jobspec
from tests import video
from tests.farm_processes import FarmProcesses
from tests.test_soundtrack import bursts, decode_audio
from tests.video import decode, path_of

pytestmark = pytest.mark.e2e

RATE = 20  # the videos' frame rate
FRAMES = 32


def write_video(path: Path, codec: str, with_tone_at: float | None = None) -> None:
    video.write_video(path, codec, rate=RATE, frames=FRAMES, red_step=8, tone_at=with_tone_at)


def shown(image: bytes, x: int = 80, y: int = 60) -> int | None:
    """Which video frame a captured pixel shows; None for black (no picture)."""
    with av.open(io.BytesIO(image), mode="r") as container:
        pixel = next(container.decode(video=0)).to_ndarray(format="rgb24")[y, x].astype(int)
    if pixel.sum() < 30:
        return None
    return int(pixel[0] + 4) // 8


@pytest_asyncio.fixture
async def page() -> AsyncIterator[TemplatePage]:
    chromium = await Chromium.launch()
    try:
        yield await TemplatePage.open(await chromium.browser.new_context())
    finally:
        await chromium.close()


async def frames_shown(
    page: TemplatePage, html: str, folder: Path, times: list[float], x: int = 80
) -> list[int | None]:
    (folder / "index.html").write_text(html)
    spec = jobspec.template_job(folder)
    await page.load(spec.template, {}, (320, 120), 30)
    videos = await VideoClips.attach(page, spec.template)
    seen = []
    for t in times:
        await videos.draw(t)
        seen.append(shown(await page.frame(t * 1000, 10), x))
    videos.close()
    return seen


@pytest.mark.parametrize(("codec", "suffix"), [("libx264", "mp4"), ("libvpx-vp9", "webm")])
async def test_a_video_shows_the_frame_for_t(
    page: TemplatePage, tmp_path: Path, codec: str, suffix: str
) -> None:
    write_video(tmp_path / f"clip.{suffix}", codec)
    html = f"""<!doctype html><html><body style="margin:0;background:#000">
<video src="clip.{suffix}" muted style="width:160px;height:120px"></video></body></html>"""
    # Forward, backward, and past the end (its last frame holds).
    times = [0, 0.5, 1.0, 1.45, 0.25, 5.0]
    assert await frames_shown(page, html, tmp_path, times) == [0, 10, 20, 29, 5, 31]


async def test_a_hyperframes_video_clip_plays_its_window(
    page: TemplatePage, tmp_path: Path
) -> None:
    """data-start 0.5, data-media-start 0.5, data-duration 0.8: hidden before and after, and
    at t it shows the file at 0.5 + (t - 0.5)."""
    write_video(tmp_path / "clip.mp4", "libx264")
    html = """<!doctype html><html><body style="margin:0;background:#000">
<div id="root" data-composition-id="main" data-start="0" data-duration="2" data-width="320"
     data-height="120" style="position:relative;width:320px;height:120px">
  <video id="intro" src="clip.mp4" muted data-start="0.5" data-media-start="0.5"
         data-duration="0.8" data-track-index="1"
         style="position:absolute;left:0;top:0;width:160px;height:120px"></video>
</div></body></html>"""
    times = [0.25, 0.5, 0.75, 1.25, 1.35]
    assert await frames_shown(page, html, tmp_path, times) == [None, 10, 15, 25, None]


async def test_a_videos_pictures_and_sound_reach_the_mp4(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    """Through the farm: the MP4 shows the video's frames in order and carries its sound,
    declared with data-has-audio, at the time its tone plays in the clip."""
    write_video(tmp_path / "talk.mp4", "libx264", with_tone_at=0.5)
    (tmp_path / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#000">
<div id="root" data-composition-id="main" data-start="0" data-duration="1.5" data-width="160"
     data-height="120" style="position:relative;width:160px;height:120px">
  <video id="talk" src="talk.mp4" muted data-has-audio="true" data-start="0.25"
         data-track-index="1" style="width:160px;height:120px"></video>
</div></body></html>"""
    )
    spec = jobspec.template_job(tmp_path, fps=RATE, crf=12)
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    output = path_of(done.output_url)
    frames = decode(output)
    assert len(frames) == 30
    # Two lossy encodes away from the source, a frame's red is within a few levels of 8 * i:
    # one frame early or late would be 8 off, and a repeated frame would not increase.
    assert all(f[60, 80].sum() < 30 for f in frames[:5]), "black before the clip starts"
    red = [int(f[60, 80, 0]) for f in frames[5:]]
    assert all(b > a for a, b in itertools.pairwise(red)), red
    assert all(abs(r - 8 * i) <= 7 for i, r in enumerate(red)), red
    samples, rate = decode_audio(output)
    ((start, _, _),) = bursts(samples, rate)
    assert start == pytest.approx(0.75, abs=0.01)


async def test_hdr_video_is_refused_not_drawn_untoned(page: TemplatePage, tmp_path: Path) -> None:
    # An HLG clip (HyperFrames renders it as HDR or tone-maps it): framefleet renders SDR only, so
    # it refuses the job by class rather than drawing HDR pictures as if they were SDR.
    with av.open(str(tmp_path / "hlg.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.color_trc = 18  # HLG
        for i in range(3):
            frame = av.VideoFrame(64, 48, "yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(FramefleetError) as refused:
        await frames_shown(page, '<video src="hlg.mp4"></video>', tmp_path, [0])
    assert refused.value.error_class == ErrorClass.TEMPLATE_UNSUPPORTED
    assert "hlg.mp4 is HDR video (HLG" in str(refused.value)


@pytest.mark.parametrize(("width", "height"), [(320, 240), (1280, 720)])
async def test_a_video_naming_no_colour_matrix_looks_as_chromium_shows_it(
    page: TemplatePage, tmp_path: Path, width: int, height: int
) -> None:
    """A file that names no colour matrix (as ffmpeg writes one from RGB by default): Chromium,
    and so HyperFrames and a browser preview, read SD as BT.601 and HD as BT.709; the agent's
    pictures must match what Chromium itself plays, not swscale's BT.601 for all."""
    # Stripes where the two matrices differ most: yellow, cyan, magenta; every frame alike.
    rgb = numpy.zeros((height, width, 3), dtype="uint8")
    for n, colour in enumerate([(255, 255, 0), (0, 255, 255), (255, 0, 255)]):
        rgb[:, n * width // 3 : (n + 1) * width // 3] = colour
    with av.open(str(tmp_path / "clip.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(4):
            frame = av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(format="yuv420p")
            frame.pts = n  # swscale's default above: BT.601, and no matrix named in the file
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    (tmp_path / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#000">
<video src="clip.mp4" muted style="width:300px;height:120px;object-fit:fill"></video>
</body></html>"""
    )
    spec = jobspec.template_job(tmp_path)
    stripes = [(50, 60), (150, 60), (250, 60)]
    # Chromium playing the file itself, composited freely (a <video> under BeginFrame control
    # may present no picture: why the agent draws them).
    chromium = await Chromium.launch(capture="screenshot")
    try:
        itself = await TemplatePage.open(await chromium.browser.new_context())
        await itself.load(spec.template, {}, (320, 120), 30)
        played = pixels(await itself.frame(100, 10), stripes)
    finally:
        await chromium.close()
    await page.load(spec.template, {}, (320, 120), 30)
    videos = await VideoClips.attach(page, spec.template)
    await videos.draw(0.1)
    drawn = pixels(await page.frame(100, 10), stripes)  # the agent's picture
    videos.close()
    for want, got in zip(played, drawn, strict=True):
        assert max(abs(a - b) for a, b in zip(want, got, strict=True)) <= 6, (played, drawn)


def pixels(image: bytes, where: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    with av.open(io.BytesIO(image), mode="r") as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return [tuple(int(v) for v in frame[y, x]) for x, y in where]
