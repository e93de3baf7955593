"""HyperFrames projects as job sources: a folder whose ``index.html`` holds a composition root
(an element with ``data-composition-id``). The project travels as a template (the HTML and every
file beside it); the agent's page runtime (agent/hyperframes.js) drives its timelines, clips,
nested compositions and variables. Here: finding the entry file and reading the root's output
defaults (``data-width``, ``data-height``, ``data-duration``, ``data-fps``) before anything runs,
as HyperFrames' compiler does."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from framefleet.core.errors import ErrorClass, FramefleetError

INDEX = "index.html"
# Folders of a project that are not part of what it renders.
SKIPPED_DIRS = frozenset({"node_modules", "renders"})
NESTED_SUFFIXES = frozenset({".html", ".htm"})


def entry_file(path: str | Path) -> Path:
    """The HTML file to render: ``path`` itself, or ``path/index.html`` for a project folder."""
    path = Path(path)
    if path.is_dir():
        index = path / INDEX
        if not index.is_file():
            raise FramefleetError(
                ErrorClass.TEMPLATE_NOT_FOUND, f"{path} is a folder without an {INDEX}"
            )
        return index
    return path


class _RootFinder(HTMLParser):
    """The attributes of the first element with ``data-composition-id`` outside a
    ``<template>`` (nested compositions keep theirs inside one)."""

    def __init__(self) -> None:
        super().__init__()
        self.root: dict[str, str] | None = None
        self._templates = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "template":
            self._templates += 1
        elif self.root is None and not self._templates:
            values = {k: v or "" for k, v in attrs}
            if "data-composition-id" in values:
                self.root = values

    def handle_endtag(self, tag: str) -> None:
        if tag == "template" and self._templates:
            self._templates -= 1


def composition_root(html: str) -> dict[str, str] | None:
    """The root composition's attributes, or None when the page is not a HyperFrames
    composition."""
    finder = _RootFinder()
    finder.feed(html)
    return finder.root


def output_defaults(html: str) -> dict[str, float]:
    """Output settings the composition root declares: width, height, fps, duration (only
    those present and numeric). Variables cannot change them: they are read before any
    script runs."""
    root = composition_root(html) or {}
    defaults: dict[str, float] = {}
    for name in ("width", "height", "fps", "duration"):
        text = root.get(f"data-{name}", "").strip()
        try:
            value = float(text)
        except ValueError:
            continue
        if value > 0:
            defaults[name] = value
    return defaults
