"""VideoJSON jobs as templates: the agent renders a VideoJSON document by loading a small shell
page (agent/videoflow/shell.html) that runs VideoFlow's own browser renderer, with the document
as its parameter. Capture, encode and upload are then the template path, unchanged."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from framefleet.core import jobspec, videojson
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

RUNTIME_DIR = Path(str(files("agent").joinpath("videoflow")))
DIST = RUNTIME_DIR / "dist"
# Where the shell page finds the runtime: it is served beside index.html under this prefix.
ASSET_PREFIX = "videoflow"


@cache
def runtime_assets() -> dict[str, bytes]:
    """The shell page's files: the bundled renderer and the default font, built by
    ``make setup`` (agent/videoflow/build.mjs) into agent/videoflow/dist/."""
    if not (DIST / "runtime.js").is_file():
        # INTERNAL: retryable, so another agent that has the runtime can take the job.
        raise FramefleetError(
            ErrorClass.INTERNAL,
            f"the VideoFlow runtime is not built ({DIST / 'runtime.js'} is missing): run "
            "`make setup`, or `npm ci && npm run build` in agent/videoflow",
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
    document.update(width=output.width, height=output.height, fps=output.fps)
    return document


class VideoJsonPages:
    """A VideoJSON job is the shell page with the document as its parameter."""

    def page_input(self, spec: pb.JobSpec) -> tuple[pb.Template, dict[str, Any]]:
        return shell_template(), {"document": page_document(spec)}


PAGES = VideoJsonPages()
