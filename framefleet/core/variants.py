"""Rows of parameters for a batch, from CSV, JSON Lines, or a HyperFrames batch file (.json)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from framefleet.core.errors import ErrorClass, FramefleetError

Row = tuple[str, dict[str, Any]]  # (row key, or "" for a hash of the row; parameters)


def _value(text: str) -> Any:
    """Cells are JSON when they parse as JSON (12, 3.5, true), else strings ("Ada", "007")."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_rows(path: str | Path, key_column: str | None = None) -> list[Row]:
    """Reads rows from a .csv (header row first), .jsonl or .json file. The row key comes from
    ``key_column`` (default: a ``row_key`` column when present); rows without one are keyed
    by a hash of their parameters (in a .json file: by their index)."""
    path = Path(path)
    if not path.is_file():
        raise FramefleetError(ErrorClass.INVALID_JOB, f"no variants file at {path}")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            records: list[dict[str, Any]] = [
                {k: _value(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)
            ]
    elif path.suffix in (".jsonl", ".ndjson"):
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise FramefleetError(ErrorClass.INVALID_JOB, f"{path}:{number}: {e}") from None
            if not isinstance(record, dict):
                raise FramefleetError(
                    ErrorClass.INVALID_JOB, f"{path}:{number}: each line must be a JSON object"
                )
            records.append(record)
    elif path.suffix == ".json":
        return _json_rows(path, key_column)
    else:
        raise FramefleetError(
            ErrorClass.INVALID_JOB,
            f"variants must be a .csv, .jsonl or .json file, not {path.name}",
        )
    key = key_column or ("row_key" if records and "row_key" in records[0] else None)
    rows: list[Row] = []
    for number, record in enumerate(records, 1):
        if key is not None and key not in record:
            raise FramefleetError(ErrorClass.INVALID_JOB, f"{path}: row {number} has no {key!r}")
        row_key = str(record.pop(key)) if key is not None else ""
        rows.append((row_key, record))
    if not rows:
        raise FramefleetError(ErrorClass.INVALID_JOB, f"{path} has no rows")
    return rows


def _json_rows(path: Path, key_field: str | None) -> list[Row]:
    """HyperFrames' batch file: a JSON array of variable rows, or ``{"rows": [...]}``. Each
    row keeps all its fields as parameters (a key field is a variable too); the row key is
    ``key_field``'s value, a ``row_key`` field, or the row's index from 0 (HyperFrames'
    ``{index}``)."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FramefleetError(ErrorClass.INVALID_JOB, f"{path}: {e}") from None
    records = loaded.get("rows") if isinstance(loaded, dict) else loaded
    if not isinstance(records, list):
        raise FramefleetError(
            ErrorClass.INVALID_JOB,
            f'{path} must hold a JSON array of rows or an object with a "rows" array',
        )
    if not records:
        raise FramefleetError(ErrorClass.INVALID_JOB, f"{path} has no rows")
    key = key_field or (
        "row_key" if isinstance(records[0], dict) and "row_key" in records[0] else None
    )
    rows: list[Row] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise FramefleetError(
                ErrorClass.INVALID_JOB, f"{path}: row {index} must be a JSON object"
            )
        if key is not None and key not in record:
            raise FramefleetError(ErrorClass.INVALID_JOB, f"{path}: row {index} has no {key!r}")
        rows.append((str(record[key]) if key is not None else str(index), record))
    return rows
