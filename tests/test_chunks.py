"""Chunked rendering, the agent's side: a video split into chunks of whole segments, each
encoded (or rendered) alone, is the chunks' bytes joined in order, the same bytes however it
was split, with and without sound; chunks are assembled by the sink and then deleted."""

from __future__ import annotations

import dataclasses
import io
import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import av
import numpy as np
import pytest

from framefleet import outputs, template_job
from framefleet.agent.assemble import assemble
from framefleet.agent.browser import Chromium
from framefleet.agent.encoder import H264Encoder, fragment_frames
from framefleet.agent.limits import RenderLimits
from framefleet.agent.render import render
from framefleet.agent.soundtrack import SAMPLE_RATE
from framefleet.agent.template_page import TemplatePage
from framefleet.core import chunks
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import Output
from framefleet.outputs.local import local_path
from framefleet.outputs.s3_assemble import plan as s3_plan
from framefleet.v1 import framefleet_pb2 as pb
from tests.conftest import TEMPLATES
from tests.video import Frame, is_colour, write_video

if TYPE_CHECKING:
    from framefleet.agent.soundtrack import Samples

OUTPUT = Output(width=160, height=96, fps=10, frames=137, codec="h264", crf=23, preset="veryfast")


def jpegs(output: Output) -> list[bytes]:
    """Synthetic captured frames: a bar that moves 3 px per frame over a gradient."""
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = output.width, output.height, "yuvj420p"
    ctx.time_base = Fraction(1, output.fps)
    images = []
    for n in range(output.frames):
        rgb = np.zeros((output.height, output.width, 3), np.uint8)
        rgb[:, :, 1] = np.arange(output.width, dtype=np.uint8)[None, :]
        rgb[20:60, (3 * n) % 140 : (3 * n) % 140 + 12] = 255
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
        images.append(bytes(ctx.encode(frame)[0]))
    return images


