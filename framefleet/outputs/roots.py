"""Which destinations may be written: the operator's choice, not the client's.

The coordinator refuses a submit whose destination is outside its allowed roots, comparing
normalised URLs prefix by whole path segments. (An agent's own roots, and every path it
touches under them, are outputs.confine's rule.)
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from framefleet.core.errors import ErrorClass, FramefleetError
from framefleet.core.jobspec import destination_url


def normalised(destination: str) -> str:
    """The destination as a URL prefix ending in "/"; refuses ``..`` and ``~`` rather than
    guessing what they meant (a client's ~ would be the coordinator's home)."""
    parsed = urlparse(destination)
    path = unquote(parsed.path if parsed.scheme else destination)
    parts = PurePosixPath(path).parts
    if ".." in parts or path.startswith("~") or "\x00" in destination:
        raise FramefleetError(
            ErrorClass.INVALID_JOB, f"destination {destination!r}: no '..', '~' or NUL allowed"
        )
    return destination_url(destination)


def within(url: str, roots: list[str]) -> bool:
    """Whether ``url`` (an output or a destination) lies under one of ``roots``."""
    try:
        target = normalised(url)
    except FramefleetError:
        return False
    return any(target.startswith(normalised(root)) for root in roots)
