"""What every sink provides."""

from __future__ import annotations

from typing import Protocol


class Upload(Protocol):
    """One output being written: receives bytes as the muxer produces them and becomes
    visible only on complete(); abort() leaves nothing behind."""

    @property
    def upload_id(self) -> str:
        """What the coordinator needs to clean up after a lost agent ("" when nothing)."""
        ...

    def write(self, data: bytes) -> None:
        """Called on the encoder thread, in order."""
        ...

    async def complete(self) -> None: ...

    async def abort(self) -> None: ...


class Sink(Protocol):
    """A kind of destination, registered by URL scheme (see outputs.registry)."""

    def open_upload(self, url: str) -> Upload:
        """Starts writing ``url``; call it on the event loop."""
        ...

    async def abort_upload(self, url: str, upload_id: str) -> None:
        """Cleans up an upload whose writer is gone (a lost agent's)."""
        ...

    async def check(self, url: str) -> None:
        """Raises OUTPUT_ERROR when nothing could be written under the destination ``url``
        (no such bucket, no credentials, a read-only directory): asked before rendering."""
        ...

    async def size(self, url: str) -> int | None:
        """The size in bytes of the finished output at ``url``; None when there is none (so a
        recorded result whose object was deleted, or never written, is not served)."""
        ...

    async def copy(self, source: str, target: str) -> None:
        """Makes ``target`` hold the bytes of ``source``, a finished output at the same kind of
        destination, without moving them through this process (a readable name for a
        content-addressed output); ``target`` appears whole or not at all."""
        ...

    async def read(self, url: str) -> bytes | None:
        """The bytes of a finished (small) output, None when there is none: an HLS playlist,
        read to copy or size its set (outputs.hls)."""
        ...

    async def delete(self, url: str) -> None:
        """Removes a finished output (fine when there is none): the segments of an HLS set
        whose render failed."""
        ...

    async def assemble(self, parts: list[str], target: str) -> int:
        """Makes ``target`` the finished outputs ``parts`` (a chunked render's chunks, same
        kind of destination) joined in order, without moving the bytes through the
        coordinator; returns its size. ``target`` appears whole or not at all; when the parts
        are gone but ``target`` is there (an assembly redone after it completed) that is the
        answer."""
        ...
