"""Job sources: what a job renders (an HTML template, a VideoJSON document, ...). Each is one
module registered here under the ``JobSpec.source`` oneof field that carries it. A source says
how it is validated at submit and which bytes identify it (the source key); the agent keeps a
registry of its own (framefleet/agent/sources.py) for how a source becomes a page.

A new source: a field in the proto's ``source`` oneof, a module with a ``Source``, a line here
and one in framefleet/agent/sources.py (tests/test_sources.py fails until every field has both).
Modules load on first use, so a template-only process never imports jsonschema."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Protocol

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb

ONEOF = "source"


class Source(Protocol):
    def validate(self, spec: pb.JobSpec, *, variants: bool) -> None:
        """Raises INVALID_JOB unless the spec's source can render. ``variants``: the spec is
        shared by batch rows that bring their own parameters, so some may be missing here."""
        ...

    def identity(self, spec: pb.JobSpec) -> Iterator[bytes]:
        """The bytes that identify the source (hashed into its source key): everything that
        changes what it looks like, including the runtime that draws it."""
        ...


# JobSpec oneof field -> "module:attribute" of its Source
_SOURCES: dict[str, str] = {
    "template": "framefleet.core.template_source:SOURCE",
    "video_json": "framefleet.core.video_json_source:SOURCE",
}


def register(field: str, target: str) -> None:
    """Adds (or replaces) the source carried in ``JobSpec.<field>``: ``target`` is
    "module:attribute"."""
    _SOURCES[field] = target


def fields() -> frozenset[str]:
    return frozenset(_SOURCES)


def kind(spec: pb.JobSpec) -> str:
    """The spec's source field; INVALID_JOB when it has none (or one this build does not know,
    which protobuf parses as an unknown field, so it reads as none)."""
    field: str | None = spec.WhichOneof(ONEOF)
    if field is None:
        raise FramefleetError(
            ErrorClass.INVALID_JOB, f"the job has no source (one of: {', '.join(sorted(_SOURCES))})"
        )
    return field


def source_for(spec: pb.JobSpec) -> Source:
    field = kind(spec)
    target = _SOURCES.get(field)
    if target is None:
        raise FramefleetError(ErrorClass.INVALID_JOB, f"{field} jobs are not supported here")
    module, _, attribute = target.partition(":")
    source: Source = getattr(importlib.import_module(module), attribute)
    return source


def source_only(spec: pb.JobSpec) -> pb.JobSpec:
    """The spec's source alone (what is stored once per source key)."""
    source = pb.JobSpec()
    source.CopyFrom(spec)
    for field, _ in source.ListFields():
        if field.containing_oneof is None or field.containing_oneof.name != ONEOF:
            source.ClearField(field.name)
    return source


def without_source(spec: pb.JobSpec) -> pb.JobSpec:
    """The spec with its source cleared (what is stored per job)."""
    rest = pb.JobSpec()
    rest.CopyFrom(spec)
    rest.ClearField(ONEOF)
    return rest
