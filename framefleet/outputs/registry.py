"""Sinks by URL scheme. Modules are imported on first use, so a local-only agent never loads
aiobotocore."""

from __future__ import annotations

import asyncio
import importlib
from urllib.parse import urlparse

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.outputs import hls
from framefleet.outputs.base import Sink, Upload
from framefleet.outputs.confine import place

# scheme -> "module:attribute" of a Sink
_SINKS: dict[str, str] = {
    "file": "framefleet.outputs.local:SINK",
    "s3": "framefleet.outputs.s3:SINK",
}


def register(scheme: str, target: str) -> None:
    """Adds (or replaces) the sink for ``scheme``: ``target`` is "module:attribute"."""
    _SINKS[scheme] = target


def schemes() -> frozenset[str]:
    return frozenset(_SINKS)


def supports(url: str) -> bool:
    """Whether a sink is registered for the URL's scheme (checked at submit, so a job for a
    destination no agent can write is refused rather than retried)."""
    return urlparse(url).scheme in _SINKS


def sink_for(url: str) -> Sink:
    """The sink of an output URL, once the URL passed outputs.confine's rule (normalised and,
    on a confined agent, under its roots): every operation but ``check`` comes through here."""
    place(url)
    return _sink(url)


def _sink(url: str) -> Sink:
    scheme = urlparse(url).scheme
    target = _SINKS.get(scheme)
    if target is None:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"unsupported output URL {url!r}")
    module, _, attribute = target.partition(":")
    sink: Sink = getattr(importlib.import_module(module), attribute)
    return sink


def open_upload(url: str) -> Upload:
    """The upload for an output URL; call it on the event loop."""
    return sink_for(url).open_upload(url)


async def write(url: str, data: bytes) -> None:
    """Writes a whole small object (a manifest, a playlist, an HLS segment) at ``url``: all of
    it or, on failure, nothing."""
    upload = open_upload(url)
    try:
        await asyncio.to_thread(upload.write, data)
        await upload.complete()
    except BaseException:
        await upload.abort()
        raise


async def check(url: str) -> None:
    """Raises OUTPUT_ERROR unless outputs can be written under the destination ``url``."""
    await _sink(url).check(url)


async def size(url: str) -> int | None:
    """The size of the finished output at ``url``, None when there is none (for an HLS
    playlist: of its whole set, None when any of it is missing)."""
    if hls.is_playlist(url):
        return await hls.set_size(sink_for(url), url)
    return await sink_for(url).size(url)


async def copy(source: str, target: str) -> None:
    """``target`` gets the bytes of the finished output ``source`` (same kind of destination);
    an HLS playlist's segments are copied under the target's own prefix."""
    if urlparse(source).scheme != urlparse(target).scheme:
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot copy {source} to {target}")
    place(source)
    if hls.is_playlist(source):
        await hls.copy_set(sink_for(target), source, target)
        return
    await sink_for(target).copy(source, target)


async def assemble(parts: list[str], target: str) -> int:
    """``target`` becomes the finished outputs ``parts`` joined in order (a chunked render);
    returns its size in bytes."""
    if any(urlparse(part).scheme != urlparse(target).scheme for part in parts):
        raise FramefleetError(ErrorClass.OUTPUT_ERROR, f"cannot assemble {target} from {parts}")
    for part in parts:
        place(part)
    return await sink_for(target).assemble(parts, target)


async def delete(url: str) -> None:
    """Removes a finished output (nothing to do when there is none)."""
    await sink_for(url).delete(url)


async def abort_upload(url: str, upload_id: str) -> None:
    """Aborts what a lost writer left behind at ``url`` (nothing to do without an id)."""
    if upload_id:
        await sink_for(url).abort_upload(url, upload_id)
