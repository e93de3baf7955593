"""Output formats: MP4 (H.264 + AAC, the default) and WebM (VP9 + Opus), chosen per job,
named by their suffix, streamed to the sink like MP4, and decoded back here as a user would
(HLS: tests/test_hls.py)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from framefleet import AsyncClient, ErrorClass, FramefleetError
from framefleet.core import jobspec
from framefleet.outputs.s3_objects import content_type
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.farm_processes import FarmProcesses
from tests.test_soundtrack import bursts, decode_audio, write_tone
from tests.video import decode, is_colour, path_of


def test_format_rules() -> None:
    webm = jobspec.resolve_output(pb.OutputSettings(frames=1, format="webm"))
    assert (webm.format, webm.codec, webm.crf) == ("webm", "vp9", 32)
    assert jobspec.resolve_output(pb.OutputSettings(frames=1)).format == "mp4"
    for settings, message in [
        (pb.OutputSettings(frames=1, format="avi"), "format 'avi' is not one of mp4, webm"),
        (pb.OutputSettings(frames=1, format="webm", codec="h264"), "does not go in webm"),
        (pb.OutputSettings(frames=1, format="webm", crf=64), "crf 64 is outside 0..63"),
        (pb.OutputSettings(frames=1, crf=52), "crf 52 is outside 0..51"),
    ]:
        with pytest.raises(FramefleetError) as refused:
            jobspec.resolve_output(settings)
        assert refused.value.error_class == ErrorClass.INVALID_JOB
        assert message in str(refused.value)
    assert jobspec.output_key("abcdef", "webm") == "ab/cd/abcdef.webm"
    assert content_type("p/ab/cd/k.webm") == "video/webm"
    assert content_type("p/ab/cd/k.mp4") == "video/mp4"


@pytest.mark.e2e
async def test_webm_job_renders_vp9_with_opus_sound(farm: FarmProcesses, tmp_path: Path) -> None:
    folder = tmp_path / "sound"
    folder.mkdir()
    write_tone(folder / "tone.wav")  # a tone 1.0 s into the file
    (folder / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:rgb(0,0,255)">
<audio src="tone.wav" data-start="0"></audio></body></html>"""
    )
    spec = jobspec.template_job(folder, width=160, height=120, fps=20, duration=2, format="webm")
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    output = path_of(done.output_url)
    assert output.suffix == ".webm"
    with av.open(str(output)) as container:
        assert container.format.name.startswith("matroska")
        assert [s.codec_context.name for s in container.streams] == ["vp9", "opus"]
    frames = decode(output)
    assert len(frames) == 40 and is_colour(frames[20][60, 80], (0, 0, 255))
    samples, rate = decode_audio(output, "opus")
    ((start, _, _),) = bursts(samples, rate)
    assert start == pytest.approx(1.0, abs=0.01)


@pytest.mark.e2e
async def test_the_default_stays_mp4(farm: FarmProcesses) -> None:
    spec = jobspec.template_job(TEMPLATES / "solid.html", width=64, height=64, fps=10, frames=3)
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    assert done.output_url.endswith(".mp4")
    with av.open(str(path_of(done.output_url))) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264"]


@pytest.mark.e2e
async def test_webm_keeps_a_transparent_background(farm: FarmProcesses, tmp_path: Path) -> None:
    """A page that paints no background renders to VP9 with alpha: transparent around an
    opaque red box (read back with libvpx's decoder, which reads VP9's alpha)."""
    (tmp_path / "index.html").write_text(
        """<!doctype html><html><body style="margin:0">
<div style="position:absolute;left:0;top:0;width:80px;height:120px;background:rgb(255,0,0)">
</div></body></html>"""
    )
    spec = jobspec.template_job(tmp_path, width=160, height=120, fps=10, frames=5, format="webm")
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    with av.open(str(path_of(done.output_url))) as container:
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        pictures = [
            f.to_ndarray(format="rgba") for p in container.demux(video=0) for f in decoder.decode(p)
        ]
    assert len(pictures) == 5
    red, clear = pictures[2][60, 40].tolist(), pictures[2][60, 120].tolist()
    assert red[3] > 250 and red[0] > 230 and red[1] < 25 and red[2] < 25, red
    assert clear[3] < 5, clear


@pytest.mark.e2e
async def test_webm_alpha_is_cleared_on_every_frame(farm: FarmProcesses, tmp_path: Path) -> None:
    """A semi-transparent box moving over nothing (HyperFrames' webm-transparency fixture in
    small): each frame shows it only where it is now, at its own alpha; no trail of where it
    was, and its shadow does not darken as frames pile up."""
    (tmp_path / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:transparent">
<style>@keyframes go { from { left: 0 } to { left: 120px } }</style>
<div style="position:absolute;top:20px;width:30px;height:30px;background:rgba(255,0,0,0.7);
box-shadow:0 0 0 10px rgba(0,0,0,0.5);animation:go 1s linear forwards"></div></body></html>"""
    )
    spec = jobspec.template_job(tmp_path, width=160, height=120, fps=10, frames=10, format="webm")
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
    with av.open(str(path_of(done.output_url))) as container:
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        pictures = [
            f.to_ndarray(format="rgba") for p in container.demux(video=0) for f in decoder.decode(p)
        ]
    first, last = pictures[0], pictures[9]  # the box at left 0, then at left 108
    assert abs(int(first[35, 15, 3]) - 179) < 12, first[35, 15]  # 0.7 alpha
    assert last[35, 15, 3] < 5, f"a trail where the box was: {last[35, 15]}"
    assert abs(int(last[35, 123, 3]) - 179) < 12, last[35, 123]
    # The shadow's ring, above the box: alpha 0.5 on every frame, not piling up toward 1.
    assert abs(int(first[15, 15, 3]) - 128) < 12 and abs(int(last[15, 123, 3]) - 128) < 12
