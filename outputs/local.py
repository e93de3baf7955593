"""Local outputs: a hidden temporary file beside the target, renamed when complete."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
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
            return LocalUpload(local_path(url))
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot write {url}: {e}") from e

    async def abort_upload(self, url: str, upload_id: str) -> None:
        pass  # a dead writer's hidden partial file is invisible and harmless

    async def check(self, url: str) -> None:
        directory = local_path(url)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot create {directory}: {e}") from e
        if not os.access(directory, os.W_OK):
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot write to {directory}")

    async def size(self, url: str) -> int | None:
        try:
            return local_path(url).stat().st_size
        except OSError:
            return None

    async def copy(self, source: str, target: str) -> None:
        await asyncio.to_thread(_link_or_copy, local_path(source), local_path(target))

    async def read(self, url: str) -> bytes | None:
        try:
            return await asyncio.to_thread(local_path(url).read_bytes)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot read {url}: {e}") from e

    async def delete(self, url: str) -> None:
        path = local_path(url)
        try:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # an HLS set's folder, once empty
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot delete {url}: {e}") from e

    async def assemble(self, parts: list[str], target: str) -> int:
        paths = [local_path(part) for part in parts]
        try:
            return await asyncio.to_thread(_join, paths, local_path(target))
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot assemble {target}: {e}") from e


def _join(parts: list[Path], target: Path) -> int:
    """Concatenates ``parts`` into a hidden file beside ``target`` and renames it: the target
    appears whole or not at all."""
    if not all(part.exists() for part in parts):
        if target.exists():  # an assembly redone after it completed and removed its parts
            return target.stat().st_size
        missing = next(part for part in parts if not part.exists())
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"chunk {missing} is missing")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def local_path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows (no bytes copied; outputs are never modified
    in place, only replaced), else a copy; made under a hidden name, then renamed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
        os.replace(partial, target)
    except OSError as e:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot copy to {target}: {e}") from e


SINK = LocalSink()
