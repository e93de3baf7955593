"""Versioned schema migrations: ordered SQL files per store, ``NNNN_name.sql`` in ``sqlite/``
and ``postgres/`` (the same versions in both), and a ``schema_version`` table recording what
has been applied.

``framefleet migrate --store URL`` applies what is missing (safe to run twice, and from two
places at once: each store takes a lock first). A coordinator checks the version when it
opens its store and refuses to run on an older schema, unless told to migrate on its own
(``--auto-migrate``; by default only an embedded SQLite store). A schema change is a new file
in both folders, never an edit of an applied one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)
FILE_NAME = re.compile(r"(\d{4})_(\w+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    """The dialect's migrations, in order."""
    found = []
    for entry in resources.files(__package__).joinpath(dialect).iterdir():
        match = FILE_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    assert [m.version for m in found] == list(range(1, len(found) + 1)), "gaps in migrations"
    return found


def latest(dialect: str) -> int:
    return migrations(dialect)[-1].version


def redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class SchemaTooOld(Exception):
    """The store's schema is older than this coordinator needs."""

    def __init__(self, url: str, current: int, needed: int) -> None:
        super().__init__(
            f"the store's schema is at version {current}, this coordinator needs {needed}:"
            f" run `framefleet migrate --store {redact(url)}` first"
            " (or start the coordinator with --auto-migrate on)"
        )
