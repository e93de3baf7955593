"""Readable output names: ``JobSpec.output_name`` templates such as ``{batch}/{row_key}.mp4``,
expanded per job at submit and sanitised, so no value can climb out of the destination."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from framefleet.core.errors import ErrorClass, FramefleetError

# Fields every job has; any other field names one of the job's parameters.
FIELDS = ("row_key", "batch", "batch_id", "key")
MAX_LENGTH = 512
_LITERAL = re.compile(r"[A-Za-z0-9._/ -]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _invalid(template: str, why: str) -> FramefleetError:
    return FramefleetError(ErrorClass.INVALID_JOB, f"output name {template!r}: {why}")


def fields(template: str) -> list[str]:
    """The fields a template uses; raises INVALID_JOB unless it is a plain relative path of
    letters, digits, ``._-/`` and ``{field}`` holes (no format specs, no attribute access)."""
    if not template:
        return []
    if len(template) > MAX_LENGTH:
        raise _invalid(template[:40] + "…", f"longer than {MAX_LENGTH} characters")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise _invalid(template, str(e)) from None
    names = []
    for literal, name, spec, conversion in parts:
        if not _LITERAL.fullmatch(literal):
            raise _invalid(template, "use letters, digits, '.', '_', '-' and '/' around fields")
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise _invalid(template, f"{{{name}}} must be a plain field name, like {{row_key}}")
        names.append(name)
    skeleton = "".join(literal + ("x" if name is not None else "") for literal, name, _, _ in parts)
    segments = skeleton.split("/")
    if skeleton.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise _invalid(template, "must be a relative path without empty, '.' or '..' parts")
    return names


def sanitise(value: Any) -> str:
    """A value as one safe path part: letters, digits and ``._-``, at most 120 characters."""
    text = _UNSAFE.sub("-", str(value)).strip("-.")[:120]
    return text or "_"


def expand(template: str, values: Mapping[str, Any], suffix: str = ".mp4") -> str:
    """The name for one job; ``values`` holds FIELDS and the job's parameters. Each value is
    reduced to letters, digits and ``._-`` (so ``../x`` or ``a/b`` stay inside one path part);
    the name ends in ``suffix`` (the output format's)."""
    out = {}
    for name in fields(template):
        value = values.get(name)
        if value is None or value == "" or isinstance(value, dict | list):
            known = ", ".join(FIELDS)
            raise _invalid(
                template, f"{{{name}}} has no value for this job (fields: {known}, or a parameter)"
            )
        out[name] = sanitise(value)
    name = template.format_map(out)
    return name if name.endswith(suffix) else name + suffix
