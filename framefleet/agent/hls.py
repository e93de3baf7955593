"""HLS as objects under one prefix (see outputs/hls.py): the encoder writes one fragmented MP4
whose GOP is fixed (no scene-cut keyframes), so every fragment (moof + mdat) starts on a
keyframe and lasts exactly SEGMENT_SECONDS. The stream is cut at its boxes as it passes: the
init segment (ftyp + moov) and each fragment become their own objects, uploaded as soon as
they are complete, and the VOD playlist (the job's output) is written after the last one.
A render that fails deletes the segments it wrote: no playlist ever names a partial set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct

from framefleet.core.chunks import SEGMENT_SECONDS  # the encoder's segment: one fragment each
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs import delete, write
from framefleet.outputs.hls import INIT, folder, segment_name, stem

log = logging.getLogger("framefleet.agent")


class Segmenter:
    """Cuts a fragmented MP4 byte stream at its top-level boxes: ``feed`` returns the pieces
    completed by the bytes given (the init segment first, then one per fragment)."""

    def __init__(self) -> None:
        self._piece = bytearray()  # the piece being collected
        self._header = b""  # an unfinished box header
        self._skip = 0  # bytes of the current box still to pass
        self._kind = b""  # the current box's type
        self._keep = True  # whether the current box belongs to a piece
        self._init_done = False

    def feed(self, data: bytes) -> list[bytes]:
        done: list[bytes] = []
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                if self._keep:
                    self._piece += view[:step]
                self._skip -= step
                view = view[step:]
                if not self._skip and self._kind == b"mdat":
                    done.append(bytes(self._piece))  # a fragment ends with its mdat
                    self._piece.clear()
                continue
            need = 8 - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) < 8:
                break
            size, kind = struct.unpack(">I4s", self._header)
            if size < 8:
                raise ValueError(f"unsupported MP4 box size {size} (64-bit or to-end boxes)")
            if kind == b"moof" and not self._init_done:
                done.append(bytes(self._piece))  # ftyp + moov
                self._piece.clear()
                self._init_done = True
            # After the init segment only fragments count: a trailing index (mfra) is dropped,
            # the playlist indexes the segments.
            self._keep = not self._init_done or kind in (b"moof", b"mdat")
            if self._keep:
                self._piece += self._header
            self._kind, self._skip, self._header = kind, size - 8, b""
        return done

    @property
    def pending(self) -> int:
        """Bytes of a piece not yet complete (none after a well-formed stream)."""
        return len(self._piece) + len(self._header) + (self._skip if self._keep else 0)


def playlist(name: str, sizes: int, frames: int, fps: int) -> str:
    """The VOD playlist of ``sizes`` segments under the folder ``name``, each SEGMENT_SECONDS
    but the last."""
    per_segment = SEGMENT_SECONDS * fps
    durations = [min(per_segment, frames - i * per_segment) / fps for i in range(sizes)]
    if sum(durations) * fps != frames:
        raise ValueError(f"{sizes} fragments do not cover {frames} frames")
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{math.ceil(max(durations))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{name}/{INIT}"',
    ]
    for number, seconds in enumerate(durations, 1):
        lines += [f"#EXTINF:{seconds:.6f},", f"{name}/{segment_name(number)}"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


class SegmentedUpload:
    """An ``outputs.Upload`` for an HLS playlist URL: ``write`` (on the encoder thread) cuts
    the stream into segments, each uploaded on the loop as soon as it is complete (one at a
    time, in order); ``complete`` writes the playlist after the last; ``abort`` deletes what
    was written. Create it on the event loop."""

    def __init__(self, url: str, frames: int, fps: int) -> None:
        self.url, self._frames, self._fps = url, frames, fps
        self._loop = asyncio.get_running_loop()
        self._segmenter = Segmenter()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._written: list[str] = []  # URLs of the objects sent (or being sent), in order
        self.size = 0  # the set's bytes, once complete
        self._sender = self._loop.create_task(self._send())
        self._cleaning: asyncio.Task[None] | None = None

    @property
    def upload_id(self) -> str:
        return ""  # segments are small objects; a lost agent's are overwritten by the retry

    def write(self, data: bytes) -> None:
        if self._sender.done() and not self._sender.cancelled():
            failure = self._sender.exception()
            if isinstance(failure, FramefleetError):
                raise failure  # the encoder thread learns what went wrong, and stops
            if failure is not None:
                raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"uploading {self.url}: {failure}")
        for piece in self._segmenter.feed(data):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, piece)

    async def _send(self) -> None:
        while (piece := await self._queue.get()) is not None:
            name = INIT if not self._written else segment_name(len(self._written))
            await self._put(folder(self.url) + name, piece)

    async def _put(self, url: str, data: bytes) -> None:
        # Listed before it is sent: a write that an abort cuts short may still have landed,
        # and deleting an object that is not there is fine.
        self._written.append(url)
        await write(url, data)
        self.size += len(data)

    async def complete(self) -> None:
        # The encoder's last bytes were handed over (call_soon_threadsafe) before it returned:
        # the end mark queues after them.
        self._loop.call_soon(self._queue.put_nowait, None)
        await self._sender
        if self._segmenter.pending:
            raise FramefleetError(ErrorClass.ENCODE_ERROR, "the HLS stream ended mid-fragment")
        text = playlist(stem(self.url), len(self._written) - 1, self._frames, self._fps)
        await self._put(self.url, text.encode())

    async def abort(self) -> None:
        """Stops sending and deletes every object written, so no partial set remains. The
        clean-up goes on even if the caller is cancelled again meanwhile."""
        if self._cleaning is None:  # kept here: the loop holds tasks only weakly
            self._cleaning = self._loop.create_task(self._clean_up())
        await asyncio.shield(self._cleaning)

    async def _clean_up(self) -> None:
        self._sender.cancel()
        with contextlib.suppress(BaseException):
            await self._sender
        for url in reversed(self._written):
            try:
                await delete(url)
            except FramefleetError:
                log.exception("deleting an HLS segment failed", extra={"url": url})
        self._written.clear()
