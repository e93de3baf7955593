"""podman for the container tests: base images made locally (no registry is assumed), and the
commands the tests run. `make setup` installs podman (scripts/install_system_deps.sh, which also
sets runc and lower ulimits). Images are tagged by a hash of their recipe, so a rerun reuses them
and a changed recipe (or CA file) makes new ones.

    python -m tests.containers     make (or reuse) the base images and print their names
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What Debian's own bookworm image has: the release, its updates and its security archive.
SUITES = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# The host's extra CA roots (the registries' proxy): pip and npm in a container must trust it.
HOST_CAS = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_ENV = ["PIP_CERT", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"]
# Download caches shared by runs (apt's .debs, pip's wheels): a rerun downloads nothing again.
CACHE_VOLUMES = [
    "framefleet-apt-archives:/var/cache/apt/archives",
    "framefleet-pip-cache:/root/.cache/pip",
]


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    """Run podman; on failure, raise with its output (stdout and stderr together)."""
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{output[-6000:]}")
    return output


def require_podman() -> None:
    """Skip unless podman can run containers here (make setup installs it)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run scripts/install_system_deps.sh (make setup)")
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-300:]}")


def _recipe_tag(name: str, *parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return f"localhost/{name}:{digest.hexdigest()[:12]}"


def _exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def _build(tag: str, containerfile: str, files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="framefleet-image-") as context:
        for name, data in files.items():
            (Path(context) / name).write_bytes(data)
        (Path(context) / "Containerfile").write_text(containerfile)
        podman("build", "-q", "-t", tag, "-f", "Containerfile", context, timeout=1200)


def bookworm() -> str:
    """Debian bookworm from Debian's packages alone (mmdebstrap, minbase, CA roots), plus the
    host's CA files, imported locally: what a registry's debian:bookworm-slim would give."""
    cas = {f"host-{ca.name}": ca.read_bytes() for ca in HOST_CAS}
    rootfs = _recipe_tag("framefleet-rootfs", "minbase ca-certificates", *SUITES)
    image = _recipe_tag("framefleet-bookworm", rootfs, *cas.values())
    if _exists(image):
        return image
    if not _exists(rootfs):
        with tempfile.TemporaryDirectory(prefix="framefleet-rootfs-") as scratch:
            tar = Path(scratch) / "rootfs.tar"
            subprocess.run(
                [
                    "mmdebstrap", "--quiet", "--variant=minbase",
                    "--include=ca-certificates", "bookworm", str(tar), *SUITES,
                ],
                check=True, timeout=1200,
            )  # fmt: skip
            podman("import", "--change", "CMD=/bin/bash", str(tar), rootfs, timeout=600)
    env = " ".join(f"{name}={BUNDLE}" for name in CA_ENV)
    _build(
        image,
        f"FROM {rootfs}\n"
        "COPY host-*.crt /usr/local/share/ca-certificates/\n"
        "RUN update-ca-certificates >/dev/null\n"
        f"ENV {env}\n",
        cas,
    )
    return image


def quick_start() -> str:
    """bookworm with only what the README's quick start assumes: git and make."""
    base = bookworm()
    image = _recipe_tag("framefleet-quickstart", base, "git make")
    if not _exists(image):
        _build(
            image,
            f"FROM {base}\n"
            "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
            " --no-install-recommends git make >/dev/null && rm -rf /var/lib/apt/lists/*\n",
            {},
        )
    return image


def source_archive(path: Path) -> Path:
    """The working tree's tracked files as a tar (what a clean clone has, uncommitted edits
    included): `git stash create` makes a commit of them without touching the tree."""
    stash = subprocess.run(
        ["git", "stash", "create"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(path), stash or "HEAD"], cwd=ROOT, check=True
    )
    return path


if __name__ == "__main__":
    print(bookworm())
    print(quick_start())
