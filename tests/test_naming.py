"""Output name templates: what they expand to, and what they refuse."""

from __future__ import annotations

import pytest

from framefleet.core.errors import FramefleetError
from framefleet.core.naming import expand, fields

VALUES = {"row_key": "u-17", "batch": "spring", "key": "ab12", "name": "Ada Lovelace", "n": 3}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{row_key}.mp4", "u-17.mp4"),
        ("{batch}/{row_key}", "spring/u-17.mp4"),
        ("cards/{name}-{n}.mp4", "cards/Ada-Lovelace-3.mp4"),
        ("{key}", "ab12.mp4"),
    ],
)
def test_expands_fields_and_parameters(template: str, expected: str) -> None:
    assert expand(template, VALUES) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../../etc/passwd", "etc-passwd.mp4"),
        ("/abs/path", "abs-path.mp4"),
        ("..", "_.mp4"),
        ("a\\b\x00c", "a-b-c.mp4"),
        ("ünïcode ✓", "n-code.mp4"),
    ],
)
def test_values_cannot_leave_their_path_part(value: str, expected: str) -> None:
    assert expand("{name}", {"name": value}) == expected


@pytest.mark.parametrize(
    "template",
    [
        "/abs/{row_key}.mp4",
        "a/../{row_key}.mp4",
        "a//{row_key}",
        "{row_key.__class__}",
        "{row_key[0]}",
        "{row_key!r}",
        "{row_key:>40}",
        "a\\b",
        "{",
        "x" * 600,
    ],
)
def test_unsafe_templates_are_refused(template: str) -> None:
    with pytest.raises(FramefleetError, match="INVALID_JOB: output name"):
        fields(template)


def test_a_field_without_a_value_is_refused() -> None:
    with pytest.raises(FramefleetError, match=r"\{missing\} has no value"):
        expand("{missing}.mp4", VALUES)
    with pytest.raises(FramefleetError, match=r"\{row_key\} has no value"):
        expand("{row_key}.mp4", {"row_key": ""})
