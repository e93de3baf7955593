"""Local outputs: a hidden temporary file beside the target, renamed when complete."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from framefleet.core.errors import ErrorClass, FramefleetError


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


class LocalSink:
    """file:// URLs: a local file, written beside its target and renamed when complete."""

    def open_upload(self, url: str) -> LocalUpload:
        try:
            return LocalUpload(Path(unquote(urlparse(url).path)))
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot write {url}: {e}") from e

    async def abort_upload(self, url: str, upload_id: str) -> None:
        pass  # a dead writer's hidden partial file is invisible and harmless


SINK = LocalSink()