def tone(output: Output) -> Samples:
    """The soundtrack: a 440 Hz tone whose loudness changes every 0.3 s, the video's length."""
    t = np.arange(round(output.frames / output.fps * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.2 * (1 + (t // 0.3) % 3) * np.sin(2 * np.pi * 440 * t)
    return np.stack([wave, wave]).astype(np.float32)


async def encode(
    output: Output, images: list[bytes], first: int, end: int, sound: Samples | None
) -> bytes:
    out = io.BytesIO()
    encoder = H264Encoder(output, out.write, soundtrack=sound, first_frame=first, end_frame=end)
    for image in images[first:end]:
        await encoder.put(image)
    await encoder.finish()
    return out.getvalue()


def decode(data: bytes) -> list[Frame]:
    with av.open(io.BytesIO(data), mode="r") as container:
        return [cast(Frame, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def boxes(data: bytes) -> list[bytes]:
    """The top-level MP4 boxes' types, in order."""
    kinds, at = [], 0
    while at < len(data):
        kinds.append(data[at + 4 : at + 8])
        at += int.from_bytes(data[at : at + 4], "big")
    return kinds


@pytest.mark.parametrize(
    ("fps", "sound"), [(10, False), (10, True), (30, False), (30, True), (25, True)]
)
async def test_the_bytes_do_not_depend_on_the_split(fps: int, sound: bool) -> None:
    """Seven segments (the last one short), split into 1, 2 and 7 chunks. The frame
    rates give fragments of 3, 8 and 7 frames inside 2-s segments."""
    output = dataclasses.replace(OUTPUT, fps=fps, frames=14 * fps - 3)
    images, samples = jpegs(output), tone(output) if sound else None
    videos = {}
    for count in (1, 2, 7):
        ranges = chunks.plan(output.frames, output.fps, count)
        assert len(ranges) == count
        parts = [await encode(output, images, a, b, samples) for a, b in ranges]
        assert all(boxes(p)[0] == b"moof" for p in parts[1:])  # only the first has the init
        videos[count] = b"".join(parts)
    assert videos[1] == videos[2] == videos[7]
    segment = chunks.segment_frames(fps)
    # Fragments start at every segment and then every fragment_frames(fps) frames, so bytes
    # stream out about every quarter second.
    per_segment = math.ceil(segment / fragment_frames(fps))
    assert boxes(videos[1]).count(b"moof") > 6 * per_segment > 6
    frames = decode(videos[7])
    assert len(frames) == output.frames
    for n in (0, segment - 1, segment, segment + 1, 5 * segment - 1, 5 * segment, len(frames) - 1):
        x = (3 * n) % 140 + 6  # the bar at its place in every frame, across chunk borders
        assert frames[n][40, x].min() > 200, f"bar at frame {n}"
        assert frames[n][40, (x + 40) % 160].min() < 100, f"beside the bar at frame {n}"
    if sound:
        with av.open(io.BytesIO(videos[7]), mode="r") as container:
            audio = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
        expected = tone(output)[0]
        assert len(audio) >= len(expected)
        # The decoded sound follows the tone's loudness steps at their times, to the end.
        for second in (0.15, 2.05, 4.45, 9.0, 13.5):
            at = round(second * SAMPLE_RATE)
            got = np.abs(audio[at : at + 4800]).max()
            want = np.abs(expected[at : at + 4800]).max()
            assert abs(got - want) < 0.05, f"loudness at {second} s"


async def test_a_chunk_is_whole_segments_of_an_mp4() -> None:
    with pytest.raises(FramefleetError, match=r"\[5, 40\)"):
        H264Encoder(OUTPUT, lambda data: None, first_frame=5, end_frame=40)
    with pytest.raises(FramefleetError, match="whole segments"):
        H264Encoder(OUTPUT, lambda data: None, first_frame=20, end_frame=30)
    webm = dataclasses.replace(OUTPUT, format="webm")
    with pytest.raises(FramefleetError, match="whole segments"):
        H264Encoder(webm, lambda data: None, first_frame=20, end_frame=40)


@pytest.mark.e2e
async def test_a_template_rendered_in_chunks_is_the_whole_render(tmp_path: Path) -> None:
    """A real page in Chromium: every chunk seeks straight to its first frame, and the chunks
    joined are the whole render's bytes."""
    size = {"width": 640, "height": 240, "fps": 30, "frames": 90}
    spec = template_job(TEMPLATES / "moving_box.html", {}, **size)  # type: ignore[arg-type]
    splits: dict[int, list[Path]] = {1: [], 2: []}
    chromium = await Chromium.launch()
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        for count, paths in splits.items():
            for index, (first, end) in enumerate(chunks.plan(90, 30, count)):
                paths.append(tmp_path / f"split{count}-{index}.mp4")
                assign = pb.Assign(spec=spec, output_url=paths[-1].as_uri())
                if count > 1:  # a chunk; else the whole video
                    assign.first_frame, assign.end_frame = first, end
                progress: list[tuple[int, int]] = []
                result = await render(
                    assign, page, RenderLimits(), lambda d, t, *_, p=progress: p.append((d, t))
                )
                assert result.frames == end - first == progress[-1][0] == progress[-1][1]
    finally:
        await chromium.close()
    videos = {count: b"".join(p.read_bytes() for p in paths) for count, paths in splits.items()}
    assert videos[1] == videos[2]
    frames = decode(videos[2])
    assert len(frames) == 90
    for n in (0, 59, 60, 61, 89):  # moving_box.html: the rAF box moves 6 px per frame
        x = 6 * n
        assert is_colour(frames[n][120, x + 20], (0, 255, 0)), f"rAF box at frame {n}"
        assert is_colour(frames[n][120, x + 50], (0, 0, 0)), f"right of rAF box at frame {n}"


@pytest.mark.e2e
async def test_a_video_clip_and_its_sound_split_across_chunks(tmp_path: Path) -> None:
    """A HyperFrames composition whose <video> (with sound) plays across the chunk border: the
    second chunk starts mid-clip and draws the clip's frame for its time, the tone inside the
    second chunk is where it belongs, and the chunks joined are the whole render."""
    rate, seconds = 20, 3
    # Clip frame i is red 4 * i; a keyframe every 15 frames, so the second chunk's decoder
    # seeks to one; a tone from 2.2 s, inside the second chunk.
    write_video(
        tmp_path / "clip.mp4", rate=rate, frames=rate * seconds, red_step=4, tone_at=2.2,
        gop_size=15,
    )  # fmt: skip
    (tmp_path / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#000">
<div id="root" data-composition-id="main" data-start="0" data-duration="3" data-width="160"
     data-height="120" style="position:relative;width:160px;height:120px">
  <video id="clip" src="clip.mp4" muted data-has-audio="true" data-start="0"
         data-track-index="1" style="width:160px;height:120px"></video>
</div></body></html>"""
    )
    spec = template_job(tmp_path, fps=10, crf=12)
    paths = [tmp_path / name for name in ("whole.mp4", "chunk0.mp4", "chunk1.mp4")]
    assigns = [
        pb.Assign(spec=spec, output_url=paths[0].as_uri()),
        pb.Assign(spec=spec, output_url=paths[1].as_uri(), first_frame=0, end_frame=20),
        pb.Assign(spec=spec, output_url=paths[2].as_uri(), first_frame=20, end_frame=30),
    ]
    chromium = await Chromium.launch()
    try:
        page = await TemplatePage.open(await chromium.browser.new_context())
        for assign in assigns:
            await render(assign, page, RenderLimits(), lambda *_: None)
    finally:
        await chromium.close()
    whole = paths[0].read_bytes()
    assert paths[1].read_bytes() + paths[2].read_bytes() == whole
    frames = decode(whole)
    for n in (19, 20, 25):  # job frame n at t = n / 10 shows clip frame 2n (red 8n)
        assert abs(int(frames[n][60, 80, 0]) - 8 * n) <= 7, f"clip frame at job frame {n}"
    with av.open(io.BytesIO(whole), mode="r") as container:
        played = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    loud = np.flatnonzero(np.abs(played) > 0.25) / SAMPLE_RATE
    assert loud.min() == pytest.approx(2.2, abs=0.01) and loud.max() == pytest.approx(2.4, abs=0.01)


# --- assembly ------------------------------------------------------------------------------


def payload(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def assembly(job: str, output_url: str, count: int) -> pb.Assign:
    urls = [chunks.chunk_url(output_url, job, i) for i in range(count)]
    lease = pb.LeaseRef(job_id=job, fencing_token=1)
    return pb.Assign(lease=lease, output_url=output_url, chunk_urls=urls)


async def test_local_assembly_joins_the_chunks_and_removes_them(tmp_path: Path) -> None:
    target = tmp_path / "out" / "video.mp4"
    assign = assembly("job-1", target.as_uri(), 3)
    data = [payload(size, seed) for seed, size in enumerate((70_000, 1, 300_001))]
    paths = [local_path(url) for url in assign.chunk_urls]
    for path, part in zip(paths, data, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(part)
    result = await assemble(assign)
    assert target.read_bytes() == b"".join(data)
    assert result.output_bytes == len(b"".join(data)) and result.frames == 0
    assert sorted(p.name for p in target.parent.iterdir()) == ["video.mp4"]  # chunks gone
    # Redone after the chunks were deleted (the agent died before reporting): same answer.
    assert (await assemble(assign)).output_bytes == result.output_bytes
    assert target.read_bytes() == b"".join(data)
    # With a chunk missing and no output, nothing is made up.
    lost = assembly("job-2", (tmp_path / "lost.mp4").as_uri(), 2)
    local_path(lost.chunk_urls[0]).write_bytes(b"x")
    with pytest.raises(FramefleetError, match=r"chunk .* is missing") as failure:
        await assemble(lost)
    assert failure.value.error_class == ErrorClass.OUTPUT_ERROR
    assert not (tmp_path / "lost.mp4").exists()
    assert local_path(lost.chunk_urls[0]).exists()


async def test_an_assembly_of_other_files_is_refused(tmp_path: Path) -> None:
    """A coordinator (or something posing as one) cannot make the agent read or delete files
    that are not the job's own chunks."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not touch")
    assign = assembly("job-1", (tmp_path / "video.mp4").as_uri(), 1)
    assign.chunk_urls[0] = secret.as_uri()
    with pytest.raises(FramefleetError, match="not job job-1's chunks") as failure:
        await assemble(assign)
    assert failure.value.error_class == ErrorClass.OUTPUT_ERROR
    assert secret.read_bytes() == b"do not touch"
    assert not (tmp_path / "video.mp4").exists()


async def test_chunks_and_their_output_share_one_kind_of_destination(tmp_path: Path) -> None:
    with pytest.raises(FramefleetError, match="cannot assemble") as failure:
        await outputs.assemble(["s3://bucket/video.mp4.job.chunk000"], tmp_path.as_uri())
    assert failure.value.error_class == ErrorClass.OUTPUT_ERROR


def test_s3_parts_copy_big_chunks_and_gather_small_ones() -> None:
    mib = 1024 * 1024
    parts = s3_plan([("a", 6 * mib), ("b", 5 * mib), ("c", 1)])
    assert [(p.chunks, p.copied) for p in parts] == [(["a"], True), (["b"], True), (["c"], False)]
    parts = s3_plan([(c, 2 * mib) for c in "abcd"])
    assert [(p.chunks, p.copied) for p in parts] == [(["a", "b", "c"], False), (["d"], False)]
    parts = s3_plan([("a", 1), ("b", 9 * mib), ("c", 9 * mib)])  # a small one takes the next
    assert [(p.chunks, p.copied) for p in parts] == [(["a", "b"], False), (["c"], True)]
