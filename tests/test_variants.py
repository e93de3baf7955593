"""Batch files: CSV, JSON Lines and HyperFrames' JSON rows, with their row keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framefleet import ErrorClass, FramefleetError
from framefleet.core.variants import read_rows


def write(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value))
    return path


@pytest.mark.parametrize("wrap", [lambda rows: rows, lambda rows: {"rows": rows}])
def test_hyperframes_batch_file_rows_keyed_by_index(tmp_path: Path, wrap: object) -> None:
    rows = [{"name": "Ada", "n": 1}, {"name": "Grace", "n": 2}]
    path = write(tmp_path / "rows.json", wrap(rows))  # type: ignore[operator]
    assert read_rows(path) == [("0", rows[0]), ("1", rows[1])]


def test_hyperframes_batch_file_keyed_by_a_field_that_stays_a_variable(tmp_path: Path) -> None:
    rows = [{"name": "Ada", "n": 1}, {"name": "Grace", "n": 2}]
    assert read_rows(write(tmp_path / "rows.json", rows), "name") == [
        ("Ada", rows[0]),
        ("Grace", rows[1]),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"name": "Ada"}, 'an object with a "rows" array'),
        ([], "has no rows"),
        (["Ada"], "row 0 must be a JSON object"),
        ([{"name": "Ada"}, {"n": 2}], "row 1 has no 'name'"),
    ],
)
def test_bad_batch_files_are_refused(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(FramefleetError) as failure:
        read_rows(write(tmp_path / "rows.json", content), "name" if "name'" in message else None)
    assert failure.value.error_class == ErrorClass.INVALID_JOB
    assert message in str(failure.value)


def test_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text("[{")
    with pytest.raises(FramefleetError, match="INVALID_JOB"):
        read_rows(tmp_path / "rows.json")


def test_csv_and_jsonl_keep_their_rules(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("row_key,n\nu-1,12\nu-2,007\n")
    assert read_rows(tmp_path / "rows.csv") == [("u-1", {"n": 12}), ("u-2", {"n": "007"})]
    (tmp_path / "rows.jsonl").write_text('{"n": 1}\n\n{"n": 2}\n')
    assert read_rows(tmp_path / "rows.jsonl") == [("", {"n": 1}), ("", {"n": 2})]
    with pytest.raises(FramefleetError, match=r"\.csv, \.jsonl or \.json"):
        read_rows(write(tmp_path / "rows.yaml", []))
