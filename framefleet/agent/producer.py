"""The producer: captured frames (from framefleet/agent/frame_source.py) encoded for the
output's format (framefleet/agent/file_encoders.py picks the encoder) into the sink chosen for
it: one object through the URL's sink, or for HLS a set of segment objects uploaded as each
completes (framefleet/agent/hls.py). Its ``finish`` says how big the output is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from framefleet.agent import hls
from framefleet.agent.file_encoders import open_encoder
from framefleet.agent.run_to_end import run_to_end
from framefleet.core.jobspec import Output
from framefleet.outputs import Upload, open_upload

if TYPE_CHECKING:
    from framefleet.agent.encoder import H264Encoder
    from framefleet.agent.soundtrack import Samples


class SizedUpload(Upload, Protocol):
    """An output being written that knows, once complete, its size in bytes as the cache
    check sizes it (an HLS set: the playlist and every segment)."""

    @property
    def size(self) -> int: ...


class OneObject:
    """The output as one object through its URL's sink, counting the bytes it is given."""

    def __init__(self, upload: Upload) -> None:
        self._upload = upload
        self.size = 0

    @property
    def upload_id(self) -> str:
        return self._upload.upload_id

    def write(self, data: bytes) -> None:
        self._upload.write(data)
        self.size += len(data)

    async def complete(self) -> None:
        await self._upload.complete()

    async def abort(self) -> None:
        await self._upload.abort()


def open_sink(output: Output, url: str) -> SizedUpload:
    """Where ``output``'s bytes go; call it on the event loop."""
    if output.format == "hls":
        return hls.SegmentedUpload(url, output.frames, output.fps)
    return OneObject(open_upload(url))


class Producer:
    """One output being produced: ``put`` each frame in order, then ``finish`` (its size) or,
    on any failure, ``abort`` (nothing half-written remains)."""

    def __init__(self, encoder: H264Encoder, sink: SizedUpload) -> None:
        self._encoder, self._sink = encoder, sink

    @classmethod
    async def open(
        cls,
        output: Output,
        url: str,
        image_codec: str,
        sound: Samples | None,
        first_frame: int,
        end_frame: int,
    ) -> Producer:
        """Encodes frames [first_frame, end_frame) of ``output`` (a chunk; end_frame 0: to
        the end) into ``url``."""
        sink = open_sink(output, url)
        try:
            encoder = open_encoder(
                output,
                sink.write,
                image_codec,
                soundtrack=sound,
                first_frame=first_frame,
                end_frame=end_frame,
            )
        except BaseException:
            await sink.abort()  # e.g. a GIF with sound: refused before a byte was written
            raise
        return cls(encoder, sink)

    @property
    def upload_id(self) -> str:
        return self._sink.upload_id

    async def put(self, image: bytes) -> None:
        """Queues one captured image; waits while the encoder's window is full."""
        await self._encoder.put(image)

    async def finish(self) -> int:
        await self._encoder.finish()
        # A Cancel arriving while the sink commits cannot undo the commit: finish it and
        # report the output (the coordinator decides what a late output means).
        await run_to_end(self._sink.complete())
        return self._sink.size

    async def abort(self) -> None:
        try:
            await self._encoder.abort()
        finally:
            # Even if this task is cancelled again meanwhile: nothing half-written may remain.
            await self._sink.abort()
