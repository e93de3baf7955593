"""How one video is split into chunks: the rules the coordinator splits by and the agent encodes by.

A video is encoded in segments of SEGMENT_SECONDS, each starting with a keyframe and depending on
no other segment (closed GOPs), so a chunk is a run of whole segments and the video is the chunks'
bytes joined in order, whatever the split. Only MP4 is split: WebM (Matroska clusters), HLS
(a playlist over the file), MOV (one index of every frame, written at the end), GIF (one
palette from every frame) and PNG sequences (one ZIP) are rendered whole.
"""

from __future__ import annotations

import math

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

SEGMENT_SECONDS = 2
MAX_CHUNKS = 64
# An automatic split gives no chunk fewer segments than this (a chunk costs a page load).
AUTO_MIN_SEGMENTS = 2


def segment_frames(fps: int) -> int:
    """Frames per independently encoded segment."""
    return SEGMENT_SECONDS * fps


def splittable(container: str) -> bool:
    return container == "mp4"


def check(spec: pb.JobSpec) -> None:
    """The requested split is in bounds (INVALID_JOB otherwise)."""
    if spec.chunks > MAX_CHUNKS:
        message = f"chunks {spec.chunks} is more than {MAX_CHUNKS}"
        raise FramefleetError(ErrorClass.INVALID_JOB, message)
    container = spec.output.format or "mp4"
    if (spec.chunks > 1 or spec.chunk_frames) and not splittable(container):
        message = f"a {container} output is rendered whole: only mp4 is split into chunks"
        raise FramefleetError(ErrorClass.INVALID_JOB, message)


def plan(frames: int, fps: int, chunks: int, chunk_frames: int = 0) -> list[tuple[int, int]]:
    """Frame ranges [first, end) of at most ``chunks`` chunks of whole segments (or of
    ``chunk_frames`` frames rounded up to whole segments), as even as segments allow."""
    segment = segment_frames(fps)
    segments = math.ceil(frames / segment)
    if chunk_frames:
        chunks = math.ceil(segments / math.ceil(chunk_frames / segment))
    chunks = max(1, min(chunks, segments, MAX_CHUNKS))
    starts = [round(i * segments / chunks) * segment for i in range(chunks)]
    return list(zip(starts, [*starts[1:], frames], strict=True))


def auto_chunks(frames: int, fps: int, free_slots: int) -> int:
    """How many chunks an automatic split makes: one per free slot, none shorter than
    AUTO_MIN_SEGMENTS segments."""
    segments = math.ceil(frames / segment_frames(fps))
    return max(1, min(free_slots, segments // AUTO_MIN_SEGMENTS, MAX_CHUNKS))


def chunk_url(output_url: str, job_id: str, index: int) -> str:
    """Where chunk ``index`` of job ``job_id`` is written: beside the output, named for the
    job so two jobs of one content key never share a chunk."""
    return f"{output_url}.{job_id}.chunk{index:03d}"
