"""The split rule: chunks are runs of whole segments that cover the video once, in order."""

from __future__ import annotations

import itertools

import pytest

from framefleet.core import chunks, jobspec
from framefleet.core.errors import FramefleetError
from framefleet.v1 import framefleet_pb2 as pb


@pytest.mark.parametrize(
    ("frames", "fps", "count", "chunk_frames"),
    [(360, 30, 2, 0), (137, 10, 7, 0), (137, 10, 3, 0), (360, 30, 1, 0), (361, 30, 0, 100),
     (59, 30, 4, 0), (3600, 30, 64, 0), (3600, 30, 0, 1)],
)  # fmt: skip
def test_chunks_are_whole_segments_covering_the_video(
    frames: int, fps: int, count: int, chunk_frames: int
) -> None:
    ranges = chunks.plan(frames, fps, count, chunk_frames)
    segment = chunks.segment_frames(fps)
    assert ranges[0][0] == 0 and ranges[-1][1] == frames
    for (a, b), (c, _) in itertools.pairwise(ranges):
        assert b == c and a < b and a % segment == 0
    assert len(ranges) <= max(count, 1) or chunk_frames
    assert len(ranges) <= chunks.MAX_CHUNKS


def test_chunk_frames_round_up_to_segments() -> None:
    assert chunks.plan(360, 30, 0, 100) == [(0, 120), (120, 240), (240, 360)]


def test_automatic_split_uses_free_slots_but_keeps_chunks_long() -> None:
    assert chunks.auto_chunks(360, 30, 2) == 2  # 12 s on two slots
    assert chunks.auto_chunks(90, 30, 8) == 1  # 3 s: not worth a second page load
    assert chunks.auto_chunks(360, 30, 0) == 1


def test_too_many_chunks_is_an_invalid_job() -> None:
    spec = pb.JobSpec(template=pb.Template(html="<html></html>"), chunks=chunks.MAX_CHUNKS + 1)
    spec.output.duration_seconds = 1
    with pytest.raises(FramefleetError, match="chunks"):
        jobspec.validate(spec)
    spec.chunks = 2
    jobspec.validate(spec)


@pytest.mark.parametrize("container", ["webm", "hls"])
def test_a_forced_split_of_a_format_rendered_whole_is_refused(container: str) -> None:
    spec = pb.JobSpec(template=pb.Template(html="<html></html>"), chunks=2)
    spec.output.duration_seconds, spec.output.format = 8, container
    with pytest.raises(FramefleetError, match="only mp4"):
        jobspec.validate(spec)
    spec.chunks = 1  # "never split" is fine for any format
    jobspec.validate(spec)
