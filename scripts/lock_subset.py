"""Print the entries of a requirements lock that installed distributions need at run time.

    python scripts/lock_subset.py requirements.lock DIST... > runtime.lock

requirements.lock pins the farm with its dev extras (pytest, mypy, moto, ...); the image wants
only what `framefleet-farm` itself pulls in. This walks the Requires-Dist metadata of the
distributions installed in the running interpreter (the whole lock, installed in the image's
build stage), from each DIST down, extras and markers evaluated, and keeps the lock's entries (with
their hashes) for the packages reached: a subset of the lock, so still exact and hash-checked.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(root: str) -> set[str]:
    """Canonical names of ROOT (a name, with extras if wanted: `moto[server]`) and everything
    it requires, transitively, here."""
    environment = {key: str(value) for key, value in default_environment().items()}
    wanted: dict[str, set[str]] = {}
    top = Requirement(root)
    queue: list[tuple[str, set[str]]] = [(top.name, set(top.extras))]
    while queue:
        name, extras = queue.pop()
        key = canonicalize_name(name)
        seen = wanted.get(key)
        if seen is not None and extras <= seen:
            continue
        wanted[key] = (seen or set()) | extras
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(
                marker.evaluate({**environment, "extra": extra}) for extra in ({""} | wanted[key])
            ):
                queue.append((requirement.name, set(requirement.extras)))
    return set(wanted)


def main(lock: str, *roots: str) -> None:
    needed = set().union(*(closure(root) for root in roots))
    with open(lock) as file:
        entries = re.split(r"\n(?=[A-Za-z0-9])", file.read())
    for entry in entries:
        if entry.startswith("#"):
            continue
        if canonicalize_name(Requirement(entry.split("\\", 1)[0]).name) in needed:
            print(entry.rstrip("\n"))


if __name__ == "__main__":
    main(*sys.argv[1:])
