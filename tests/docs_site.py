"""The docs site's sources, for tests that check what the docs promise: its pages, and the
reference generators of docs/hooks.py (the mkdocs hook that writes the generated pages)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@cache
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("framefleet_docs_hooks", DOCS / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page(path: str) -> str:
    """One page's Markdown source, e.g. ``page("reference/videojson.md")``."""
    return (DOCS / path).read_text()


def documented() -> str:
    """Everything the docs say: every page's source and the generated configuration tables."""
    pages = "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))
    generated: str = hooks().configuration_reference()
    return pages + "\n" + generated
