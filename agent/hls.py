"""HLS for a fragmented MP4: the agent writes the video as one fMP4 object (``KEY.mp4``) and
then a VOD playlist (``KEY.m3u8``, the job's output) whose segments are byte ranges of it: the
init segment (ftyp + moov) and each fragment (moof + mdat). The GOP is fixed (no scene-cut
keyframes), so every fragment starts on a keyframe and lasts exactly SEGMENT_SECONDS."""

from __future__ import annotations

import math
import struct

SEGMENT_SECONDS = 2  # the encoder's GOP: 2 s of frames per fragment


def media_url(playlist_url: str) -> str:
    """Where the fMP4 a playlist indexes goes: beside it, with the .mp4 suffix."""
    return playlist_url.removesuffix(".m3u8") + ".mp4"


class FragmentIndex:
    """Reads the top-level MP4 boxes as the bytes stream past: where the init segment ends
    and where each fragment (moof then mdat) starts and ends."""

    def __init__(self) -> None:
        self._buffer = b""  # an unfinished box header
        self._offset = 0  # stream offset of the next box header
        self._skip = 0  # bytes of the current box still to pass
        self.init_size = 0
        self.fragments: list[tuple[int, int]] = []  # (offset, length)

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 8 - len(self._buffer)
            self._buffer += bytes(view[:need])
            view = view[need:]
            if len(self._buffer) < 8:
                return
            size, kind = struct.unpack(">I4s", self._buffer)
            if size < 8:
                raise ValueError(f"unsupported MP4 box size {size} (64-bit or to-end boxes)")
            self._box(kind, self._offset, size)
            self._offset += size
            self._skip = size - 8
            self._buffer = b""

    def _box(self, kind: bytes, offset: int, size: int) -> None:
        if kind == b"moof":
            if not self.fragments:
                self.init_size = offset
            self.fragments.append((offset, size))
        elif kind == b"mdat" and self.fragments:
            start, length = self.fragments[-1]
            self.fragments[-1] = (start, length + size)


def playlist(index: FragmentIndex, media_name: str, frames: int, fps: int) -> str:
    """The VOD playlist: one segment per fragment, each SEGMENT_SECONDS but the last."""
    per_segment = SEGMENT_SECONDS * fps
    durations = [
        min(per_segment, frames - i * per_segment) / fps for i in range(len(index.fragments))
    ]
    if sum(durations) * fps != frames:
        raise ValueError(f"{len(index.fragments)} fragments do not cover {frames} frames")
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{math.ceil(max(durations))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{media_name}",BYTERANGE="{index.init_size}@0"',
    ]
    for (offset, length), seconds in zip(index.fragments, durations, strict=True):
        lines += [f"#EXTINF:{seconds:.6f},", f"#EXT-X-BYTERANGE:{length}@{offset}", media_name]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])
