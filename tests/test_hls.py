"""HLS as objects under one prefix: KEY.m3u8 (the job's output) naming KEY/init.mp4 and
KEY/seg00001.m4s…, each segment uploaded as it completes; a named copy copies the set; the cache
serves only a whole set; a failed render leaves nothing behind. Decoded back by FFmpeg's HLS
reader (PyAV), as a player would."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from framefleet import AsyncClient, ErrorClass, FramefleetError
from framefleet.agent.hls import SegmentedUpload, Segmenter
from framefleet.client import JobFailed
from framefleet.core import jobspec
from tests.farm_processes import FarmProcesses
from tests.test_soundtrack import bursts, decode_audio, write_tone
from tests.video import decode, is_colour, path_of

FPS = 10


def fragmented_mp4(frames: int) -> bytes:
    """What the agent's encoder writes for HLS: fMP4 fragmented at keyframes, a GOP of 2 s."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}) as mp4:
        stream = mp4.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.gop_size = 2 * FPS
        stream.options = {"sc_threshold": "0", "bf": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 5, np.uint8), "rgb24")
            frame.pts = i
            mp4.mux(stream.encode(frame))
        mp4.mux(stream.encode(None))
    return out.getvalue()


async def eventually(check: Callable[[], bool], seconds: float = 20.0) -> None:
    """Waits for a file the upload writes on this loop (so no blocking wait will do)."""
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_the_segmenter_cuts_init_and_fragments() -> None:
    data = fragmented_mp4(45)  # 2 s + 2 s + 0.5 s
    pieces = []
    segmenter = Segmenter()
    for at in range(0, len(data), 1000):  # boxes split across writes
        pieces += segmenter.feed(data[at : at + 1000])
    assert [p[4:8] for p in pieces] == [b"ftyp", b"moof", b"moof", b"moof"]
    assert segmenter.pending == 0
    assert sum(map(len, pieces)) <= len(data)  # the trailing mfra index is left out


async def test_segments_are_uploaded_as_they_complete(tmp_path: Path) -> None:
    data = fragmented_mp4(45)
    url = (tmp_path / "ab" / "KEY.m3u8").as_uri()
    folder = tmp_path / "ab" / "KEY"
    upload = SegmentedUpload(url, 45, FPS)
    last_moof = data.rindex(b"moof") - 4
    upload.write(data[:last_moof])  # the init segment and two whole fragments
    await eventually(lambda: (folder / "seg00002.m4s").is_file())
    assert (folder / "init.mp4").is_file() and not (tmp_path / "ab" / "KEY.m3u8").exists()
    upload.write(data[last_moof:])
    await upload.complete()
    lines = (tmp_path / "ab" / "KEY.m3u8").read_text().splitlines()
    assert '#EXT-X-MAP:URI="KEY/init.mp4"' in lines
    assert [line for line in lines if not line.startswith("#")] == [
        "KEY/seg00001.m4s", "KEY/seg00002.m4s", "KEY/seg00003.m4s"
    ]  # fmt: skip
    assert len(decode(tmp_path / "ab" / "KEY.m3u8")) == 45
    assert upload.size == sum(f.stat().st_size for f in files(tmp_path))


async def test_an_aborted_upload_leaves_nothing(tmp_path: Path) -> None:
    data = fragmented_mp4(45)
    upload = SegmentedUpload((tmp_path / "KEY.m3u8").as_uri(), 45, FPS)
    upload.write(data[: data.rindex(b"moof") - 4])
    await eventually(lambda: (tmp_path / "KEY" / "seg00002.m4s").is_file())
    await upload.abort()
    assert files(tmp_path) == [] and not (tmp_path / "KEY").exists()


# --- through the farm -----------------------------------------------------------------------


