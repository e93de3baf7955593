"""VideoJSON jobs as templates: the agent renders a VideoJSON document by loading a small shell
page (agent/videoflow/shell.html) that runs VideoFlow's own browser renderer, with the document
as its parameter. Capture, encode and upload are then the template path, unchanged.

Video and audio layers' media leave the document for the job's bundle (``media/<sha256>``),
probed here with PyAV; the page times them with VideoFlow's own layer timing and answers the
agent's soundClips()/takeVideos() like a template's <audio>/<video>, so the soundtrack
(agent/soundtrack.py) and frame-exact pictures (agent/video_clips.py) are the template's too."""

from __future__ import annotations

import hashlib
import io
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import av

from framefleet.core import jobspec, videojson
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

RUNTIME_DIR = Path(str(files("framefleet.agent").joinpath("videoflow")))
DIST = RUNTIME_DIR / "dist"
# Where the shell page finds the runtime: it is served beside index.html under this prefix.
ASSET_PREFIX = "videoflow"


@cache
def runtime_assets() -> dict[str, bytes]:
    """The shell page's files: the bundled renderer and the default font, built by
    ``make setup`` (framefleet/agent/videoflow/build.mjs) into framefleet/agent/videoflow/dist/."""
    if not (DIST / "runtime.js").is_file():
        # INTERNAL: retryable, so another agent that has the runtime can take the job.
        raise FramefleetError(
            ErrorClass.INTERNAL,
            f"the VideoFlow runtime is not built ({DIST / 'runtime.js'} is missing): run "
            "`make setup`, or `npm ci && npm run build` in framefleet/agent/videoflow",
        )
    return {
        f"{ASSET_PREFIX}/{path.relative_to(DIST).as_posix()}": path.read_bytes()
        for path in sorted(DIST.rglob("*"))
        if path.is_file()
    }


@cache
def shell_template() -> pb.Template:
    template = pb.Template(html=(RUNTIME_DIR / "shell.html").read_text(encoding="utf-8"))
    for path, data in runtime_assets().items():
        template.assets[path] = data
    return template


def page_document(spec: pb.JobSpec) -> dict[str, Any]:
    """The document the page draws: parameters filled in, and the job's output size and rate
    in place of the document's own (VideoFlow lays out in units of the project width, so a
    document renders at any size; keyframe times are seconds, so at any rate)."""
    document = videojson.resolve(spec.video_json, jobspec.params_dict(spec.params))
    output = jobspec.resolve_output(spec.output)
    width, height = output.page_size  # a resolution preset scales the page, not the layout
    document.update(width=width, height=height, fps=output.fps)
    return document


def _probe(layer_id: str, kind: str, data: bytes) -> dict[str, float]:
    """A media file's picture size and length, for the page's layer timing (sourceEnd, fit)."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            streams = container.streams.video if kind == "video" else container.streams.audio
            if not streams:
                raise FramefleetError(
                    ErrorClass.TEMPLATE_LOAD_ERROR,
                    f"VideoJSON layer {layer_id!r}: its source has no {kind} stream",
                )
            stream = streams[0]
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
            width = getattr(stream.codec_context, "width", 0) if kind == "video" else 0
            height = getattr(stream.codec_context, "height", 0) if kind == "video" else 0
    except (av.FFmpegError, ValueError) as e:
        raise FramefleetError(
            ErrorClass.TEMPLATE_LOAD_ERROR,
            f"VideoJSON layer {layer_id!r}: its source could not be read: {e}",
        ) from e
    return {"width": width, "height": height, "duration": duration}


def take_media(document: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, dict[str, float]]]:
    """Moves the media of video and audio layers (top level only: submit refuses them in
    groups) out of the document into bundle files named by their content; returns the files
    and what the page needs to know about each."""
    assets: dict[str, bytes] = {}
    media: dict[str, dict[str, float]] = {}
    for i, layer in enumerate(document.get("layers", [])):
        if layer.get("type") not in videojson.MEDIA_TYPES:
            continue
        settings = layer["settings"]
        data = videojson.media_data(settings["source"], f"$.layers[{i}].settings.source")
        path = f"media/{hashlib.sha256(data).hexdigest()}"
        if path not in media:
            media[path] = _probe(str(layer.get("id")), layer["type"], data)
            assets[path] = data
        settings["source"] = path
    return assets, media


class VideoJsonPages:
    """A VideoJSON job is the shell page with the document as its parameter, and its media
    files beside the page."""

    def page_input(self, spec: pb.JobSpec) -> tuple[pb.Template, dict[str, Any]]:
        document = page_document(spec)
        assets, media = take_media(document)
        template = shell_template()
        if assets:
            template = pb.Template()
            template.CopyFrom(shell_template())
            for path, data in assets.items():
                template.assets[path] = data
        return template, {"document": document, "media": media}


PAGES = VideoJsonPages()
