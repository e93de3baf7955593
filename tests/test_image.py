"""deploy/Dockerfile, checked without a container engine: the image installs the Debian packages
scripts/ installs (one list), runs as a non-root user under an init that forwards signals, and
the wheel it installs carries every file the services load at run time."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SCRIPT = ROOT / "scripts" / "install_system_deps.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def packages(*flags: str) -> set[str]:
    listed = subprocess.run(
        ["bash", str(SCRIPT), "--list", *flags], capture_output=True, text=True, check=True
    ).stdout
    return set(listed.split())


def test_the_image_installs_the_packages_scripts_install() -> None:
    final = stages()[-1]
    runs = [args for kind, args in final if kind == "RUN"]
    assert ("COPY", "scripts/install_system_deps.sh /tmp/install_system_deps.sh") in final
    assert any(args.startswith("/tmp/install_system_deps.sh --image") for args in runs), runs
    assert not any("apt-get install" in args for args in runs), "packages listed outside scripts/"
    example, development, image = packages("--example"), packages(), packages("--image")
    assert {"chromium-headless-shell", "fonts-dejavu-core", "tini", "libatomic1"} <= image
    # What `make example` installs runs in the image too (the image's venv comes from its build
    # stage); a development machine adds only the test suite's (PostgreSQL, podman).
    assert example - image == {"python3-venv"}
    assert example <= development
    assert {"postgresql", "podman"} <= development - image
    assert not {"postgresql", "podman", "golang-go", "protobuf-compiler"} & example


def test_the_image_runs_framefleet_as_a_user_under_tini() -> None:
    all_stages = stages()
    assert len(all_stages) >= 3, "multi-stage: bundle, build, runtime"
    final = dict(all_stages[-1])
    assert final["FROM"] == "debian:bookworm-slim"
    user = final["USER"].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user), "a numeric non-root user"
    assert final["ENTRYPOINT"] == '["/usr/bin/tini", "--", "framefleet"]'
    assert "PATH=/opt/framefleet/bin:$PATH" in final["ENV"]
    build = all_stages[-2]
    assert (
        "COPY",
        "--from=videoflow /src/agent/videoflow/dist framefleet/agent/videoflow/dist",
    ) in build
    assert (
        "COPY",
        "--from=hf_fonts /src/agent/hf_fonts/dist framefleet/agent/hf_fonts/dist",
    ) in build
    assert ("COPY", "--from=build /opt/framefleet /opt/framefleet") in all_stages[-1]


def in_build_context(path: str) -> bool:
    """Whether ``docker build`` from the repository root sends this file (.dockerignore)."""
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return not any(fnmatch.fnmatch(p, pattern) for p in prefixes for pattern in ignored)


def test_the_build_context_keeps_what_the_build_copies() -> None:
    needed = [
        "pyproject.toml",
        "README.md",
        "clients/python/pyproject.toml",
        "framefleet/agent/videoflow/package-lock.json",
        "framefleet/agent/videoflow/build.mjs",
        "framefleet/agent/videoflow/entry.js",
        "framefleet/agent/hf_fonts/package-lock.json",
        "framefleet/agent/hf_fonts/build.mjs",
        "framefleet/agent/hf_fonts/faces.json",
        "scripts/install_system_deps.sh",
    ]
    for path in needed:
        assert (ROOT / path).exists() and in_build_context(path), path
    assert not in_build_context(".venv/bin/python") and not in_build_context(".git/HEAD")


def test_the_wheel_carries_every_runtime_file(tmp_path: Path) -> None:
    """The image builds a wheel from its build context, as `docker build` sends it, and installs
    that, not an editable tree: a module or data file missing from the package list, or left
    out of the context by .dockerignore, would be missing from the image."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    source = tmp_path / "src"
    for name in tracked:
        if (ROOT / name).is_file() and in_build_context(name):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    bundle = ROOT / "framefleet" / "agent" / "videoflow" / "dist"
    shutil.copytree(bundle, source / "framefleet" / "agent" / "videoflow" / "dist")
    faces = ROOT / "framefleet" / "agent" / "hf_fonts" / "dist"
    shutil.copytree(faces, source / "framefleet" / "agent" / "hf_fonts" / "dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            tmp_path / "wheels",
            source,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = (tmp_path / "wheels").glob("framefleet_farm-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    runtime = (".py", ".js", ".html", ".sql", ".json")
    expected = {
        name
        for name in tracked
        if name.startswith(
            tuple(f"framefleet/{p}/" for p in ("coordinator", "agent", "outputs", "commands"))
        )
        and name.endswith(runtime)
        and "/node_modules/" not in name
        and not name.startswith(
            ("framefleet/agent/videoflow/package", "framefleet/agent/hf_fonts/package")
        )
        and name != "framefleet/agent/hf_fonts/build.mjs"
        and name
        not in {"framefleet/agent/videoflow/build.mjs", "framefleet/agent/videoflow/entry.js"}
    }
    expected |= {
        f"framefleet/agent/videoflow/dist/{p.relative_to(bundle)}"
        for p in bundle.rglob("*")
        if p.is_file()
    }
    expected |= {
        f"framefleet/agent/hf_fonts/dist/{p.relative_to(faces)}"
        for p in faces.rglob("*")
        if p.is_file() and p.suffix == ".woff2"
    }
    missing = sorted(expected - shipped)
    assert not missing, f"the image would lack: {missing}"
