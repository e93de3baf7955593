"""Local outputs: a hidden temporary file beside the target, renamed when complete.

Every path is checked by outputs.confine and used relative to the fd of its checked directory
(open, rename, link, unlink), so an agent confined to its roots never follows a symlink or a
``..`` out of them, however the URL is written."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs.confine import Place, open_dir, parent, place, segments

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _partial_name(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex[:8]}.partial"


@contextlib.contextmanager
def _output_error(what: str, url: str) -> Iterator[None]:
    try:
        yield
    except FramefleetError:
        raise
    except OSError as e:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot {what} {url}: {e.strerror}") from e


class LocalUpload:
    """Writes to a hidden temporary file beside the target and renames it when complete."""

    def __init__(self, where: Place) -> None:
        self.url = where.url
        self._name = where.name
        self._partial = _partial_name(where.name)
        self._dir = open_dir(where, where.parts[:-1], create=True)
        try:
            fd = os.open(self._partial, _CREATE, 0o666, dir_fd=self._dir)
        except BaseException:
            os.close(self._dir)
            raise
        self._file = os.fdopen(fd, "wb")

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
            os.replace(self._partial, self._name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            self._close_dir()

        with _output_error("write", self.url):
            await asyncio.to_thread(finish)

    async def abort(self) -> None:
        self._file.close()
        if self._dir >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._partial, dir_fd=self._dir)
            self._close_dir()

    def _close_dir(self) -> None:
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1


class LocalSink:
    """file:// URLs: a local file, written beside its target and renamed when complete."""

    def open_upload(self, url: str) -> LocalUpload:
        where = place(url)
        with _output_error("write", url):
            return LocalUpload(where)

    async def abort_upload(self, url: str, upload_id: str) -> None:
        pass  # a dead writer's hidden partial file is invisible and harmless

    async def check(self, url: str) -> None:
        where = place(url.rstrip("/"))

        def writable() -> bool:
            fd = open_dir(where, where.parts, create=True)
            try:
                return os.access(".", os.W_OK, dir_fd=fd)
            finally:
                os.close(fd)

        with _output_error("create", url):
            if not await asyncio.to_thread(writable):
                raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot write to {url}")

    async def size(self, url: str) -> int | None:
        where = place(url)
        try:
            return await asyncio.to_thread(_size, where)
        except OSError:
            return None

    async def copy(self, source: str, target: str) -> None:
        origin, where = place(source), place(target)
        with _output_error("copy to", target):
            await asyncio.to_thread(_link_or_copy, origin, where)

    async def read(self, url: str) -> bytes | None:
        where = place(url)

        def read() -> bytes:
            with parent(where) as directory:
                fd = os.open(where.name, _READ, dir_fd=directory)
            with os.fdopen(fd, "rb") as file:
                return file.read()

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot read {url}: {e}") from e

    async def delete(self, url: str) -> None:
        where = place(url)
        with _output_error("delete", url):
            await asyncio.to_thread(_delete, where)

    async def assemble(self, parts: list[str], target: str) -> int:
        places = [place(part) for part in parts]
        where = place(target)
        with _output_error("assemble", target):
            return await asyncio.to_thread(_join, places, where)


def _size(where: Place) -> int | None:
    with parent(where) as directory:
        info = os.stat(where.name, dir_fd=directory, follow_symlinks=False)
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _delete(where: Place) -> None:
    try:
        with parent(where) as directory:
            os.unlink(where.name, dir_fd=directory)
    except FileNotFoundError:
        return
    if len(where.parts) < 2:
        return
    with contextlib.suppress(OSError):  # an HLS set's folder, once empty
        folder = open_dir(where, where.parts[:-2])
        try:
            os.rmdir(where.parts[-2], dir_fd=folder)
        finally:
            os.close(folder)


def _open_part(where: Place) -> int | None:
    try:
        with parent(where) as directory:
            return os.open(where.name, _READ, dir_fd=directory)
    except FileNotFoundError:
        return None


def _join(parts: list[Place], target: Place) -> int:
    """Concatenates ``parts`` into a hidden file beside ``target`` and renames it: the target
    appears whole or not at all."""
    sources: list[int] = []
    try:
        for part in parts:
            fd = _open_part(part)
            if fd is None:
                with contextlib.suppress(OSError):
                    # An assembly redone after it completed and removed its parts.
                    size = _size(target)
                    if size is not None:
                        return size
                raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"chunk {part.url} is missing")
            sources.append(fd)
        with parent(target, create=True) as directory:
            partial = _partial_name(target.name)
            out = os.fdopen(os.open(partial, _CREATE, 0o666, dir_fd=directory), "wb")
            try:
                with out:
                    for fd in sources:
                        with os.fdopen(os.dup(fd), "rb") as source:
                            shutil.copyfileobj(source, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, target.name, src_dir_fd=directory, dst_dir_fd=directory)
                return os.stat(target.name, dir_fd=directory, follow_symlinks=False).st_size
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial, dir_fd=directory)
    finally:
        for fd in sources:
            os.close(fd)


def local_path(url: str) -> Path:
    """The path a file URL (or a destination ending in "/") names, normalised by
    outputs.confine's rule; for the coordinator's own URLs, not for opening an agent's."""
    return Path("/", *segments(url.rstrip("/"))[2])


def _link_or_copy(source: Place, target: Place) -> None:
    """A hard link where the file system allows (no bytes copied; outputs are never modified
    in place, only replaced), else a copy; made under a hidden name, then renamed."""
    with parent(source) as origin, parent(target, create=True) as directory:
        partial = _partial_name(target.name)
        try:
            try:
                os.link(
                    source.name,
                    partial,
                    src_dir_fd=origin,
                    dst_dir_fd=directory,
                    follow_symlinks=False,
                )
            except OSError:
                read = os.open(source.name, _READ, dir_fd=origin)
                with os.fdopen(read, "rb") as src:
                    write = os.open(partial, _CREATE, 0o666, dir_fd=directory)
                    with os.fdopen(write, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
            os.replace(partial, target.name, src_dir_fd=directory, dst_dir_fd=directory)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=directory)


SINK = LocalSink()
