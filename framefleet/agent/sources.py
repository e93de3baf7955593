"""How each job source becomes a page: the HTML template the page loads and the parameters it
gets. Keyed by the ``JobSpec.source`` field, like the core's registry (framefleet.core.sources),
which says how a source is validated and identified. Modules load on first use."""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from framefleet.core import jobspec, sources
from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.v1 import framefleet_pb2 as pb


class PageSource(Protocol):
    def page_input(self, spec: pb.JobSpec) -> tuple[pb.Template, dict[str, Any]]:
        """The template the page loads for this job, and the parameters it is given."""
        ...


class TemplatePages:
    """A template job is itself."""

    def page_input(self, spec: pb.JobSpec) -> tuple[pb.Template, dict[str, Any]]:
        return spec.template, jobspec.params_dict(spec.params)


TEMPLATE = TemplatePages()

# JobSpec oneof field -> "module:attribute" of its PageSource
_PAGES: dict[str, str] = {
    "template": "framefleet.agent.sources:TEMPLATE",
    "video_json": "framefleet.agent.videojson:PAGES",
}


def register(field: str, target: str) -> None:
    """Adds (or replaces) how ``JobSpec.<field>`` jobs become pages: "module:attribute"."""
    _PAGES[field] = target


def fields() -> frozenset[str]:
    return frozenset(_PAGES)


def page_input(spec: pb.JobSpec) -> tuple[pb.Template, dict[str, Any]]:
    """What the page loads for a job: its template and parameters."""
    field = sources.kind(spec)
    target = _PAGES.get(field)
    if target is None:
        # Retryable: an agent of a newer build may render it.
        raise FramefleetError(ErrorClass.INTERNAL, f"this agent cannot render {field} jobs")
    module, _, attribute = target.partition(":")
    pages: PageSource = getattr(importlib.import_module(module), attribute)
    return pages.page_input(spec)
