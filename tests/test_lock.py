"""requirements.lock: every dependency the two pyproject.toml files declare (extras included) is
pinned there to one exact version inside its range, with hashes, so `make setup`, CI and the
image install the same packages on every machine; a dependency added to a pyproject.toml without
`make lock` fails here, in seconds, naming it."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
LOCAL = {"framefleet", "framefleet-farm"}
# The environment the lock is made for (Makefile LOCK_FLAGS: --python-version 3.11), on Linux.
ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux"}


def pins() -> dict[str, tuple[Requirement, list[str]]]:
    """name -> (the pinned requirement, its hashes), one entry per package."""
    result: dict[str, tuple[Requirement, list[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        lines = [line.strip() for line in entry.splitlines()]
        if not lines or lines[0].startswith("#"):
            continue
        requirement = Requirement(lines[0].rstrip("\\ "))
        hashes = [line.split("=", 1)[1].rstrip("\\ ") for line in lines if "--hash=" in line]
        name = canonicalize_name(requirement.name)
        assert name not in result, f"{name} pinned twice: the lock forks by environment"
        result[name] = (requirement, hashes)
    return result


def declared() -> list[Requirement]:
    """Every requirement of both projects, with all their extras."""
    found: list[Requirement] = []
    for path in (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml"):
        project = tomllib.loads(path.read_text())["project"]
        found += [Requirement(r) for r in project["dependencies"]]
        for extra in project.get("optional-dependencies", {}).values():
            found += [Requirement(r) for r in extra]
    return found


def test_every_pin_is_exact_and_hashed() -> None:
    locked = pins()
    assert len(locked) > 50, "the lock should hold the whole dependency tree"
    for name, (requirement, hashes) in locked.items():
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{name}: {requirement}"
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{name}: no hashes"
    assert not LOCAL & set(locked), "the local packages are installed on top, not locked"


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    locked = pins()
    stale = []
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if name in LOCAL:
            continue
        if requirement.marker and not requirement.marker.evaluate(ENVIRONMENT):
            continue
        if name not in locked:
            stale.append(f"{requirement} is not in requirements.lock")
            continue
        (version,) = (s.version for s in locked[name][0].specifier)
        if not requirement.specifier.contains(version, prereleases=True):
            stale.append(f"{requirement}: requirements.lock has {version}")
    assert not stale, "run `make lock`: " + "; ".join(stale)


def test_the_image_subset_has_the_runtime_and_no_dev_tools() -> None:
    """deploy/Dockerfile installs `scripts/lock_subset.py requirements.lock framefleet-farm`:
    the farm's run-time tree, without the test and lint stack."""
    spec = importlib.util.spec_from_file_location("lock_subset", ROOT / "scripts/lock_subset.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runtime: set[str] = module.closure("framefleet-farm")
    assert {"av", "playwright", "grpcio", "aiobotocore", "opentelemetry-sdk", "uvloop"} <= runtime
    assert not {"pytest", "mypy", "moto", "ruff", "grpcio-tools", "numpy"} & runtime
    assert runtime - LOCAL <= set(pins())
