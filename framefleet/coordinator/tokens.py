"""Client tokens: a JSON file of (name, role, SHA-256 of the token). The token itself is shown
once, when made, and never stored: a leaked file grants nothing.

The name is the tenant: jobs and batches submitted with a token belong to its name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

log = logging.getLogger("framefleet.coordinator")

TOKEN_PREFIX = "fft_"


class Role(StrEnum):
    SUBMIT = "submit"  # submit, and read, watch and cancel its own
    READ = "read"  # read and watch its own
    ADMIN = "admin"  # everything, every tenant's


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name (the tenant) and its role."""

    name: str
    role: Role

    def sees(self, tenant: str) -> bool:
        return self.role is Role.ADMIN or tenant == self.name

    @property
    def writes(self) -> bool:
        """May submit and cancel (what it sees)."""
        return self.role is not Role.READ

    @property
    def scope(self) -> str | None:
        """The tenant whose jobs it lists; None: every tenant's."""
        return None if self.role is Role.ADMIN else self.name


# A coordinator without --tokens (loopback, the all-in-one render) trusts whoever reaches it.
OPEN = Principal("", Role.ADMIN)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"token name {name!r}: use letters, digits, '-', '_' and '.'")


def _write(path: Path, entries: list[dict[str, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump({"tokens": entries}, f, indent=2)
    tmp.replace(path)  # the coordinator never reads a half-written file


def add_token(path: Path, name: str, role: Role) -> str:
    """Adds a new random token for NAME to the file and returns it (shown once)."""
    _check_name(name)
    entries = _read(path) if path.exists() else []
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries.append({"name": name, "role": role.value, "sha256": _digest(token), "created": created})
    _write(path, entries)
    return token


@dataclass(frozen=True)
class TokenEntry:
    """One line of the file as an operator sees it: never the token, a prefix of its hash."""

    name: str
    role: Role
    id: str  # the first 12 hex digits of its SHA-256
    created: str  # UTC, ISO 8601; empty for tokens made before it was recorded


def list_tokens(path: Path) -> list[TokenEntry]:
    return [
        TokenEntry(e["name"], Role(e["role"]), e["sha256"][:12], e.get("created", ""))
        for e in _read(path)
    ]


def revoke_token(path: Path, name: str, token_id: str = "") -> int:
    """Removes NAME's tokens (only the one whose id starts with ``token_id``, if given) and
    returns how many went. A coordinator refuses them at its next call: it re-reads the file
    when it changes. Raises LookupError when nothing matches."""
    _check_name(name)
    entries = _read(path)
    kept = [
        e for e in entries if not (e["name"] == name and e["sha256"].startswith(token_id.lower()))
    ]
    removed = len(entries) - len(kept)
    if removed == 0:
        which = f"{name!r} with id {token_id!r}" if token_id else repr(name)
        raise LookupError(f"no token {which} in {path}")
    _write(path, kept)
    return removed


def _read(path: Path) -> list[dict[str, str]]:
    data = json.loads(path.read_text())
    entries: list[dict[str, str]] = data["tokens"]
    for entry in entries:
        Role(entry["role"])  # raises on an unknown role
        if len(entry["sha256"]) != 64:
            raise ValueError(f"{path}: a sha256 entry is not a SHA-256 hex digest")
    return entries


class TokenFile:
    """The coordinator's view of --tokens: re-read when the file changes (checked on use) or
    on ``reload()`` (SIGHUP). A file that fails to parse keeps the previous tokens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._by_digest: dict[str, Principal] = {}
        self.reload()

    def reload(self) -> None:
        stat = self.path.stat()
        self._stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        try:
            entries = _read(self.path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            if not self._by_digest:
                raise ValueError(f"cannot read tokens from {self.path}: {e}") from e
            log.error("tokens file unreadable, keeping the previous tokens: %s", e)
            return
        self._by_digest = {e["sha256"]: Principal(e["name"], Role(e["role"])) for e in entries}
        log.info("tokens loaded", extra={"tokens": len(self._by_digest)})

    def _fresh(self) -> None:
        try:
            stat = self.path.stat()
        except OSError:
            return  # gone for a moment (an editor's rename): keep what we have
        if (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self._stamp:
            self.reload()

    def lookup(self, token: str) -> Principal | None:
        self._fresh()
        return self._by_digest.get(_digest(token))
