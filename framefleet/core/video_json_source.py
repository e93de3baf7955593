"""The VideoJSON source: a VideoFlow document, drawn by VideoFlow's own browser runtime."""

from __future__ import annotations

from collections.abc import Iterator

from framefleet.core import videojson
from framefleet.core.jobspec import VIDEOFLOW_RUNTIME, params_dict
from framefleet.v1 import framefleet_pb2 as pb


class VideoJsonSource:
    def validate(self, spec: pb.JobSpec, *, variants: bool) -> None:
        videojson.resolve(spec.video_json, params_dict(spec.params), variants=variants)

    def identity(self, spec: pb.JobSpec) -> Iterator[bytes]:
        # The runtime that draws the document is part of what it looks like.
        yield VIDEOFLOW_RUNTIME.encode() + b"\0" + spec.video_json.encode()


SOURCE = VideoJsonSource()
