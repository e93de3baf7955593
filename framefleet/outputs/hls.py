"""HLS outputs are sets of objects under one prefix: the playlist ``KEY.m3u8`` (the job's
output) and, beside it, ``KEY/init.mp4`` and ``KEY/seg00001.m4s``… that it names relative to
itself. Segments are written first, the playlist last, so a playlist always names a complete
set. Sizing and copying a playlist takes its whole set along."""

from __future__ import annotations

import asyncio

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs.base import Sink

SUFFIX = ".m3u8"
INIT = "init.mp4"
COPIES_AT_ONCE = 8


def is_playlist(url: str) -> bool:
    return url.endswith(SUFFIX)


def folder(playlist_url: str) -> str:
    """The prefix the set's segments go under: the playlist's URL without its suffix, + "/"."""
    return playlist_url.removesuffix(SUFFIX) + "/"


def stem(playlist_url: str) -> str:
    """How the playlist names its folder: its own file name without the suffix."""
    return playlist_url.rsplit("/", 1)[-1].removesuffix(SUFFIX)


def segment_name(number: int) -> str:
    return f"seg{number:05d}.m4s"


def member_names(text: str, playlist_url: str) -> list[str]:
    """The files (inside the set's folder) that a playlist names: its init segment and media
    segments. A URI that leaves the folder is refused: a set never points elsewhere."""
    prefix = stem(playlist_url) + "/"
    uris = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MAP:"):
            uris.append(line.split('URI="', 1)[1].split('"', 1)[0])
        elif line and not line.startswith("#"):
            uris.append(line)
    names = []
    for uri in uris:
        name = uri.removeprefix(prefix)
        if not uri.startswith(prefix) or "/" in name or name in ("", ".", ".."):
            raise FramefleetError(
                ErrorClass.OUTPUT_ERROR, f"{playlist_url} names {uri!r}, outside its set"
            )
        names.append(name)
    return names


async def _playlist(sink: Sink, url: str) -> str | None:
    data = await sink.read(url)
    return None if data is None else data.decode()


async def set_size(sink: Sink, playlist_url: str) -> int | None:
    """The bytes of the playlist and every object it names; None when any is missing, so a
    cache hit is served only for a whole set."""
    text = await _playlist(sink, playlist_url)
    if text is None:
        return None
    base = folder(playlist_url)
    sizes = await asyncio.gather(
        *(sink.size(base + name) for name in member_names(text, playlist_url))
    )
    if any(size is None for size in sizes):
        return None
    return len(text.encode()) + sum(size or 0 for size in sizes)


async def copy_set(sink: Sink, source: str, target: str) -> None:
    """Copies a playlist's set under the target's prefix (server-side, as ``Sink.copy``), then
    writes the playlist renamed to match, last: the target appears whole or not at all."""
    text = await _playlist(sink, source)
    if text is None:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"no HLS playlist at {source}")
    limit = asyncio.Semaphore(COPIES_AT_ONCE)

    async def one(name: str) -> None:
        async with limit:
            await sink.copy(folder(source) + name, folder(target) + name)

    await asyncio.gather(*(one(name) for name in member_names(text, source)))
    old, new = stem(source) + "/", stem(target) + "/"
    renamed = "\n".join(
        line.replace(f'URI="{old}', f'URI="{new}')
        if line.startswith("#EXT-X-MAP:")
        else (new + line.removeprefix(old) if line and not line.startswith("#") else line)
        for line in text.split("\n")
    )
    upload = sink.open_upload(target)
    try:
        upload.write(renamed.encode())
        await upload.complete()
    except BaseException:
        await upload.abort()
        raise
