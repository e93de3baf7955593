"""Where encoded bytes go. An upload receives bytes as the muxer produces them and becomes
visible only on complete(); abort() leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from framefleet.errors import ErrorClass, FramefleetError


class Upload(Protocol):
    @property
    def upload_id(self) -> str:
        """What the coordinator needs to clean up after a lost agent ("" when nothing)."""
        ...

    def write(self, data: bytes) -> None:
        """Called on the encoder thread, in order."""
        ...

    async def complete(self) -> None: ...

    async def abort(self) -> None: ...


class LocalUpload:
    """Writes to a hidden temporary file beside the target and renames it when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        self._file = self._partial.open("wb")

    @property
    def upload_id(self) -> str:
        return ""  # a dead agent's hidden partial file is invisible and harmless

    def write(self, data: bytes) -> None:
        self._file.write(data)

    async def complete(self) -> None:
        def finish() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            # Same content key, same bytes: replacing an existing output changes nothing.
            os.replace(self._partial, self.path)

        await asyncio.to_thread(finish)

    async def abort(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)


def open_upload(url: str) -> Upload:
    """The upload for an output URL: file:// (a local file) or s3://bucket/key (any
    S3-compatible store, see agent.s3_sink). Call it on the event loop."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        try:
            return LocalUpload(Path(unquote(parsed.path)))
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot write {url}: {e}") from e
    if parsed.scheme == "s3":
        # Imported on first use: local-only agents never load aiobotocore.
        from agent.s3_sink import open_s3_upload

        return open_s3_upload(url)
    raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"unsupported output URL {url!r}")
