"""The HTML template source: a page and the asset files beside it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from framefleet.core.jobspec import MAX_BUNDLE_BYTES, invalid
from framefleet.v1 import framefleet_pb2 as pb


class TemplateSource:
    def validate(self, spec: pb.JobSpec, *, variants: bool) -> None:
        template = spec.template
        if not template.html.strip():
            raise invalid("the template is empty")
        bundle = len(template.html) + sum(len(v) for v in template.assets.values())
        if bundle > MAX_BUNDLE_BYTES:
            raise invalid(f"the template bundle is {bundle} bytes; the limit is {MAX_BUNDLE_BYTES}")
        for path in template.assets:
            if path.startswith("/") or ".." in Path(path).parts:
                raise invalid(f"asset path {path!r} must be relative and stay inside the bundle")

    def identity(self, spec: pb.JobSpec) -> Iterator[bytes]:
        yield spec.template.html.encode() + b"\0"
        for path, data in sorted(spec.template.assets.items()):
            yield path.encode() + b"\0" + hashlib.sha256(data).digest()


SOURCE = TemplateSource()