def blue_with_sound(folder: Path) -> Path:
    folder.mkdir()
    write_tone(folder / "tone.wav")
    (folder / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:rgb(0,0,255)">
<audio src="tone.wav"></audio></body></html>"""
    )
    return folder


@pytest.mark.e2e
async def test_hls_objects_decode_name_and_cache_as_a_set(
    farm: FarmProcesses, tmp_path: Path
) -> None:
    folder = blue_with_sound(tmp_path / "hls")
    spec = jobspec.template_job(
        folder, width=160, height=120, fps=FPS, duration=5, format="hls", name="named/clip"
    )
    async with AsyncClient(farm.address) as client:
        done = await client.wait((await client.submit(spec)).id)
        playlist = path_of(done.output_url)
        segments = playlist.with_suffix("")
        assert playlist.suffix == ".m3u8"
        assert sorted(p.name for p in segments.iterdir()) == [
            "init.mp4", "seg00001.m4s", "seg00002.m4s", "seg00003.m4s"
        ]  # fmt: skip
        lines = playlist.read_text().splitlines()
        assert [line for line in lines if line.startswith("#EXTINF")] == [
            "#EXTINF:2.000000,", "#EXTINF:2.000000,", "#EXTINF:1.000000,"
        ]  # fmt: skip
        assert done.output_bytes == sum(p.stat().st_size for p in [playlist, *segments.iterdir()])
        for output in (playlist, path_of(done.named_url)):
            frames = decode(output)
            assert len(frames) == 50 and is_colour(frames[45][60, 80], (0, 0, 255))
            samples, rate = decode_audio(output)
            ((start, _, _),) = bursts(samples, rate)
            assert start == pytest.approx(1.0, abs=0.01)
        named = path_of(done.named_url)
        assert named.name == "clip.m3u8" and (named.parent / "clip" / "seg00003.m4s").is_file()

        again = await client.wait((await client.submit(spec)).id)
        assert again.cache_hit, "a whole set is served from the cache"
        (segments / "seg00002.m4s").unlink()
        third = await client.wait((await client.submit(spec)).id)
        assert not third.cache_hit, "a set missing a segment renders again"
    assert len(decode(playlist)) == 50


@pytest.mark.e2e
async def test_a_failed_hls_render_leaves_no_half_set(farm: FarmProcesses, tmp_path: Path) -> None:
    folder = tmp_path / "fails"
    folder.mkdir()
    (folder / "index.html").write_text(
        """<!doctype html><html><body style="margin:0;background:#0f0"><script>
framefleet.onSeek((t) => { if (t >= 5.5) throw new Error("broken at 5.5 s"); });
</script></body></html>"""
    )
    spec = jobspec.template_job(folder, width=160, height=120, fps=FPS, duration=6, format="hls")
    async with AsyncClient(farm.address) as client:
        job = await client.submit(spec)
        playlist = farm.root / "out" / jobspec.output_key(job.content_key, "hls")
        segments = playlist.with_suffix("")
        saw_segment = False

        async def watch() -> None:
            nonlocal saw_segment
            while True:
                saw_segment = saw_segment or (segments / "seg00001.m4s").is_file()
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        with pytest.raises(JobFailed) as failed:
            await client.wait(job.id)
        watcher.cancel()
    assert failed.value.job.error_class == "TEMPLATE_SCRIPT_ERROR"
    assert saw_segment, "segments were streamed before the failure"
    assert not playlist.exists() and not segments.exists(), "no half set is left"


async def test_a_failed_segment_upload_stops_the_encoder_with_its_cause(tmp_path: Path) -> None:
    (tmp_path / "KEY").write_text("a file where the segments' folder would go")
    upload = SegmentedUpload((tmp_path / "KEY.m3u8").as_uri(), 45, FPS)
    data = fragmented_mp4(45)
    upload.write(data[: data.index(b"moof") + 4])  # the init segment is complete: sent, fails
    with pytest.raises(FramefleetError) as failed:
        async with asyncio.timeout(20):
            while True:  # the encoder thread's next writes
                await asyncio.to_thread(upload.write, b"")
                await asyncio.sleep(0.01)
    assert failed.value.error_class == ErrorClass.OUTPUT_ERROR and "KEY" in str(failed.value)
    with pytest.raises(FramefleetError):
        await upload.complete()
    await upload.abort()
    assert not (tmp_path / "KEY.m3u8").exists()
